"""Search over HTTP with the real encoders and a real catalog of clothing photos."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from tests.api.conftest import ADMIN, Api, b64
from tests.support import ImageServer


def search(api: Api, **body: object) -> dict:
    response = api.client.post("/api/v1/search", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_image_query_finds_its_own_product_first(api: Api) -> None:
    body = search(api, image=b64(api.image("dress-1")), top_k=5)
    assert body["mode"] == "clip"
    assert body["results"][0]["sku"] == "dress-1"
    assert body["results"][0]["similarity"] == pytest.approx(100, abs=0.01)
    assert body["count"] == 5 and body["next_offset"] == 5
    assert set(body["timing"]) >= {"decode", "encode", "search", "total"}
    first = body["results"][0]
    assert first["category"] == "dress" and first["price"] == 25.0 and first["attributes"]["size"] == "M"


def test_data_url_and_multipart_upload_give_the_same_ranking(api: Api) -> None:
    data = api.image("shoes-0")
    by_json = search(api, image="data:image/jpeg;base64," + b64(data), top_k=8)
    response = api.client.post(
        "/api/v1/search/image", files={"file": ("q.jpg", data, "image/jpeg")}, data={"top_k": "8"}
    )
    assert response.status_code == 200, response.text
    assert [r["sku"] for r in response.json()["results"]] == [r["sku"] for r in by_json["results"]]


def test_text_query_runs_in_clip_mode(api: Api) -> None:
    body = search(api, text="a pair of shoes", top_k=4)
    assert body["mode"] == "clip" and body["count"] == 4


def test_concurrent_uploads_share_clip_passes_and_health_counts_them(api: Api) -> None:
    def passes() -> dict:
        return api.client.get("/api/v1/health").json()["components"]["clip"]["forward_passes"]["image"]

    before = passes()
    skus = ["dress-0", "hat-0", "shoes-0", "pants-0", "skirt-0", "shorts-0"]
    # Fresh bytes (re-encoded at another quality) so no cache answers and every upload is encoded.
    uploads = {sku: _reencoded(api.image(sku)) for sku in skus}
    with ThreadPoolExecutor(len(skus)) as pool:
        bodies = dict(
            zip(skus, pool.map(lambda sku: search(api, image=b64(uploads[sku]), top_k=1), skus), strict=True)
        )
    for sku, body in bodies.items():
        assert body["results"][0]["sku"] == sku  # each upload got its own vector back
    after = passes()
    assert after["rows"] - before["rows"] == len(skus)
    assert after["passes"] - before["passes"] + after["merged_calls"] - before["merged_calls"] == len(skus)


def _reencoded(data: bytes) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(data)).save(out, format="JPEG", quality=97)
    return out.getvalue()


def test_hybrid_weights_image_against_text(api: Api) -> None:
    image = b64(api.image("hat-0"))
    hybrid = search(api, image=image, text="green summer dress", top_k=30)
    assert hybrid["mode"] == "hybrid"
    image_only = search(api, image=image, top_k=30)
    text_only = search(api, text="green summer dress", top_k=30)
    all_image = search(api, image=image, text="green summer dress", alpha=1.0, top_k=30)
    all_text = search(api, image=image, text="green summer dress", alpha=0.0, top_k=30)
    assert [r["sku"] for r in all_image["results"]] == [r["sku"] for r in image_only["results"]]
    assert [r["sku"] for r in all_text["results"]] == [r["sku"] for r in text_only["results"]]


def test_filters_category_price_and_attributes(api: Api) -> None:
    image = b64(api.image("pants-0"))
    # score_threshold=-1: every row under the filters, not only the matches (api.services.relevance).
    by_category = search(
        api, image=image, top_k=20, score_threshold=-1, filters={"category": ["skirt", "shorts"]}
    )
    assert by_category["count"] == 6
    assert {r["category"] for r in by_category["results"]} == {"skirt", "shorts"}
    one = search(api, image=image, filters={"category": "hat"})
    assert {r["category"] for r in one["results"]} == {"hat"}
    priced = search(
        api, image=image, top_k=50, score_threshold=-1, filters={"price_min": 20, "price_max": 30}
    )
    assert priced["count"] == 10 and all(20 <= r["price"] <= 30 for r in priced["results"])
    red = search(api, image=image, top_k=50, score_threshold=-1, filters={"attributes": {"color": "red"}})
    assert red["count"] == 10 and all(r["attributes"]["color"] == "red" for r in red["results"])


def test_pages_follow_each_other_without_overlap(api: Api) -> None:
    image = b64(api.image("outwear-2"))
    everything = search(api, image=image, top_k=30, score_threshold=-1)
    pages = [search(api, image=image, top_k=10, offset=o, score_threshold=-1) for o in (0, 10, 20)]
    assert [r["sku"] for p in pages for r in p["results"]] == [r["sku"] for r in everything["results"]]
    last = search(api, image=image, top_k=10, offset=30, score_threshold=-1)
    assert pages[2]["next_offset"] == 30 and last["count"] == 0
    # Without a threshold of its own, the list ends where the matches end.
    matches = search(api, image=image, top_k=30)
    assert 0 < matches["count"] < 30 and matches["next_offset"] is None


def test_score_threshold_trims_the_tail(api: Api) -> None:
    image = b64(api.image("t-shirt-0"))
    scores = [r["score"] for r in search(api, image=image, top_k=30)["results"]]
    cut = scores[4]
    trimmed = search(api, image=image, top_k=30, score_threshold=cut)
    assert trimmed["count"] == sum(s >= cut for s in scores)


def test_repeat_is_cached_until_the_catalog_changes(api: Api) -> None:
    image = b64(api.image("skirt-2"))
    first = search(api, image=image, top_k=3, filters={"category": "skirt"})
    again = search(api, image=image, top_k=3, filters={"category": "skirt"})
    assert (first["cached"], again["cached"]) == (False, True)
    assert again["results"] == first["results"]
    renamed = api.client.patch("/api/v1/products/skirt-2", json={"name": "Renamed skirt"}, headers=ADMIN)
    assert renamed.status_code == 200
    after = search(api, image=image, top_k=3, filters={"category": "skirt"})
    assert after["cached"] is False
    assert after["results"][0]["name"] == "Renamed skirt"


def test_more_like_this_uses_stored_vectors(api: Api) -> None:
    response = api.client.get("/api/v1/products/longsleeve-0/similar", params={"top_k": 5})
    assert response.status_code == 200
    body = response.json()
    assert body["mode"] == "clip" and body["count"] == 5
    assert "longsleeve-0" not in [r["sku"] for r in body["results"]]
    assert body["timing"].get("encode") is None  # nothing was encoded
    by_image = search(api, image=b64(api.image("longsleeve-0")), top_k=6)
    assert [r["sku"] for r in by_image["results"][1:]] == [r["sku"] for r in body["results"]]


def test_image_url_query(api: Api, image_server: ImageServer) -> None:
    body = search(api, image_url=image_server.url("/redirect-good"), top_k=3)
    assert body["mode"] == "clip" and body["count"] == 3


def png_bytes(mode: str, size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG")
    return buffer.getvalue()


def ico_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(buffer, format="ICO")
    return buffer.getvalue()


def bomb_bytes() -> bytes:
    """A valid 12000x12000 PNG of a few hundred KB: 144 Mpx once decoded."""
    buffer = io.BytesIO()
    Image.new("1", (12000, 12000)).save(buffer, format="PNG")
    return buffer.getvalue()


BAD_JSON_BODIES = {
    "invalid base64": ({"image": "not base64 at all!!"}, 400, "invalid_base64"),
    "non-image bytes": ({"image": b64(b"%PDF-1.4 hello")}, 422, "not_an_image"),
    "empty image": ({"image": ""}, 400, "empty_image"),
    "unsupported format": ({"image": b64(ico_bytes())}, 422, "unsupported_format"),
    "pixel bomb": ({"image": b64(bomb_bytes())}, 413, "image_too_large"),
    "top_k 0": ({"text": "dress", "top_k": 0}, 422, "invalid_request"),
    "top_k 101": ({"text": "dress", "top_k": 101}, 422, "invalid_request"),
    "price range": ({"text": "dress", "filters": {"price_min": 50, "price_max": 10}}, 422, "invalid_request"),
    "unknown filter": ({"text": "dress", "filters": {"colour": "red"}}, 422, "invalid_request"),
    "unknown field": ({"text": "dress", "topk": 3}, 422, "invalid_request"),
    "no query": ({"top_k": 3}, 422, "invalid_request"),
    "image and url": ({"image": "aGk=", "image_url": "http://x/y.jpg"}, 422, "invalid_request"),
    "file scheme": ({"image_url": "file:///etc/passwd"}, 400, "url_invalid"),
}


@pytest.mark.parametrize("case", BAD_JSON_BODIES, ids=list(BAD_JSON_BODIES))
def test_bad_search_input_is_a_clear_4xx(api: Api, case: str) -> None:
    body, status, code = BAD_JSON_BODIES[case]
    response = api.client.post("/api/v1/search", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]


def test_truncated_jpeg_is_refused(api: Api) -> None:
    data = api.image("shirt-0")
    response = api.client.post("/api/v1/search", json={"image": b64(data[: len(data) // 3])})
    assert response.status_code == 422 and response.json()["error"]["code"] == "truncated_image"


def test_upload_limits(api: Api) -> None:
    empty = api.client.post("/api/v1/search/image", files={"file": ("e.jpg", b"", "image/jpeg")})
    assert empty.status_code == 400 and empty.json()["error"]["code"] == "empty_image"
    limit = api.state.settings.max_upload_bytes
    huge = api.client.post(
        "/api/v1/search/image", files={"file": ("h.jpg", b"\xff\xd8\xff" + b"0" * limit, "image/jpeg")}
    )
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "file_too_large"
    big_b64 = api.client.post("/api/v1/search", json={"image": b64(b"\xff\xd8\xff" + b"0" * limit)})
    assert big_b64.status_code == 413 and big_b64.json()["error"]["code"] == "file_too_large"
    bad_form = api.client.post(
        "/api/v1/search/image",
        files={"file": ("q.jpg", api.image("hat-1"), "image/jpeg")},
        data={"top_k": "500"},
    )
    assert bad_form.status_code == 422 and bad_form.json()["error"]["code"] == "invalid_request"
    bad_attributes = api.client.post(
        "/api/v1/search/image",
        files={"file": ("q.jpg", api.image("hat-1"), "image/jpeg")},
        data={"attributes": "{"},
    )
    assert bad_attributes.status_code == 422


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/page.html", "url_not_image"),
        ("/slow.jpg", "url_timeout"),
        ("/missing.jpg", "url_not_found"),
        ("/loop", "url_redirect_loop"),
        ("/huge.jpg", "image_too_big"),
    ],
)
def test_bad_image_urls_are_refused(api: Api, image_server: ImageServer, path: str, code: str) -> None:
    response = api.client.post("/api/v1/search", json={"image_url": image_server.url(path)})
    assert response.json()["error"]["code"] == code
    assert 400 <= response.status_code < 500


def test_unknown_sku_for_more_like_this_is_404(api: Api) -> None:
    response = api.client.get("/api/v1/products/no-such-sku/similar")
    assert response.status_code == 404 and response.json()["error"]["code"] == "product_not_found"
