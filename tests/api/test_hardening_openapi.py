"""Issue 14, item 9: the OpenAPI document is complete. (What the service answers is checked against
it by schemathesis in test_hardening_schemathesis.py; this checks the document itself, quickly.)"""

from __future__ import annotations

import json
from typing import Any

import pytest

from api.main import create_app
from api.settings import Settings

ERROR_REF = "#/components/schemas/ErrorResponse"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return create_app(Settings(_env_file=None)).openapi()


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, ops in spec["paths"].items() for method, op in ops.items()]


def test_every_reference_resolves(spec: dict[str, Any]) -> None:
    text = json.dumps(spec)
    schemas = spec["components"]["schemas"]
    refs = {part.split('"')[0] for part in text.split('"$ref": "#/components/schemas/')[1:]}
    assert "ProductIn" in refs  # POST /api/v1/products' JSON body: it was a dangling reference
    assert refs <= set(schemas), refs - set(schemas)
    assert "HTTPValidationError" not in schemas  # FastAPI's 422 shape is not what this API answers


def test_every_operation_documents_its_errors_with_the_error_schema(spec: dict[str, Any]) -> None:
    for method, path, op in operations(spec):
        responses = op["responses"]
        expected = {"400", "404", "503"}
        if op.get("parameters") or op.get("requestBody"):
            expected.add("422")
        if op.get("requestBody"):
            expected.add("413")
        if op.get("security"):
            expected |= {"401", "403"}
        assert expected <= set(responses), (method, path, expected - set(responses))
        for status in expected - ({"503"} if path == "/api/v1/health" else set()):
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": ERROR_REF}, (method, path, status)


def test_writes_and_admin_reads_declare_the_bearer_token(spec: dict[str, Any]) -> None:
    assert spec["components"]["securitySchemes"]["AdminToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "the LOOKALIKE_ADMIN_TOKEN, as a bearer token",
    }
    secured = {(method, path) for method, path, op in operations(spec) if op.get("security")}
    assert {
        ("post", "/api/v1/products"),
        ("patch", "/api/v1/products/{sku}"),
        ("delete", "/api/v1/products/{sku}"),
        ("get", "/api/v1/stats"),
    } <= secured
    assert ("post", "/api/v1/search") not in secured
    post = spec["paths"]["/api/v1/products"]["post"]["responses"]
    assert {"409", "415"} <= set(post)


def test_strict_fields_are_numbers_in_the_document_and_in_validation(spec: dict[str, Any]) -> None:
    search = spec["components"]["schemas"]["SearchRequest"]
    assert search["properties"]["top_k"]["type"] == "integer"
    assert {"required": ["text"]} in search["anyOf"]  # "give an image, an image_url or a text"
    price = spec["components"]["schemas"]["SearchFilters"]["properties"]["price_min"]["anyOf"]
    assert {"type": "number", "minimum": 0, "maximum": 9999999999.99} in price
    patch = spec["components"]["schemas"]["ProductPatch"]["properties"]
    assert patch["currency"] == {"type": "string", "pattern": "^[A-Z]{3}$", "title": "Currency"}
