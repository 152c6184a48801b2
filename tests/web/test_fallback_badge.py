"""With CLIP unavailable the page still answers, and says so with a fallback badge."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web.pages import choose_photo, open_search, wait_for_search
from tests.web.server import Catalog, Server, serve, server_env


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
    assert "Fallback" in badge.inner_text()
    assert badge.get_attribute("title") == body["fallback_reason"] and body["fallback_reason"]

    page.click("#remove-image")
    page.fill("#query-text", "dress")
    body = wait_for_search(page, lambda: page.press("#query-text", "Enter"))
    assert body["mode"] == "fulltext_fallback" and body["count"] > 0
    assert page.get_attribute("#status .mode-badge", "data-mode") == "fulltext_fallback"
    assert page.locator("#status .mode-badge.is-fallback").count() == 1
