"""The admin page: token sign-in, bulk upload with progress per file, coverage per model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.web.pages import SCREENSHOTS
from tests.web.server import ADMIN_TOKEN, Catalog, Server


def coverage(page: Any, model: str) -> str:
    return page.inner_text(f".stat[data-model='{model}'] .coverage")


def test_admin_signs_in_uploads_many_photos_and_sees_coverage(
    page: Any, live_server: Server, catalog: Catalog, clothing_dataset: Path
) -> None:
    page.goto(live_server.url + "/admin")
    page.wait_for_selector("body[data-ready='true']")
    # A wrong token is refused with a message; the right one opens the workspace.
    page.fill("#token", "not-the-token")
    page.press("#token", "Enter")
    page.wait_for_selector("#login-message:not([hidden])")
    assert "not accepted" in page.inner_text("#login-message")
    page.fill("#token", ADMIN_TOKEN)
    page.press("#token", "Enter")
    page.wait_for_selector(".stat[data-model='clip']")
    assert page.evaluate("sessionStorage.getItem('lookalike.adminToken')") == ADMIN_TOKEN
    assert coverage(page, "clip") == "100%" and coverage(page, "fallback") == "100%"

    photos = sorted((clothing_dataset / "validation" / "hat").glob("*.jpg"))[:3]
    page.fill("#upload-category", "accessories")
    page.fill("#upload-price", "19.90")
    page.set_input_files("#upload-files", [str(p) for p in photos])
    assert "3 photos selected" in page.inner_text("#upload-summary")
    page.click("#upload-start")
    page.wait_for_selector("#upload-list .upload-item[data-state='done'] >> nth=2", timeout=60_000)
    assert page.locator("#upload-list .upload-item").count() == 3
    assert page.locator("#upload-list .upload-item[data-state='done']").count() == 3
    assert page.locator("#upload-list .upload-state:text-is('Added')").count() == 3
    # The coverage poll sees the three new products, all embedded by both models.
    expected = str(catalog.size + 3)
    page.wait_for_function(
        "n => document.querySelector('.totals .total strong').textContent === n", arg=expected, timeout=15_000
    )
    assert coverage(page, "clip") == "100%"
    assert page.is_visible("#health .status-ok")
    # Products got their SKU from the file name and the category from the field.
    product = httpx.get(f"{live_server.url}/api/v1/products/{photos[0].stem}").json()
    assert product["category"] == "accessories" and product["price"] == 19.9
    # The worker's status reads as sentences, not a dump of its fields.
    ingest = page.inner_text("#ingest") if page.is_visible("#ingest") else ""
    assert "{}" not in ingest and "null" not in ingest
    page.screenshot(path=str(SCREENSHOTS / "admin-1280.png"))
    # The same photos again replace those products: "Updated", not "Added".
    page.set_input_files("#upload-files", [str(p) for p in photos])
    page.click("#upload-start")
    page.wait_for_function(
        "[...document.querySelectorAll('#upload-list .upload-item')]"
        ".filter(n => n.dataset.state === 'done' || n.dataset.state === 'failed').length >= 6",
        timeout=60_000,
    )
    labels = page.eval_on_selector_all("#upload-list .upload-state", "nodes => nodes.map(n => n.textContent)")
    assert labels.count("Updated") == 3, labels
    # The token survives a reload within the tab.
    page.reload()
    page.wait_for_selector(".stat[data-model='clip']")
    # Leave the shared catalog as the other browser tests expect it.
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for photo in photos:
        response = httpx.delete(f"{live_server.url}/api/v1/products/{photo.stem}", headers=headers)
        assert response.status_code == 204, response.text
