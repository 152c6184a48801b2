"""What a shopper does on the search page, as small helpers over Playwright's sync API."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

from tests.support import REPO_ROOT

SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"
CARDS = "#grid .card:not(.skeleton)"
MATCH = re.compile(r"^\d{1,3}% match$")


def open_search(page: Any, url: str) -> None:
    page.goto(url + "/")
    page.wait_for_selector("body[data-ready='true']")


def is_search_response(response: Any) -> bool:
    """A search, "more like this" or browse answer (not the product read of a restored link)."""
    url = response.url
    return "/api/v1/search" in url or "/similar" in url or "/api/v1/products?" in url


def wait_for_search(page: Any, action: Any) -> dict[str, Any]:
    """Run an action that triggers one search and return the API's JSON answer once rendered."""
    with page.expect_response(is_search_response) as info:
        action()
    response = info.value
    body = response.json()
    page.wait_for_selector("#results[aria-busy='false']")
    if response.ok and body.get("count"):
        page.wait_for_selector(CARDS)
    return body


def skus(page: Any) -> list[str]:
    return page.eval_on_selector_all(CARDS, "nodes => nodes.map(n => n.dataset.sku)")


def choose_photo(page: Any, photo: Path) -> dict[str, Any]:
    page.click("#camera-button")
    return wait_for_search(page, lambda: page.set_input_files("#file-input", str(photo)))


def drop_photo(page: Any, photo: Path, target: str = "#dropzone") -> dict[str, Any]:
    """A real drag-and-drop's last step: a drop event whose DataTransfer holds the file."""
    data = base64.b64encode(photo.read_bytes()).decode()
    script = """([selector, data, name]) => {
        const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name, { type: "image/jpeg" }));
        const target = document.querySelector(selector);
        for (const type of ["dragenter", "dragover", "drop"]) {
            target.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true }));
        }
    }"""
    return wait_for_search(page, lambda: page.evaluate(script, [target, data, photo.name]))


def cards(page: Any) -> list[dict[str, str]]:
    return page.eval_on_selector_all(
        CARDS,
        """nodes => nodes.map(n => ({
            sku: n.dataset.sku,
            category: n.dataset.category,
            shownCategory: n.querySelector('.card-category').textContent,
            name: n.querySelector('.card-name').textContent,
            price: n.querySelector('.card-price').textContent,
            match: n.querySelector('.match').textContent,
            alt: n.querySelector('img').alt,
        }))""",
    )


def wait_for_images(page: Any) -> None:
    """Every rendered product image has loaded (for screenshots)."""
    page.wait_for_load_state("networkidle")
    page.wait_for_function(
        "[...document.querySelectorAll('#grid img')].every(i => i.complete || i.getBoundingClientRect().top > innerHeight)",
        polling=100,
    )
