"""The find-similar contract existing shop front-ends call."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api, b64

pytestmark = pytest.mark.slow  # seeds and embeds a catalog: not in `make test-fast`


def test_find_similar_contract(api: Api) -> None:
    response = api.client.post(
        "/api/image-search/find-similar",
        json={"image": b64(api.image("shorts-1")), "topK": 4, "scoreThreshold": 0.15},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["count"] == len(body["data"]) <= 4
    assert set(body["timing"]) == {"cacheCheck", "clipEncode", "vectorSearch", "total"}
    first = body["data"][0]
    assert first["variantId"] == "shorts-1"
    assert first["similarity"] == round(first["score"] * 100, 1)
    assert {"productName", "price", "mainImage", "urlSlug"} <= set(first)
    assert first["urlSlug"].endswith("shorts-1")
    assert all(item["score"] >= 0.15 for item in body["data"])
    repeat = api.client.post(
        "/api/image-search/find-similar",
        json={"image": b64(api.image("shorts-1")), "topK": 4, "scoreThreshold": 0.15},
    )
    assert repeat.json()["cached"] is True


def test_find_similar_bad_input(api: Api) -> None:
    response = api.client.post("/api/image-search/find-similar", json={"image": "???", "topK": 4})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_base64"
    assert (
        api.client.post("/api/image-search/find-similar", json={"image": "aGk=", "topK": 0}).status_code
        == 422
    )
