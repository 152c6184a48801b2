"""What a shopper does on the search page, as small helpers over Playwright's sync API."""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

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
            match: n.querySelector('.match')?.textContent ?? '',
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


AXE_VERSION = "4.11.0"
AXE_DIR = REPO_ROOT / "tests" / "artifacts" / "axe-core"  # ignored by git; npm fills it on first use


def axe_source() -> str:
    """axe-core's browser build, installed with npm into an ignored folder on first use."""
    script = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
    if not script.exists():
        AXE_DIR.mkdir(parents=True, exist_ok=True)
        command = ["npm", "install", "--prefix", str(AXE_DIR), "--no-save", "--no-audit", "--no-fund"]
        result = subprocess.run(
            [*command, f"axe-core@{AXE_VERSION}"], capture_output=True, text=True, timeout=300
        )
        if result.returncode != 0 or not script.exists():
            pytest.fail(f"npm could not install axe-core {AXE_VERSION}: {result.stderr[-2000:]}")
    return script.read_text()


def serious_violations(page: Any) -> list[tuple[str, str, list[Any]]]:
    """axe-core's serious and critical findings on the page as it is now."""
    page.add_script_tag(content=axe_source())
    result = page.evaluate("axe.run(document, { resultTypes: ['violations'] })")
    return [
        (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def tab_stops(page: Any, limit: int = 60) -> list[dict[str, Any]]:
    """Press Tab from the top of the page and describe every element that takes focus."""
    page.evaluate("document.activeElement && document.activeElement.blur()")
    stops = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        stop = page.evaluate(
            """() => { const n = document.activeElement; if (!n || n === document.body) return null;
                const r = n.getBoundingClientRect(); const s = getComputedStyle(n);
                return { id: n.id, tag: n.tagName, cls: String(n.className), w: r.width, h: r.height,
                         visible: r.width > 2 && r.height > 2 && s.visibility !== 'hidden' && s.opacity !== '0' }; }"""
        )
        if stop is None or (stops and stop == stops[0]):
            break
        stops.append(stop)
    return stops
