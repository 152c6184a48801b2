"""Product writes: admin-only, embedded before answering, and all-or-nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from tests.api.conftest import ADMIN, Api, b64
from tests.support import ImageServer


def table_state(api: Api) -> tuple[Any, ...]:
    """Everything a failed write must leave untouched: rows, their content and the catalog version."""
    with api.state.database.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT count(*), md5(string_agg(p::text, ',' ORDER BY id)) FROM products p")
        ).one()
        version = conn.execute(text("SELECT version FROM lookalike_catalog_state")).scalar()
    return (*rows, version)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/v1/products"),
        ("patch", "/api/v1/products/dress-0"),
        ("delete", "/api/v1/products/dress-0"),
        ("get", "/api/v1/stats"),
    ],
)
def test_admin_routes_need_the_token(api: Api, method: str, path: str) -> None:
    before = table_state(api)
    kwargs: dict[str, Any] = {"json": {"sku": "x", "name": "y"}} if method in ("post", "patch") else {}
    missing = getattr(api.client, method)(path, **kwargs)
    wrong = getattr(api.client, method)(path, headers={"Authorization": "Bearer nope"}, **kwargs)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized"
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "forbidden"
    assert table_state(api) == before


def test_create_with_image_url_embeds_before_answering(api: Api, image_server: ImageServer) -> None:
    body = {
        "sku": "URL-1",
        "name": "Runner",
        "category": "shoes",
        "price": "59.90",
        "image_url": image_server.url("/good.jpg"),
        "attributes": {"color": "white"},
    }
    created = api.client.post("/api/v1/products", json=body, headers=ADMIN)
    assert created.status_code == 201, created.text
    product = created.json()
    assert product["image_model"] == api.state.hub.clip_model_id
    assert product["fallback_model"] == api.state.hub.mobilenet_model_id
    assert product["embedded_at"] and len(product["image_sha256"]) == 64
    again = api.client.post("/api/v1/products", json=body, headers=ADMIN)
    assert again.status_code == 200 and again.json()["id"] == product["id"]  # upsert by sku
    found = api.client.post("/api/v1/search", json={"image_url": image_server.url("/good.jpg"), "top_k": 1})
    assert found.json()["results"][0]["sku"] == "URL-1"
    assert api.client.delete("/api/v1/products/URL-1", headers=ADMIN).status_code == 204


def test_create_with_uploaded_file_stores_and_serves_the_image(api: Api) -> None:
    data = api.image("hat-2")
    response = api.client.post(
        "/api/v1/products",
        data={
            "sku": "UP-1",
            "name": "Upload hat",
            "category": "hat",
            "price": "12.5",
            "attributes": '{"color": "black"}',
        },
        files={"file": ("hat.jpg", data, "image/jpeg")},
        headers=ADMIN,
    )
    assert response.status_code == 201, response.text
    product = response.json()
    assert product["attributes"] == {"color": "black"} and product["price"] == 12.5
    with api.state.database.engine.connect() as conn:
        source = conn.execute(text("SELECT embed_source FROM products WHERE sku = 'UP-1'")).scalar()
    assert source == product["image_url"]  # the background worker has nothing left to do for it
    served = api.client.get(f"/api/v1/images/{product['image_url']}")
    assert served.status_code == 200 and served.content == data
    assert api.client.get("/api/v1/products/UP-1").json()["sku"] == "UP-1"
    assert api.client.delete("/api/v1/products/UP-1", headers=ADMIN).status_code == 204
    assert api.client.get("/api/v1/products/UP-1").status_code == 404


def bomb() -> str:
    from tests.api.routes.test_search import bomb_bytes

    return b64(bomb_bytes())


BAD_PRODUCTS = {
    "non-image": ({"sku": "B1", "image": b64(b"hello")}, 422, "not_an_image"),
    "bad base64": ({"sku": "B1", "image": "@@@"}, 400, "invalid_base64"),
    "pixel bomb": ({"sku": "B1", "image": None}, 413, "image_too_large"),
    "negative price": ({"sku": "B1", "price": -1}, 422, "invalid_request"),
    "bad sku": ({"sku": "has space", "name": "x"}, 422, "invalid_request"),
    "bad currency": ({"sku": "B1", "currency": "euro"}, 422, "invalid_request"),
    "unknown field": ({"sku": "B1", "colour": "red"}, 422, "invalid_request"),
    "two images": ({"sku": "B1", "image": "aGk=", "image_url": "http://x/y.jpg"}, 422, "invalid_request"),
}


@pytest.mark.parametrize("case", BAD_PRODUCTS, ids=list(BAD_PRODUCTS))
def test_bad_product_writes_change_nothing(api: Api, case: str) -> None:
    body, status, code = BAD_PRODUCTS[case]
    if case == "pixel bomb":
        body = {**body, "image": bomb()}
    before = table_state(api)
    response = api.client.post("/api/v1/products", json=body, headers=ADMIN)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert table_state(api) == before


@pytest.mark.parametrize(("path", "code"), [("/page.html", "url_not_image"), ("/slow.jpg", "url_timeout")])
def test_image_url_failures_change_nothing(api: Api, image_server: ImageServer, path: str, code: str) -> None:
    before = table_state(api)
    response = api.client.post(
        "/api/v1/products",
        json={"sku": "dress-0", "name": "overwritten?", "image_url": image_server.url(path)},
        headers=ADMIN,
    )
    assert response.status_code == 422 and response.json()["error"]["code"] == code
    assert table_state(api) == before


def test_truncated_upload_changes_nothing(api: Api) -> None:
    data = api.image("shirt-1")
    before = table_state(api)
    response = api.client.post(
        "/api/v1/products",
        data={"sku": "dress-0"},
        files={"file": ("x.jpg", data[:2000], "image/jpeg")},
        headers=ADMIN,
    )
    assert response.status_code == 422 and response.json()["error"]["code"] == "truncated_image"
    assert table_state(api) == before


def test_patch_and_unknown_skus(api: Api) -> None:
    patched = api.client.patch("/api/v1/products/pants-1", json={"price": "99.99"}, headers=ADMIN)
    assert patched.status_code == 200 and patched.json()["price"] == 99.99
    assert api.client.patch("/api/v1/products/nope", json={"price": 1}, headers=ADMIN).status_code == 404
    assert api.client.delete("/api/v1/products/nope", headers=ADMIN).status_code == 404
    missing = api.client.get("/api/v1/products/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "product_not_found"
    null_name = api.client.patch("/api/v1/products/pants-1", json={"name": None}, headers=ADMIN)
    assert null_name.status_code == 422


def test_stats_report_coverage_and_latency(api: Api) -> None:
    api.client.post("/api/v1/search", json={"text": "shorts"})
    stats = api.client.get("/api/v1/stats", headers=ADMIN).json()
    assert stats["products"] >= 30
    assert stats["models"]["clip"]["embedded"] == stats["products"]
    assert stats["models"]["fallback"]["embedded"] == stats["products"]
    assert stats["sizes_bytes"]["image_embedding_hnsw"] > 0
    assert stats["latency"]["total"]["p50_ms"] > 0 and "hit_rate" in stats["cache"]


def test_categories_for_filters(api: Api) -> None:
    categories = api.client.get("/api/v1/categories").json()["categories"]
    assert {c["name"] for c in categories} >= {"dress", "hat", "shoes"}
