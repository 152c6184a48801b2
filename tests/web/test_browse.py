"""Browse a category without a query: from the category filter or a product's category link."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.web.pages import CARDS, cards, open_search, wait_for_search
from tests.web.server import Catalog, Server

pytestmark = pytest.mark.usefixtures("no_console_errors")


def price(text: str) -> float:
    return float(re.sub(r"[^0-9.]", "", text))


def test_browse_a_category_sort_it_and_come_back_to_it(
    any_page: Any, live_server: Server, catalog: Catalog
) -> None:
    page = any_page
    open_search(page, live_server.url)
    body = wait_for_search(page, lambda: page.select_option("#category", "hat"))
    assert body["total"] == len(catalog.skus["hat"]) == body["count"]
    shown = cards(page)
    assert {c["sku"] for c in shown} == set(catalog.skus["hat"])
    assert page.inner_text("#results-title") == "Browsing hat"
    assert page.inner_text("#status .status-count") == f"{len(shown)} results"
    assert page.locator(f"{CARDS} .match").count() == 0  # no query, no match to show
    assert "browse=1" in page.url and "cat=hat" in page.url
    body = wait_for_search(page, lambda: page.select_option("#sort", "price"))
    prices = [price(c["price"]) for c in cards(page)]
    assert prices == sorted(prices) and "sort=price" in page.url
    wait_for_search(page, page.reload)
    assert [price(c["price"]) for c in cards(page)] == prices
    assert page.input_value("#sort") == "price" and page.is_visible("#sort-filter")


def test_a_products_category_link_browses_it(any_page: Any, live_server: Server, catalog: Catalog) -> None:
    page = any_page
    open_search(page, live_server.url)
    page.fill("#query-text", "summer dress")
    wait_for_search(page, lambda: page.press("#query-text", "Enter"))
    link = page.locator(f"{CARDS} .category-link").first
    category = link.inner_text().lower()
    body = wait_for_search(page, link.click)
    assert body["count"] == len(catalog.skus[category])
    assert all(c["category"] == category for c in cards(page))
    assert page.inner_text("#results-title") == f"Browsing {category}"
    assert page.evaluate("document.activeElement.id") == "results-title"
    assert page.input_value("#query-text") == ""
    wait_for_search(page, page.go_back)
    assert page.input_value("#query-text") == "summer dress"
