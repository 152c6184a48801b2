"""With CLIP unavailable the page still answers, and says so with a fallback badge."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web.pages import cards, choose_photo, open_search, wait_for_search
from tests.web.server import ADMIN_TOKEN, Catalog, Server, serve, server_env

pytestmark = pytest.mark.usefixtures("no_console_errors")


@pytest.fixture(scope="module")
def no_clip_server(
    web_database: tuple[str, Path], catalog: Catalog, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A second server on the same catalog whose real CLIP weights cannot be loaded (offline, empty cache)."""
    database_url, data_dir = web_database
    empty_cache = tmp_path_factory.mktemp("no-hf-cache")
    env = server_env(
        database_url,
        data_dir,
        LOOKALIKE_CLIP_RANDOM_WEIGHTS="0",
        HF_HUB_OFFLINE="1",
        HF_HOME=str(empty_cache),
        HUGGINGFACE_HUB_CACHE=str(empty_cache / "hub"),
    )
    with serve(env, tmp_path_factory.mktemp("web-logs-fallback") / "serve.log") as server:
        yield server


def test_fallback_badge_shows_when_clip_is_unavailable(
    page: Any, no_clip_server: Server, query_photo: Callable[[str], Path]
) -> None:
    open_search(page, no_clip_server.url)
    body = choose_photo(page, query_photo("dress"))
    assert body["mode"] == "mobilenet_fallback" and body["count"] > 0
    badge = page.locator("#status .mode-badge.is-fallback")
    assert badge.get_attribute("data-mode") == "mobilenet_fallback"
    # Shoppers read what they see, never the technical reason.
    assert badge.inner_text() == "Showing visually similar items"
    shown = (
        page.inner_text("#results")
        + (badge.get_attribute("title") or "")
        + (badge.get_attribute("aria-label") or "")
    )
    assert body["fallback_reason"] and "weights" not in shown and "LOOKALIKE" not in shown

    page.click("#remove-image")
    page.fill("#query-text", "dress")
    body = wait_for_search(page, lambda: page.press("#query-text", "Enter"))
    assert body["mode"] == "fulltext_fallback" and body["count"] > 0
    assert page.inner_text("#status .mode-badge") == "Showing items that mention your words"


def test_words_reorder_a_photo_search_in_fallback_mode(
    page: Any, phone_page: Any, no_clip_server: Server, query_photo: Callable[[str], Path]
) -> None:
    """Photo of a dress + a colour word: the order moves towards products whose name has it."""
    to_photo = "el => { el.value = '1'; el.dispatchEvent(new Event('change', { bubbles: true })); }"
    for current in (page, phone_page):
        open_search(current, no_clip_server.url)
        alone = choose_photo(current, query_photo("dress"))
        current.fill("#query-text", "green")
        body = wait_for_search(current, lambda c=current: c.press("#query-text", "Enter"))
        assert body["mode"] == "mobilenet_fallback" and "re-ranked" in body["words_used"]
        names = [c["name"] for c in cards(current)]
        assert names[0].startswith("Green")
        before = [r["name"].startswith("Green") for r in alone["results"][:6]].count(True)
        assert [n.startswith("Green") for n in names[:6]].count(True) > before
        assert "re-ranked" in current.inner_text("#status")
        # The slider still means something: all the way to the photo gives the photo's order.
        body = wait_for_search(current, lambda c=current: c.eval_on_selector("#alpha", to_photo))
        assert [r["sku"] for r in body["results"][:6]] == [r["sku"] for r in alone["results"][:6]]


def test_the_admin_page_says_why_clip_is_not_serving(page: Any, no_clip_server: Server) -> None:
    page.goto(no_clip_server.url + "/admin")
    page.wait_for_selector("body[data-ready='true']")
    page.fill("#token", ADMIN_TOKEN)
    page.press("#token", "Enter")
    page.wait_for_selector("#health .health-row[data-component='clip']")
    reason = page.inner_text("#health .health-reason")
    assert "Why:" in reason and "weights" in reason and "keyword" in reason
