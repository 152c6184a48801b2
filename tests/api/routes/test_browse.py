"""Browsing without a query: GET /api/v1/products pages through a category in a stable order."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api


def browse(api: Api, **params: object) -> dict:
    response = api.client.get("/api/v1/products", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_category_page_by_page_with_a_total(api: Api) -> None:
    first = browse(api, category="shoes", limit=2)
    assert first["total"] == 3 and first["count"] == 2 and first["next_cursor"]
    assert all(p["category"] == "shoes" for p in first["results"])
    second = browse(api, category="shoes", limit=2, cursor=first["next_cursor"])
    assert second["count"] == 1 and second["next_cursor"] is None and second["total"] is None
    seen = [p["sku"] for p in first["results"] + second["results"]]
    assert sorted(seen) == ["shoes-0", "shoes-1", "shoes-2"]
    assert first["results"][0].keys() >= {
        "id",
        "sku",
        "name",
        "price",
        "currency",
        "attributes",
        "image_url",
        "url",
    }


def test_every_product_once_in_price_order(api: Api) -> None:
    prices: list[float] = []
    skus: list[str] = []
    cursor = None
    while True:
        page = browse(api, sort="price", limit=7, **({"cursor": cursor} if cursor else {}))
        prices += [p["price"] for p in page["results"]]
        skus += [p["sku"] for p in page["results"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert prices == sorted(prices)
    assert len(skus) == len(set(skus)) == len(api.products)
    descending = browse(api, sort="-price", limit=100)
    assert [p["price"] for p in descending["results"]] == sorted(prices, reverse=True)


def test_filters_apply(api: Api) -> None:
    page = browse(api, price_min="20", price_max="30", attributes='{"color": "blue"}', limit=100)
    assert page["total"] == page["count"] > 0
    assert all(20 <= p["price"] <= 30 and p["attributes"]["color"] == "blue" for p in page["results"])
    by_name = browse(api, category=["hat", "pants"], limit=100)
    names = [p["name"].lower() for p in by_name["results"]]
    assert names == sorted(names) and by_name["total"] == 6


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"cursor": "not-a-cursor"}, "invalid_cursor"),
        ({"sort": "colour"}, "invalid_request"),
        ({"price_min": "50", "price_max": "10"}, "invalid_request"),
        ({"price_min": "-1"}, "invalid_request"),
        ({"attributes": "[1]"}, "invalid_request"),
        ({"limit": "0"}, "invalid_request"),
    ],
)
def test_bad_parameters_are_a_clear_422(api: Api, params: dict[str, str], code: str) -> None:
    response = api.client.get("/api/v1/products", params=params)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code


def test_a_cursor_of_another_sort_is_refused(api: Api) -> None:
    cursor = browse(api, sort="price", limit=1)["next_cursor"]
    response = api.client.get("/api/v1/products", params={"sort": "name", "cursor": cursor})
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_cursor"
