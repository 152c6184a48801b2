"""Crop the query photo like Lens: drag a box (mouse or touch) or move it with the keyboard, and
the search runs again on the part inside the box, cut out in the browser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.web.conftest import DESKTOP, PHONE
from tests.web.pages import choose_photo, skus, wait_for_search
from tests.web.server import Catalog, Server

pytestmark = pytest.mark.usefixtures("no_console_errors")


def catalog_photo(dataset: Path, category: str, index: int) -> tuple[Path, str]:
    """A photo that is in the catalog, and its SKU (tests/web/server.py names them so)."""
    photo = sorted((dataset / "train" / category).glob("*.jpg"))[index]
    return photo, f"{category}-{photo.stem[:8]}"


@pytest.fixture(scope="module")
def two_items(clothing_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """Shoes on the left, a dress on the right: one photo, two things a shopper could mean."""
    left, left_sku = catalog_photo(clothing_dataset, "shoes", 0)
    right, right_sku = catalog_photo(clothing_dataset, "dress", 1)
    a, b = Image.open(left).convert("RGB"), Image.open(right).convert("RGB")
    canvas = Image.new("RGB", (a.width + b.width, max(a.height, b.height)), "white")
    canvas.paste(a, (0, 0))
    canvas.paste(b, (a.width, 0))
    path = tmp_path_factory.mktemp("crop") / "two-items.jpg"
    canvas.save(path, quality=95)
    return path, left_sku, right_sku


def stage_box(page: Any) -> dict[str, float]:
    """Where the photo is on screen now (after the page scrolled the results into view)."""
    page.locator(".lk-crop-stage").scroll_into_view_if_needed()
    return page.eval_on_selector(
        ".lk-crop-stage",
        "n => { const r = n.getBoundingClientRect(); return {x: r.x, y: r.y, w: r.width, h: r.height}; }",
    )


def test_drag_a_box_and_the_search_runs_on_the_crop(
    page: Any, live_server: Server, catalog: Catalog, two_items: tuple[Path, str, str]
) -> None:
    photo, left_sku, right_sku = two_items
    page.set_viewport_size(DESKTOP)
    page.emulate_media(reduced_motion="reduce")  # no smooth scrolling under the pointer
    page.goto(live_server.url + "/")
    page.wait_for_selector("body[data-ready='true']")
    choose_photo(page, photo)
    whole = skus(page)
    assert page.is_hidden("#reset-crop")
    box = stage_box(page)

    def drag() -> None:
        page.mouse.move(box["x"] + box["w"] * 0.52, box["y"] + 3)
        page.mouse.down()
        page.mouse.move(box["x"] + box["w"] * 0.75, box["y"] + box["h"] / 2, steps=5)
        page.mouse.move(box["x"] + box["w"] - 2, box["y"] + box["h"] - 2, steps=5)
        page.mouse.up()

    wait_for_search(page, drag)
    right = skus(page)
    assert right != whole
    assert right_sku in right[:3], (right_sku, right[:5])
    assert page.is_visible("#reset-crop") and "part inside the box" in page.inner_text("#crop-help")

    # Keyboard: the box is a Tab stop; arrow keys move it and the search runs again.
    page.focus(".lk-crop-box")

    def to_the_left() -> None:
        for _ in range(40):  # 2% of the width a press; the search waits for the keys to stop
            page.keyboard.press("ArrowLeft")

    body = wait_for_search(page, to_the_left)
    assert body["count"] > 0
    crop = page.evaluate("document.querySelector('.lk-crop-box').getAttribute('aria-description')")
    assert "pixels at 0," in crop, crop
    moved = skus(page)
    assert left_sku in moved[:3], (left_sku, moved[:5])
    # "Use the whole photo" goes back to the first results.
    wait_for_search(page, lambda: page.click("#reset-crop"))
    assert skus(page) == whole


def test_a_touch_drag_crops_on_a_phone(
    browser: Any, live_server: Server, catalog: Catalog, two_items: tuple[Path, str, str]
) -> None:
    photo, left_sku, _ = two_items
    context = browser.new_context(viewport=PHONE, device_scale_factor=1, has_touch=True, is_mobile=True)
    page = context.new_page()
    page.emulate_media(reduced_motion="reduce")
    try:
        page.goto(live_server.url + "/")
        page.wait_for_selector("body[data-ready='true']")
        choose_photo(page, photo)
        whole = skus(page)
        box = stage_box(page)
        cdp = context.new_cdp_session(page)

        def touch(kind: str, x: float, y: float) -> None:
            points = [] if kind == "touchEnd" else [{"x": x, "y": y}]
            cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

        def swipe() -> None:
            # The top-right corner's handle, dragged left to the middle: the left half stays.
            start_x, y = box["x"] + box["w"] - 3, box["y"] + 3
            touch("touchStart", start_x, y)
            for step in range(1, 8):
                touch("touchMove", start_x - (box["w"] * 0.52) * step / 7, y)
            touch("touchEnd", 0, 0)

        wait_for_search(page, swipe)
        cropped = skus(page)
        assert cropped != whole and left_sku in cropped[:3], (left_sku, cropped[:5])
    finally:
        context.close()
