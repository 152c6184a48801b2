"""The search page in a real browser against a real ``lookalike serve`` and catalog."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.web.pages import (
    CARDS,
    MATCH,
    SCREENSHOTS,
    cards,
    choose_photo,
    drop_photo,
    open_search,
    serious_violations,
    skus,
    tab_stops,
    wait_for_images,
    wait_for_search,
)
from tests.web.server import Catalog, Server

pytestmark = pytest.mark.usefixtures("no_console_errors")


def test_a_chosen_photo_shows_results_with_matches(
    page: Any, live_server: Server, catalog: Catalog, query_photo: Callable[[str], Path]
) -> None:
    open_search(page, live_server.url)
    body = choose_photo(page, query_photo("dress"))
    assert body["mode"] == "clip"
    shown = cards(page)
    assert len(shown) == body["count"] > 0
    assert all(MATCH.match(card["match"]) for card in shown)
    # The match is relative to the best hit (the API's `match`), not a raw cosine.
    assert shown[0]["match"] == "100% match"
    shown_pct = [int(c["match"].split("%")[0]) for c in shown]
    assert all(abs(p - r["match"] * 100) <= 0.51 for p, r in zip(shown_pct, body["results"], strict=True))
    assert all(card["alt"] and card["name"] and card["price"] for card in shown)
    assert page.get_attribute("#status .mode-badge", "data-mode") == "clip"
    assert " ms" in page.inner_text("#status .status-time")
    assert page.inner_text("#results-title") == "Results for your photo"
    # Focus moved to the results heading, for keyboard and screen reader users.
    assert page.evaluate("document.activeElement.id") == "results-title"
    assert page.is_visible("#preview-image")
    src = page.get_attribute(f"{CARDS} img", "src")
    assert src.startswith("/api/v1/images/")
    page.evaluate("window.scrollTo(0, 0)")
    wait_for_images(page)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "search-1280.png"))


def test_a_dropped_photo_searches_and_can_be_removed(
    page: Any, live_server: Server, catalog: Catalog, query_photo: Callable[[str], Path]
) -> None:
    open_search(page, live_server.url)
    page.click("#camera-button")
    body = drop_photo(page, query_photo("shoes"))
    assert body["count"] > 0 and body["mode"] == "clip"
    assert page.is_visible("#preview-image") and page.is_hidden("#dropzone")
    page.click("#remove-image")
    assert page.is_hidden("#preview") and page.is_visible("#dropzone")
    assert page.is_visible("#empty")  # back to the start, with suggestions
    body = drop_photo(page, query_photo("hat"), target="main")
    assert body["count"] > 0 and page.is_visible("#preview-image")


def test_text_refines_a_photo_into_a_hybrid_search(
    page: Any, live_server: Server, catalog: Catalog, query_photo: Callable[[str], Path]
) -> None:
    open_search(page, live_server.url)
    choose_photo(page, query_photo("outwear"))
    page.fill("#query-text", "in green")
    body = wait_for_search(page, lambda: page.press("#query-text", "Enter"))
    assert body["mode"] == "hybrid" and body["words_used"]
    assert "Photo + words" in page.inner_text("#status .mode-badge")
    assert "in green" in page.inner_text("#results-title")
    set_alpha = "el => { el.value = '0.8'; el.dispatchEvent(new Event('change', { bubbles: true })); }"
    body = wait_for_search(page, lambda: page.eval_on_selector("#alpha", set_alpha))
    assert body["mode"] == "hybrid" and body["count"] > 0
    assert "w=0.8" in page.url


def test_filters_and_price_mistakes_said_in_words(
    page: Any, live_server: Server, catalog: Catalog, query_photo: Callable[[str], Path]
) -> None:
    open_search(page, live_server.url)
    choose_photo(page, query_photo("skirt"))
    body = wait_for_search(page, lambda: page.select_option("#category", "shoes"))
    shown = cards(page)
    assert shown and all(card["category"] == "shoes" and card["shownCategory"] == "shoes" for card in shown)
    assert body["count"] <= len(catalog.skus["shoes"])
    chip = page.locator(".attribute-chip[data-key='fit'][data-value='relaxed']")
    wait_for_search(page, chip.click)
    assert page.get_attribute(".attribute-chip[data-value='relaxed']", "aria-pressed") == "true"
    assert all(card["category"] == "shoes" for card in cards(page))
    before = skus(page)
    # min > max and a negative price: said next to the fields; nothing is swapped or searched.
    set_prices = """([min, max]) => { const a = document.getElementById('price-min'), b = document.getElementById('price-max');
        a.value = min; b.value = max; b.dispatchEvent(new Event('change', { bubbles: true })); }"""
    page.evaluate(set_prices, ["90", "10"])
    page.wait_for_selector("#price-error:not([hidden])")
    assert "above the maximum" in page.inner_text("#price-error")
    assert page.get_attribute("#price-min", "aria-invalid") == "true"
    page.evaluate(set_prices, ["-5", "10"])
    page.wait_for_function("document.getElementById('price-error').textContent.includes('negative')")
    page.wait_for_timeout(700)  # past the fields' debounce: still no search
    assert skus(page) == before
    body = wait_for_search(page, lambda: page.evaluate(set_prices, ["100000", ""]))
    assert body["count"] == 0 and page.is_hidden("#price-error")
    assert page.is_visible("#empty") and "filters" in page.inner_text("#empty")


def test_more_like_this_and_load_more_that_ends(any_page: Any, live_server: Server, catalog: Catalog) -> None:
    page = any_page
    open_search(page, live_server.url)
    page.fill("#query-text", "clothes")
    first = wait_for_search(page, lambda: page.press("#query-text", "Enter"))
    loaded = first["count"]
    pages = 1
    while page.is_visible("#load-more"):
        body = wait_for_search(page, lambda: page.click("#load-more"))
        loaded += body["count"]
        pages += 1
        assert pages < 10
    # The list ended with the matches, before the catalog did, and the count says all of it.
    assert page.locator(CARDS).count() == loaded < catalog.size
    assert page.inner_text("#status .status-count") == f"{loaded} results"
    assert f"n={pages}" in page.url or pages == 1
    target = cards(page)[0]
    body = wait_for_search(page, lambda: page.locator(f"{CARDS} .similar-button").first.click())
    assert body["count"] > 0
    assert target["name"] in page.inner_text("#results-title")
    assert target["sku"] not in {card["sku"] for card in cards(page)}
    assert page.evaluate("document.activeElement.id") == "results-title"
    wait_for_search(page, page.go_back)
    assert "clothes" in page.inner_text("#results-title")


def test_keyboard_only_search_without_hidden_tab_stops(
    any_page: Any, live_server: Server, catalog: Catalog
) -> None:
    page = any_page
    open_search(page, live_server.url)
    stops = tab_stops(page)
    hidden = [s for s in stops if not s["visible"] and s["cls"] != "skip-link"]
    assert not hidden, hidden
    assert not [s for s in stops if s["id"] in ("file-input", "camera-input")]
    # From the top: skip link, home, admin link, then the search box.
    page.evaluate("document.activeElement && document.activeElement.blur()")
    for _ in range(4):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "query-text":
            break
    assert page.evaluate("document.activeElement.id") == "query-text"
    page.keyboard.type("red summer dress")
    body = wait_for_search(page, lambda: page.keyboard.press("Enter"))
    assert body["count"] > 0
    assert page.evaluate("document.activeElement.id") == "results-title"
    # The first result's button is the next stops away; Enter opens "more like this".
    for _ in range(6):
        page.keyboard.press("Tab")
        if "similar-button" in page.evaluate("document.activeElement.className"):
            break
    body = wait_for_search(page, lambda: page.keyboard.press("Enter"))
    assert body["count"] > 0 and page.evaluate("document.activeElement.id") == "results-title"
    # The camera button opens the photo panel, which focuses the drop zone.
    page.focus("#camera-button")
    page.keyboard.press("Enter")
    assert page.is_visible("#upload-panel") and page.evaluate("document.activeElement.id") == "dropzone"
    # Focus rings are visible: >= 3:1 against the page.
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineColor")
    assert outline in ("rgb(31, 61, 54)",), outline


def test_a_bad_file_never_removes_results_and_errors_are_plain_words(
    any_page: Any, live_server: Server, catalog: Catalog, query_photo: Callable[[str], Path]
) -> None:
    page = any_page
    open_search(page, live_server.url)
    choose_photo(page, query_photo("shorts"))
    before = skus(page)
    preview = page.get_attribute("#preview-image", "src")
    # Not an image at all: refused in the browser.
    page.set_input_files("#file-input", {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"})
    page.wait_for_selector("#message:not([hidden])")
    assert "isn't an image" in page.inner_text("#message")
    assert skus(page) == before and page.get_attribute("#preview-image", "src") == preview
    # Looks like a JPEG by name and type, but does not decode: refused before any upload.
    fake = {"name": "photo.jpg", "mimeType": "image/jpeg", "buffer": b"definitely not a jpeg" * 10}
    page.set_input_files("#file-input", fake)
    page.wait_for_function("document.getElementById('message-text').textContent.includes('damaged')")
    assert skus(page) == before and page.is_visible("#preview-image")
    assert page.get_attribute("#preview-image", "src") == preview
    # Too large: checked before upload (the server's limit is 2 MB in these tests).
    page.set_input_files(
        "#file-input", {"name": "huge.jpg", "mimeType": "image/jpeg", "buffer": b"\xff" * 2_100_000}
    )
    page.wait_for_function("document.getElementById('message-text').textContent.includes('1.9 MB')")
    assert skus(page) == before
    # A server error: plain words, a retry, and the results stay.
    page.route("**/api/v1/search/image", lambda route: route.fulfill(status=500, body="oops"))
    page.fill("#query-text", "jacket")
    page.press("#query-text", "Enter")
    page.wait_for_selector("#message-retry:not([hidden])")
    text = page.inner_text("#message")
    assert "went wrong on our side" in text and "500" not in text
    assert skus(page) == before
    page.unroute("**/api/v1/search/image")
    body = wait_for_search(page, lambda: page.click("#message-retry"))
    assert body["mode"] == "hybrid" and page.is_hidden("#message")
    # Unreachable: said so.
    page.route("**/api/v1/search/image", lambda route: route.abort())
    page.fill("#query-text", "coat")
    page.press("#query-text", "Enter")
    page.wait_for_function("document.getElementById('message-text').textContent.includes('reach')")


def test_phone_layout(
    phone_page: Any, live_server: Server, catalog: Catalog, query_photo: Callable[[str], Path]
) -> None:
    page = phone_page
    open_search(page, live_server.url)
    placeholder = page.get_attribute("#query-text", "placeholder")
    placeholder_fits = """() => { const i = document.getElementById('query-text'); const c = document.createElement('canvas').getContext('2d');
            c.font = getComputedStyle(i).font; return c.measureText(i.placeholder).width <= i.clientWidth - 8; }"""
    assert page.evaluate(placeholder_fits), placeholder
    choose_photo(page, query_photo("t-shirt"))
    assert page.evaluate(placeholder_fits), page.get_attribute("#query-text", "placeholder")
    # The results were scrolled into view, heading first.
    page.wait_for_function(
        "(() => { const t = document.getElementById('results-title').getBoundingClientRect().top; return t >= 0 && t < 844 / 2; })()"
    )
    wide = page.evaluate(
        """[...document.querySelectorAll('body *')]
            .filter(n => n.getBoundingClientRect().right > innerWidth + 1 && n.getClientRects().length)
            .map(n => n.tagName + '#' + n.id + '.' + n.className)"""
    )
    assert not wide, f"nothing overflows a phone screen: {wide}"
    columns = page.evaluate(
        "getComputedStyle(document.getElementById('grid')).gridTemplateColumns.split(' ').length"
    )
    assert columns == 2
    page.evaluate("window.scrollTo(0, 0)")
    wait_for_images(page)
    page.screenshot(path=str(SCREENSHOTS / "search-390.png"))


def test_no_serious_accessibility_violations(
    page: Any, phone_page: Any, live_server: Server, catalog: Catalog, query_photo: Callable[[str], Path]
) -> None:
    for current in (page, phone_page):
        open_search(current, live_server.url)
        assert not serious_violations(current)
        choose_photo(current, query_photo("hat"))
        wait_for_images(current)
        assert not serious_violations(current)
        current.goto(live_server.url + "/admin")
        current.wait_for_selector("body[data-ready='true']")
        assert not serious_violations(current)
