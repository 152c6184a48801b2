"""The OpenAPI document, completed: every error an operation can answer, with the error schema.

FastAPI documents what it can see in a route's signature (200 and its own 422 shape). The rest of
what a client can get back comes from layers it cannot see: the edge checks and the last resort in
:mod:`api.http_errors` (400 for a NUL in any path, 404 for a path component no file system holds),
the body-size limit (413), the admin guard (401/403), admission control and the database (503),
and a few route-specific answers (409, 415). :func:`complete_openapi` adds those by rule, so a new
route is documented the same way without repeating them in every decorator, and it registers
``ProductIn``, which ``POST /api/v1/products`` refers to for its JSON body (issue 14, item 9: the
docs page could not render that reference).

The rules, per operation:

- always: 400, 404, 503 (and the 422 FastAPI adds, re-pointed at the error schema);
- with a request body: 413, plus 422 even where FastAPI saw no parameters;
- with ``security`` (the admin bearer token, api/routes/auth.py): 401 and 403;
- :data:`EXTRA_STATUSES` for the answers only some routes give.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from api.schemas import ProductIn

ERROR_STATUSES = {
    400: "Malformed request: a NUL byte in the path, a body that is not JSON, an image URL or image "
    "that cannot be used",
    401: "No admin token (Authorization: Bearer <LOOKALIKE_ADMIN_TOKEN>)",
    403: "The admin token is not valid",
    404: "No such product, image or path",
    409: "Conflicts with the catalog's state (a product without an embedding yet, or a write to a "
    "catalog the shop owns)",
    413: "The body or the image is larger than the configured limit",
    415: "The body's content type is not one this operation reads",
    422: "A field is missing, has the wrong type, or is out of range",
    503: "Cannot serve now (database unavailable, overloaded, no search mode); retry after Retry-After",
}

EXTRA_STATUSES: dict[tuple[str, str], tuple[int, ...]] = {
    ("post", "/api/v1/products"): (409, 415),
    ("patch", "/api/v1/products/{sku}"): (409,),
    ("delete", "/api/v1/products/{sku}"): (409,),
    ("get", "/api/v1/products/{sku}/similar"): (409,),
}
"""Statuses only these operations answer (services/products.py, services/search.py, routes/products.py)."""
REPORTS_ITS_OWN_503 = {("get", "/api/v1/health")}
"""Its 503 body is the same health report as its 200, not an error object."""


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str = Field(description="machine-readable, e.g. invalid_request, not_found, overloaded")
    message: str = Field(description="what is wrong, for a person")


class ErrorResponse(BaseModel):
    """Every error answer: ``{"error": {"code", "message"}}`` (api/http_errors.py)."""

    error: ErrorDetail


ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


def install_openapi(app: FastAPI) -> None:
    """Serve the completed document at /openapi.json (and /docs)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        spec = generate()  # FastAPI caches it; completing is idempotent
        complete_openapi(spec)
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


def _register(schemas: dict[str, Any], model: type[BaseModel]) -> None:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        schemas.setdefault(name, definition)
    schemas.setdefault(model.__name__, schema)


def _error_response(status: int) -> dict[str, Any]:
    return {"description": ERROR_STATUSES[status], "content": {"application/json": {"schema": ERROR_REF}}}


def complete_openapi(spec: dict[str, Any]) -> dict[str, Any]:
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for model in (ErrorResponse, ProductIn):
        _register(schemas, model)
    for path, operations in spec.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            statuses = {400, 404, 503, *EXTRA_STATUSES.get((method, path), ())}
            if operation.get("parameters") or operation.get("requestBody"):
                statuses.add(422)
            if operation.get("requestBody"):
                statuses.add(413)
            if operation.get("security"):
                statuses |= {401, 403}
            for status in sorted(statuses):
                key = str(status)
                if key == "503" and (method, path) in REPORTS_ITS_OWN_503:
                    responses[key] = {"description": "Search cannot be served", **_content_of(responses)}
                    continue
                existing = responses.get(key, {})
                if "$ref" in str(existing.get("content", {})) and ERROR_REF not in _schemas_of(existing):
                    existing = {}  # FastAPI's HTTPValidationError: not what this API answers
                responses[key] = existing or _error_response(status)
    if not any(f"#/components/schemas/{name}" in str(spec["paths"]) for name in FASTAPI_VALIDATION_SCHEMAS):
        for name in FASTAPI_VALIDATION_SCHEMAS:
            schemas.pop(name, None)
    return spec


def _content_of(responses: dict[str, Any]) -> dict[str, Any]:
    ok = responses.get("200", {})
    return {"content": ok["content"]} if "content" in ok else {}


def _schemas_of(response: dict[str, Any]) -> list[Any]:
    return [media.get("schema") for media in response.get("content", {}).values()]
