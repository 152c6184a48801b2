"""Every search lives in the address bar: Back/Forward step through searches, reload restores the
last one, and a link opened elsewhere repeats it (a photo by its hash while the server has it)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import DESKTOP
from tests.web.pages import CARDS, choose_photo, open_search, skus, wait_for_search
from tests.web.server import Catalog, Server

pytestmark = pytest.mark.usefixtures("no_console_errors")

PHOTO_PARAM = re.compile(r"[?&]photo=([0-9a-f]{64})")


def test_back_forward_reload_and_a_shared_link(
    any_page: Any, browser: Any, live_server: Server, catalog: Catalog, query_photo: Callable[[str], Path]
) -> None:
    page = any_page
    # Pages of 6 (a link may ask for another page size): a catalog of 80 fills several.
    page.goto(live_server.url + "/?size=6")
    page.wait_for_selector("body[data-ready='true']")
    query = "shoes"
    page.fill("#query-text", query)
    wait_for_search(page, lambda: page.press("#query-text", "Enter"))
    assert "q=shoes" in page.url and "size=6" in page.url
    # Load more is part of the address (the page depth).
    wait_for_search(page, lambda: page.click("#load-more"))
    assert "n=2" in page.url
    words = skus(page)
    assert 6 < len(words) <= 12
    wait_for_search(page, lambda: page.select_option("#category", "shoes"))
    assert "cat=shoes" in page.url and "n=2" not in page.url
    filtered = skus(page)
    assert filtered != words
    choose_photo(page, query_photo("dress"))
    assert PHOTO_PARAM.search(page.url), page.url
    photo_results = skus(page)

    # Back: the words + category search, with its fields; again: the words alone, both pages.
    wait_for_search(page, page.go_back)
    assert skus(page) == filtered and "photo=" not in page.url
    assert page.input_value("#query-text") == query and page.input_value("#category") == "shoes"
    assert page.is_hidden("#preview")
    wait_for_search(page, page.go_back)
    page.wait_for_function(f"document.querySelectorAll('{CARDS}').length === {len(words)}")
    assert skus(page) == words and page.input_value("#category") == ""
    # A reload keeps the search and its depth.
    wait_for_search(page, page.reload)
    page.wait_for_function(f"document.querySelectorAll('{CARDS}').length === {len(words)}")
    assert skus(page) == words and page.input_value("#query-text") == query
    # Forward twice: the photo comes back (same photo, same results), after a reload too.
    wait_for_search(page, page.go_forward)
    wait_for_search(page, page.go_forward)
    assert skus(page) == photo_results and page.is_visible("#preview-image")
    wait_for_search(page, page.reload)
    assert skus(page) == photo_results and page.is_visible("#preview-image")
    deep = photo_results

    # A shared link, opened in another browser profile: the server still has that photo.
    shared_url = page.url
    context = browser.new_context(viewport=DESKTOP)
    other = context.new_page()
    try:
        body = wait_for_search(other, lambda: other.goto(shared_url))
        assert body["mode"] == "hybrid"  # the words and the photo, as on the first screen
        assert skus(other) == deep
        assert "shared photo" in other.inner_text("#results-title")
    finally:
        context.close()


def test_a_link_to_a_photo_the_server_never_had_says_so_and_keeps_the_words(
    page: Any, live_server: Server, catalog: Catalog
) -> None:
    url = f"{live_server.url}/?q=dress&photo={'0' * 64}"
    with page.expect_response(lambda r: "/api/v1/search" in r.url and r.status == 404):
        page.goto(url)
    page.wait_for_selector(f"{CARDS}")
    assert "can't be repeated" in page.inner_text("#message")
    assert page.get_attribute("#message", "class").endswith("message-info")
    assert "photo=" not in page.url and "q=dress" in page.url
    assert "“dress”" in page.inner_text("#results-title")


def test_more_like_this_is_in_the_address_and_survives_a_reload(
    page: Any, live_server: Server, catalog: Catalog
) -> None:
    open_search(page, live_server.url)
    page.fill("#query-text", "hat")
    wait_for_search(page, lambda: page.press("#query-text", "Enter"))
    first = page.locator(CARDS).first
    name = first.locator(".card-name").inner_text()
    sku = first.get_attribute("data-sku")
    wait_for_search(page, lambda: first.locator(".similar-button").click())
    assert f"like={sku}" in page.url
    assert name in page.inner_text("#results-title")
    # Focus stays on the context: the heading that names the product.
    assert page.evaluate("document.activeElement.id") == "results-title"
    similar = skus(page)
    wait_for_search(page, page.reload)
    assert skus(page) == similar
    page.wait_for_function(f"document.getElementById('results-title').textContent.includes({name!r})")
