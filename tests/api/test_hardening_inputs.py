"""Issue 14, item 1: every hostile input class answers a typed JSON 4xx, over a real uvicorn server,
and the same keep-alive connection then serves a good request.

The connection is checked for real: each bad answer must not say ``Connection: close``, and the
good request after it must leave from the same local port (httpx would silently reconnect if the
server had dropped the connection, which is exactly the failure the issue describes).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.main import build_state, create_app
from api.settings import Settings
from tests.api.conftest import ADMIN, ADMIN_TOKEN, b64
from tests.live_api import serve_in_thread

LONG = "a" * 300  # one path component over NAME_MAX (255 bytes)


@dataclass
class Live:
    client: httpx.Client
    photo: bytes


@pytest.fixture(scope="module")
def live(
    create_database: Callable[[], str],
    make_settings: Callable[..., Settings],
    clothing_dataset: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Live]:
    media = tmp_path_factory.mktemp("media")
    settings = make_settings(
        database_url=create_database(), admin_token=ADMIN_TOKEN, image_root=media, fetch_retries=0
    )
    photo = sorted((clothing_dataset / "train" / "dress").glob("*.jpg"))[0]
    (media / "dress.jpg").write_bytes(photo.read_bytes())
    state = build_state(settings)
    try:
        state.products.upsert(
            "DR-1",
            {"name": "Linen dress", "category": "dress", "price": 49.9, "image_url": "dress.jpg"},
            photo.read_bytes(),
        )
        app = create_app(settings, state)
        add_failing_route(app)
        with serve_in_thread(app) as base_url, httpx.Client(base_url=base_url, timeout=60) as client:
            yield Live(client, photo.read_bytes())
    finally:
        state.close()


def add_failing_route(app: FastAPI) -> None:
    """A route that fails the way no handler expects: the last-resort boundary must answer it."""

    @app.get("/test-only/boom", include_in_schema=False)
    def boom() -> None:
        raise RuntimeError("an exception nobody planned for")


def local_port(response: httpx.Response) -> int:
    stream = response.extensions["network_stream"]
    return int(stream.get_extra_info("client_addr")[1])


def assert_refused_then_served(live: Live, response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert response.headers.get("connection", "").lower() != "close"
    good = live.client.get("/api/v1/products/DR-1")
    assert good.status_code == 200, good.text
    assert local_port(good) == local_port(response), "the server dropped the keep-alive connection"


def search_raw(live: Live, raw: str) -> httpx.Response:
    """A JSON body sent as typed: NaN, Infinity and lone surrogates are not expressible via json=."""
    return live.client.post(
        "/api/v1/search", content=raw.encode(), headers={"content-type": "application/json"}
    )


JSON_SEARCH_CASES: dict[str, Any] = {
    "nul in text": {"text": "red\u0000dress"},
    "nul in category": {"text": "dress", "filters": {"category": "dr\u0000ess"}},
    "nul in a category list": {"text": "dress", "filters": {"category": ["dress", "\u0000"]}},
    "nul in an attribute value": {"text": "dress", "filters": {"attributes": {"color": "re\u0000d"}}},
    "nul in an attribute key": {"text": "dress", "filters": {"attributes": {"co\u0000lor": "red"}}},
    "nul in image_url": {"image_url": "dress\u0000.jpg"},
    "nul in base64 image": {"image": "abc\u0000"},
    "huge price string": {"text": "dress", "filters": {"price_min": "1e999999"}},
    "huge negative price": {"text": "dress", "filters": {"price_max": "-1e999999"}},
    "tiny price": {"text": "dress", "filters": {"price_min": "1e-999999"}},
    "price over numeric(12,2)": {"text": "dress", "filters": {"price_max": 10_000_000_000}},
    "price NaN string": {"text": "dress", "filters": {"price_max": "NaN"}},
    "score_threshold true": {"text": "dress", "score_threshold": True},
    "top_k true": {"text": "dress", "top_k": True},
    "alpha as a string": {"text": "dress", "alpha": "0.5"},
    "crop with a boolean": {"image_url": "dress.jpg", "crop": {"x": True, "y": 0, "width": 9, "height": 9}},
    "attributes nested too deep": {
        "text": "dress",
        "filters": {"attributes": json.loads('{"a":' * 40 + "1" + "}" * 40)},
    },
}


@pytest.mark.parametrize("case", sorted(JSON_SEARCH_CASES))
def test_bad_json_search_fields_are_422(live: Live, case: str) -> None:
    response = live.client.post("/api/v1/search", json=JSON_SEARCH_CASES[case])
    assert_refused_then_served(live, response, 422, "invalid_request")


RAW_SEARCH_CASES = {
    "NaN in attributes": '{"text": "dress", "filters": {"attributes": {"weight": NaN}}}',
    "Infinity in attributes": '{"text": "dress", "filters": {"attributes": {"weight": [1, -Infinity]}}}',
    "number overflowing to inf": '{"text": "dress", "filters": {"price_min": 1e999999}}',
    "NaN alpha": '{"text": "dress", "alpha": NaN}',
    "crop at infinity": '{"image_url": "dress.jpg", "crop": {"x": 0, "y": 0, "width": Infinity, "height": 9}}',
    "lone surrogate in category": '{"text": "dress", "filters": {"category": "\\ud800"}}',
    "lone surrogate in text": '{"text": "dress \\udfff"}',
    "lone surrogate in an attribute key": '{"text": "d", "filters": {"attributes": {"\\udbff": 1}}}',
    "lone surrogate in an unknown key": '{"text": "dress", "\\ud800": 1}',
}


@pytest.mark.parametrize("case", sorted(RAW_SEARCH_CASES))
def test_non_finite_numbers_and_lone_surrogates_are_422(live: Live, case: str) -> None:
    assert_refused_then_served(live, search_raw(live, RAW_SEARCH_CASES[case]), 422, "invalid_request")


def test_bodies_that_are_not_json_are_4xx(live: Live) -> None:
    response = live.client.post(
        "/api/v1/search", content=b'{"text": "\xff\xfe"}', headers={"content-type": "application/json"}
    )
    assert response.status_code in (400, 422)
    assert_refused_then_served(live, response, response.status_code, response.json()["error"]["code"])
    deep = "[" * 100_000 + "]" * 100_000  # json.loads recursion, not a 500
    response = search_raw(live, deep)
    assert response.status_code in (400, 422)
    assert_refused_then_served(live, response, response.status_code, response.json()["error"]["code"])


def test_bad_multipart_search_fields_are_422(live: Live) -> None:
    files = {"file": ("q.jpg", live.photo, "image/jpeg")}
    for data in (
        {"text": "red\x00dress"},
        {"category": "dr\x00ess"},
        {"price_min": "1e999999"},
        {"price_max": "nan"},
        {"price_max": "12\x00"},
        {"attributes": '{"weight": NaN}'},
        {"attributes": '{"color": "re\\u0000d"}'},
        {"attributes": '{"color": "\\ud800"}'},
    ):
        response = live.client.post("/api/v1/search/image", files=files, data=data)
        assert_refused_then_served(live, response, 422, "invalid_request")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/products/DR%001"),
        ("GET", "/api/v1/products/DR%001/similar"),
        ("PATCH", "/api/v1/products/DR%001"),
        ("DELETE", "/api/v1/products/DR%001"),
        ("GET", "/api/v1/images/dress%00.jpg"),
        ("GET", "/ui/app%00.js"),
    ],
)
def test_nul_in_a_path_is_400(live: Live, method: str, path: str) -> None:
    response = live.client.request(method, path, headers=ADMIN, json={"name": "x"})
    assert_refused_then_served(live, response, 400, "invalid_path")


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v1/images/{LONG}.jpg",
        f"/api/v1/images/uploads/{LONG}",
        "/api/v1/images/" + "/".join(["b" * 250] * 20),  # every name fits, the whole is over PATH_MAX
        f"/ui/{LONG}.js",
        "/ui/" + "/".join(["c" * 250] * 20),
        f"/api/v1/products/{LONG}",
        f"/api/v1/products/{LONG}/similar",
    ],
)
def test_over_long_paths_are_404(live: Live, path: str) -> None:
    response = live.client.get(path)
    assert response.status_code == 404, response.text
    assert_refused_then_served(live, response, 404, response.json()["error"]["code"])


def test_over_long_relative_image_urls_are_4xx(live: Live) -> None:
    for image_url in (f"{LONG}.jpg", "/".join(["d" * 250] * 6)):  # 1,505 bytes, each name fits
        response = live.client.post("/api/v1/search", json={"image_url": image_url})
        assert_refused_then_served(live, response, 400, "url_invalid")
        response = live.client.post(
            "/api/v1/products", headers=ADMIN, json={"sku": "LONG-1", "image_url": image_url}
        )
        assert_refused_then_served(live, response, 400, "url_invalid")


def test_bad_product_fields_are_422(live: Live) -> None:
    for body in (
        {"sku": "P-1", "name": "a\x00b"},
        {"sku": "P-1", "description": "\x00"},
        {"sku": "P-1", "category": "dress\x00"},
        {"sku": "P-1", "attributes": {"color": "\x00"}},
        {"sku": "P-1", "price": "1e999999"},
    ):
        response = live.client.post("/api/v1/products", headers=ADMIN, json=body)
        assert_refused_then_served(live, response, 422, "invalid_request")
    raw = b'{"sku": "P-1", "attributes": {"weight": NaN}}'
    response = live.client.post(
        "/api/v1/products", headers={**ADMIN, "content-type": "application/json"}, content=raw
    )
    assert_refused_then_served(live, response, 422, "invalid_request")
    form = {"sku": "P-1", "name": "x\x00y"}
    response = live.client.post(
        "/api/v1/products", headers=ADMIN, data=form, files={"file": ("p.jpg", live.photo)}
    )
    assert_refused_then_served(live, response, 422, "invalid_request")
    response = live.client.patch("/api/v1/products/DR-1", headers=ADMIN, json={"category": "\x00"})
    assert_refused_then_served(live, response, 422, "invalid_request")
    response = live.client.post("/api/image-search/find-similar", json={"image": b64(b"x"), "topK": True})
    assert_refused_then_served(live, response, 422, "invalid_request")


def test_query_string_price_filters_are_bounded(live: Live) -> None:
    for query in ("price_max=1e999999", "price_min=1e-999999", "price_min=NaN", "price_max=Infinity"):
        response = live.client.get(f"/api/v1/products/DR-1/similar?{query}")
        assert_refused_then_served(live, response, 422, "invalid_request")


def test_an_unexpected_exception_is_a_json_500_that_keeps_the_connection(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("ERROR", logger="api.http_errors"):
        response = live.client.get("/test-only/boom")
    assert_refused_then_served(live, response, 500, "internal_error")
    assert "nobody planned for" not in response.text  # the detail is logged, not sent
    assert any("unhandled error" in r.getMessage() for r in caplog.records)


def test_405_names_every_allowed_method(live: Live) -> None:
    response = live.client.post("/api/v1/products/DR-1")
    assert_refused_then_served(live, response, 405, "method_not_allowed")
    assert set(response.headers["allow"].split(", ")) == {"DELETE", "GET", "PATCH"}
    response = live.client.put("/api/v1/health")
    assert response.status_code == 405 and response.headers["allow"] == "GET"
