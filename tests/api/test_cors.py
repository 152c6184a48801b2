"""CORS: listed origins may call the public reads; admin and write endpoints never answer cross-origin.

Through the real app (real database, real encoders); the browser's side of it is in
tests/web/test_widget.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.cors import normalize_origin, parse_origins
from api.middleware.body_limit import request_body_limit
from api.settings import Settings
from tests.api.conftest import ADMIN, running_api, seed_catalog

SHOP = "https://shop.example"
OTHER = "https://evil.example"


@pytest.fixture(scope="module")
def client(api_settings: Settings, clothing_dataset: Path) -> Iterator[TestClient]:
    settings = api_settings.model_copy(
        update={"cors_origins": parse_origins(f"{SHOP}, http://127.0.0.1:9999")}
    )
    with running_api(settings) as (client, state):
        seed_catalog(state, clothing_dataset)
        yield client


def preflight(client: TestClient, path: str, method: str, origin: str = SHOP, headers: str = "") -> object:
    request_headers = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        request_headers["Access-Control-Request-Headers"] = headers
    return client.options(path, headers=request_headers)


def test_origins_are_normalised_to_what_browsers_send() -> None:
    assert normalize_origin(" HTTPS://Shop.Example:443/ ") == "https://shop.example"
    assert normalize_origin("http://127.0.0.1:8080") == "http://127.0.0.1:8080"
    assert normalize_origin("http://[::1]:80") == "http://[::1]"
    assert parse_origins("https://a.example, ,https://a.example,http://b.example") == (
        "https://a.example",
        "http://b.example",
    )
    assert parse_origins("") == () and parse_origins(None) == ()
    for bad in (
        "*",
        "shop.example",
        "https://shop.example/path",
        "ftp://shop.example",
        "https://u@shop.example",
    ):
        with pytest.raises(ValueError):
            normalize_origin(bad)


def test_no_origin_is_allowed_by_default() -> None:
    assert Settings(_env_file=None).cors_origins == ()  # type: ignore[call-arg]


def test_a_listed_origin_may_search_and_read(client: TestClient) -> None:
    response = preflight(client, "/api/v1/search", "POST", headers="content-type")
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == SHOP
    assert response.headers["access-control-allow-methods"] == "POST"
    assert response.headers["access-control-allow-headers"] == "content-type"
    assert "Origin" in response.headers["vary"]

    body = {"text": "dress", "top_k": 3}
    response = client.post("/api/v1/search", json=body, headers={"Origin": SHOP})
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == SHOP
    assert "Origin" in response.headers["vary"]
    sku = response.json()["results"][0]["sku"]

    reads = (
        f"/api/v1/products/{sku}",
        f"/api/v1/products/{sku}/similar?top_k=2",
        "/api/v1/products?category=dress",  # browse
        "/api/v1/categories",
    )
    for path in reads:
        response = client.get(path, headers={"Origin": SHOP})
        assert response.status_code == 200, (path, response.text)
        assert response.headers["access-control-allow-origin"] == SHOP, path


def test_errors_of_public_reads_are_readable_cross_origin(client: TestClient) -> None:
    """The widget shows the API's own message for a bad request, so the 4xx must carry the header."""
    response = client.post("/api/v1/search", json={"top_k": 3}, headers={"Origin": SHOP})
    assert response.status_code == 422
    assert response.headers["access-control-allow-origin"] == SHOP
    response = client.get("/api/v1/products/no-such-sku", headers={"Origin": SHOP})
    assert response.status_code == 404
    assert response.headers["access-control-allow-origin"] == SHOP
    # The body-size guard answers before any route: it sits inside the CORS middleware.
    too_big = b"x" * (request_body_limit(client.app.state.lookalike.settings) + 1)
    response = client.post(
        "/api/v1/search", content=too_big, headers={"Origin": SHOP, "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.headers["access-control-allow-origin"] == SHOP


def test_an_unlisted_origin_gets_no_cors_headers(client: TestClient) -> None:
    response = preflight(client, "/api/v1/search", "POST", origin=OTHER, headers="content-type")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "cors_not_allowed"
    assert not any(name.startswith("access-control-") for name in response.headers)
    response = client.post("/api/v1/search", json={"text": "dress", "top_k": 3}, headers={"Origin": OTHER})
    assert response.status_code == 200  # the server answers; the browser keeps the answer from the page
    assert "access-control-allow-origin" not in response.headers
    assert "Origin" in response.headers["vary"]


def test_admin_and_write_endpoints_never_answer_cross_origin(client: TestClient) -> None:
    for path, method in (
        ("/api/v1/products", "POST"),
        ("/api/v1/products/dress-0", "PATCH"),
        ("/api/v1/products/dress-0", "DELETE"),
        ("/api/v1/stats", "GET"),
        ("/api/v1/health", "GET"),
    ):
        response = preflight(client, path, method, headers="authorization")
        assert response.status_code == 403, (path, method)
        assert not any(name.startswith("access-control-") for name in response.headers), (path, method)
    # Even a public read may not carry credentials cross-origin.
    response = preflight(client, "/api/v1/search", "POST", headers="authorization, content-type")
    assert response.status_code == 403 and "authorization" in response.json()["error"]["message"]
    # And the actual answers of admin endpoints carry no CORS header for a listed origin.
    response = client.get("/api/v1/stats", headers={"Origin": SHOP, **ADMIN})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    response = client.delete("/api/v1/products/not-there", headers={"Origin": SHOP, **ADMIN})
    assert "access-control-allow-origin" not in response.headers


def test_the_widget_files_load_from_any_page(client: TestClient) -> None:
    """Module scripts are fetched in CORS mode; the widget's code is public and grants nothing."""
    response = client.get("/ui/widget.js", headers={"Origin": OTHER})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["content-type"].startswith("text/javascript")


def test_requests_without_origin_are_unchanged(client: TestClient) -> None:
    response = client.post("/api/v1/search", json={"text": "dress", "top_k": 3})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    # A plain OPTIONS (not a preflight) is the app's business, as before.
    assert client.options("/api/v1/search").status_code == 405
