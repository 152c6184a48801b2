"""The storefront widget in a real browser: a demo shop page on its own origin (a second local port)
loads ``/ui/widget.js`` from a real ``lookalike serve`` that lists that origin in
``LOOKALIKE_CORS_ORIGINS``, and searches the catalog across origins.
"""

from __future__ import annotations

import base64
import html
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest

from tests.support import REPO_ROOT
from tests.web.conftest import PHONE
from tests.web.pages import SCREENSHOTS
from tests.web.server import ADMIN_TOKEN, Catalog, Server, serve, server_env

DEMO = Path(__file__).parent / "demo_shop"
AXE_VERSION = "4.11.0"
AXE_DIR = REPO_ROOT / "tests" / "artifacts" / "axe-core"  # ignored by git; npm fills it on first use
WIDGET = "lookalike-search"
CARDS = f"{WIDGET} ul li"
RESET_CSS = "<style>* { all: unset; } head, script, style, title { display: none; }</style>"


PAGE_ERRORS: list[str] = []


@pytest.fixture(autouse=True)
def no_page_errors() -> Iterator[None]:
    """Any uncaught error in the shop page (the widget's or the demo's) fails the test."""
    PAGE_ERRORS.clear()
    yield
    assert not PAGE_ERRORS, PAGE_ERRORS


@dataclass
class DemoShop:
    """A shop front-end on its own port: its home page (``?reset=1`` adds a ``* { all: unset }``
    reset; ``?lang=`` and ``?attrs=`` set the page language and extra widget attributes) and a
    page per product at ``/products/<sku>``."""

    api_url: str = ""
    server: ThreadingHTTPServer | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def page(self, content: str, query: dict[str, str]) -> str:
        return (
            content.replace("{{LOOKALIKE}}", self.api_url)
            .replace("{{LANG}}", html.escape(query.get("lang", "en")))
            .replace("{{RESET}}", RESET_CSS if query.get("reset") else "")
            .replace("{{ATTRS}}", query.get("attrs", 'page-size="8"'))
        )


def start_demo_shop() -> DemoShop:
    shop = DemoShop()
    index = (DEMO / "index.html").read_text()
    product = (DEMO / "product.html").read_text()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if parts.path == "/":
                body = shop.page(index, query)
            elif parts.path.startswith("/products/"):
                sku = unquote(parts.path.removeprefix("/products/"))
                body = product.replace("{{SKU}}", html.escape(sku))
            else:
                self.send_error(404)
                return
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    shop.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=shop.server.serve_forever, daemon=True).start()
    return shop


@pytest.fixture(scope="module")
def shops() -> Iterator[dict[str, DemoShop]]:
    """Two shop origins: one the API lists, one it does not."""
    made = {"listed": start_demo_shop(), "unlisted": start_demo_shop()}
    yield made
    for shop in made.values():
        assert shop.server is not None
        shop.server.shutdown()
        shop.server.server_close()


@pytest.fixture(scope="module")
def widget_server(
    web_database: tuple[str, Path],
    catalog: Catalog,
    shops: dict[str, DemoShop],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    """A server on the shared catalog that lets the listed shop's origin in; every product gets
    its page in that shop as ``url``."""
    database_url, data_dir = web_database
    env = server_env(database_url, data_dir, LOOKALIKE_CORS_ORIGINS=shops["listed"].url)
    with serve(env, tmp_path_factory.mktemp("web-logs-widget") / "serve.log") as server:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
            for skus in catalog.skus.values():
                for sku in skus:
                    url = f"{shops['listed'].url}/products/{sku}"
                    response = client.patch(f"/api/v1/products/{sku}", json={"url": url})
                    assert response.status_code == 200, response.text
        for shop in shops.values():
            shop.api_url = server.url
        yield server


@pytest.fixture
def shop(widget_server: Server, shops: dict[str, DemoShop]) -> DemoShop:
    return shops["listed"]


# --- helpers ----------------------------------------------------------------------------------


def open_shop(page: Any, shop: DemoShop, query: str = "") -> None:
    page.on("pageerror", lambda error: PAGE_ERRORS.append(str(error)))
    page.goto(f"{shop.url}/{query}")
    page.wait_for_function("customElements.get('lookalike-search') !== undefined")


def events(page: Any, kind: str) -> list[dict[str, Any]]:
    return page.evaluate("(type) => window.lookalikeEvents.filter(e => e.type === type)", f"lookalike:{kind}")


def wait_for_event(page: Any, kind: str, before: int) -> dict[str, Any]:
    """The next ``lookalike:<kind>`` event after `before` of them had been seen."""
    page.wait_for_function(
        "([type, n]) => window.lookalikeEvents.filter(e => e.type === type).length > n",
        arg=[f"lookalike:{kind}", before],
    )
    return events(page, kind)[before]["detail"]


def search_with(page: Any, action: Callable[[], None]) -> dict[str, Any]:
    """Run an action that starts one search; return the ``lookalike:results`` detail once rendered."""
    before = len(events(page, "results"))
    action()
    try:
        return wait_for_event(page, "results", before)
    except Exception:
        print("widget events:", page.evaluate("JSON.stringify(window.lookalikeEvents).slice(0, 3000)"))
        print("widget results area:", page.inner_text(f"{WIDGET} .results"))
        raise


def choose_photo(page: Any, photo: Path) -> dict[str, Any]:
    page.click(f"{WIDGET} .trigger")
    return search_with(page, lambda: page.set_input_files(f"{WIDGET} input.file", str(photo)))


def shown_cards(page: Any) -> list[dict[str, str]]:
    return page.eval_on_selector_all(
        CARDS,
        """nodes => nodes.map(n => ({
            sku: n.dataset.sku,
            href: n.querySelector('.card').getAttribute('href'),
            name: n.querySelector('.name').textContent,
            price: n.querySelector('.price').textContent,
            width: n.getBoundingClientRect().width,
        }))""",
    )


def wait_for_images(page: Any) -> None:
    page.wait_for_function(
        f"""[...document.querySelector('{WIDGET}').shadowRoot.querySelectorAll('ul img')]
            .every(i => i.complete && i.naturalWidth > 0)""",
        polling=100,
    )


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


# --- tests ------------------------------------------------------------------------------------


def test_a_shop_on_another_origin_searches_by_photo_and_opens_the_product(
    page: Any, shop: DemoShop, widget_server: Server, query_photo: Callable[[str], Path]
) -> None:
    page.set_viewport_size({"width": 1280, "height": 800})
    open_shop(page, shop)
    assert shop.url != widget_server.url
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    header = page.locator(".shop-header").bounding_box()
    form = page.locator(".shop-search").bounding_box()
    clip = {**header, "width": form["x"] + form["width"] + 24}
    page.screenshot(path=str(SCREENSHOTS / "widget-button.png"), clip=clip)
    detail = choose_photo(page, query_photo("dress"))
    response = detail["response"]
    assert response["mode"] == "clip" and response["count"] == 8 and detail["query"]["kind"] == "search"
    cards = shown_cards(page)
    assert len(cards) == 8
    assert all(card["href"] == f"{shop.url}/products/{card['sku']}" for card in cards)
    assert all(card["name"] and card["price"] for card in cards)
    assert "8 results" in page.inner_text(f"{WIDGET} .status")
    # Product images come from the API's origin and load there.
    src = page.get_attribute(f"{CARDS} img", "src")
    assert src.startswith(f"{widget_server.url}/api/v1/images/")
    wait_for_images(page)
    page.screenshot(path=str(SCREENSHOTS / "widget-demo.png"))
    # Photo -> rendered results for a few more photos (new photos: no cache), for docs/benchmarks.md.
    times = [(detail["ms"], round(response["timing"]["total"]))]
    for category in ("shoes", "hat", "pants", "skirt"):
        page.click(f"{WIDGET} .remove")
        more = search_with(
            page, lambda c=category: page.set_input_files(f"{WIDGET} input.file", str(query_photo(c)))
        )
        times.append((more["ms"], round(more["response"]["timing"]["total"])))
    print(f"widget photo -> results, (page ms, server ms): {times}")
    cards = shown_cards(page)
    # The card is a link to the shop's product page, announced first as a cancelable event.
    with page.expect_navigation():
        page.click(f"{CARDS} .card >> nth=0")
    assert page.url == cards[0]["href"]
    assert page.inner_text("#product") == f"Product {cards[0]['sku']}"


def test_words_alone_and_more_like_this(page: Any, shop: DemoShop) -> None:
    open_shop(page, shop)
    page.click(f"{WIDGET} .trigger")
    page.fill(f"{WIDGET} #words", "shoes")
    detail = search_with(page, lambda: page.press(f"{WIDGET} #words", "Enter"))
    assert detail["response"]["count"] > 0 and detail["query"]["words"] == "shoes"
    first = shown_cards(page)[0]
    detail = search_with(page, lambda: page.click(f"{CARDS} .like >> nth=0"))
    assert detail["query"]["kind"] == "similar" and detail["response"]["count"] > 0
    assert first["sku"] not in {card["sku"] for card in shown_cards(page)}
    assert first["name"] in page.inner_text(f"{WIDGET} .banner")
    detail = search_with(page, lambda: page.click(f"{WIDGET} .back"))
    assert detail["query"]["kind"] == "search" and page.is_hidden(f"{WIDGET} .banner")
    # Show more appends the next page.
    if page.is_visible(f"{WIDGET} .more"):
        count = len(shown_cards(page))
        search_with(page, lambda: page.click(f"{WIDGET} .more"))
        assert len(shown_cards(page)) > count


def test_the_shop_can_take_over_the_choice(page: Any, shop: DemoShop) -> None:
    """A shop that opens its own quick view cancels ``lookalike:select``: no navigation."""
    open_shop(page, shop)
    page.evaluate("window.cancelSelect = true")
    page.click(f"{WIDGET} .trigger")
    page.fill(f"{WIDGET} #words", "hat")
    search_with(page, lambda: page.press(f"{WIDGET} #words", "Enter"))
    first = shown_cards(page)[0]
    page.click(f"{CARDS} .card >> nth=0")
    selected = wait_for_event(page, "select", 0)
    assert selected["product"]["sku"] == first["sku"] and selected["product"]["url"] == first["href"]
    assert page.url.rstrip("/") == shop.url


def test_the_widget_survives_an_all_unset_reset(
    page: Any, shop: DemoShop, query_photo: Callable[[str], Path]
) -> None:
    open_shop(page, shop, "?reset=1")
    trigger = page.locator(f"{WIDGET} .trigger").bounding_box()
    assert trigger and trigger["width"] >= 36 and trigger["height"] >= 36
    detail = choose_photo(page, query_photo("shoes"))
    assert detail["response"]["count"] == 8
    dialog = page.locator(f"{WIDGET} dialog").bounding_box()
    assert dialog and dialog["width"] > 600
    cards = shown_cards(page)
    assert len(cards) == 8 and all(card["width"] > 100 for card in cards)
    # Our font and colours, not the reset's (which would leave Times at the root's default size).
    font = page.eval_on_selector(f"{WIDGET} .status", "el => getComputedStyle(el).fontFamily")
    assert "system-ui" in font
    # The shop's theme (custom properties on the element) still reaches inside.
    accent = page.eval_on_selector(f"{WIDGET} form .primary", "el => getComputedStyle(el).backgroundColor")
    assert accent == "rgb(122, 46, 31)"  # --lookalike-accent: #7a2e1f in the demo page
    with page.expect_navigation():
        page.click(f"{CARDS} .card >> nth=0")
    assert "/products/" in page.url


def test_an_unlisted_origin_is_blocked_by_the_browser(
    page: Any, widget_server: Server, shops: dict[str, DemoShop], query_photo: Callable[[str], Path]
) -> None:
    shop = shops["unlisted"]
    messages: list[str] = []
    page.on("console", lambda message: messages.append(message.text))
    open_shop(page, shop)  # the widget's own files load anywhere
    page.click(f"{WIDGET} .trigger")
    page.fill(f"{WIDGET} #words", "dress")
    page.press(f"{WIDGET} #words", "Enter")
    error = wait_for_event(page, "error", 0)
    assert error["code"] == "server_unreachable"
    # A photo (a "simple" multipart request, no preflight) is blocked on the way back.
    page.set_input_files(f"{WIDGET} input.file", str(query_photo("dress")))
    assert wait_for_event(page, "error", 1)["code"] == "server_unreachable"
    assert page.locator(CARDS).count() == 0
    assert page.is_visible(f"{WIDGET} .error")
    assert any("CORS policy" in message for message in messages), messages
    # What the browser saw: no CORS header for this origin, on the preflight or on the answer.
    preflight = httpx.options(
        f"{widget_server.url}/api/v1/search",
        headers={"Origin": shop.url, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 403 and "access-control-allow-origin" not in preflight.headers
    answer = httpx.post(
        f"{widget_server.url}/api/v1/search", json={"text": "dress"}, headers={"Origin": shop.url}
    )
    assert answer.status_code == 200 and "access-control-allow-origin" not in answer.headers


def test_keyboard_alone(page: Any, shop: DemoShop, query_photo: Callable[[str], Path]) -> None:
    open_shop(page, shop)
    # Listening before the chooser is wanted: armed only by expect_file_chooser, the interception
    # sometimes came too late and Chromium showed no chooser at all.
    choosers: list[Any] = []
    page.on("filechooser", lambda chooser: choosers.append(chooser))
    page.focus("#shop-search-input")
    page.keyboard.type("linen")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.tagName") == "LOOKALIKE-SEARCH"
    assert page.evaluate(f"document.querySelector('{WIDGET}').shadowRoot.activeElement.className").startswith(
        "trigger"
    )
    page.keyboard.press("Enter")
    assert page.is_visible(f"{WIDGET} dialog")
    active = f"document.querySelector('{WIDGET}').shadowRoot.activeElement"
    assert page.evaluate(f"{active}.className") == "pick primary"
    page.keyboard.press("Enter")
    page.wait_for_timeout(100)
    for _ in range(50):
        if choosers:
            break
        page.wait_for_timeout(100)
    assert len(choosers) == 1
    detail = search_with(page, lambda: choosers[0].set_files(str(query_photo("pants"))))
    # The words typed into the shop's own box refine the photo.
    assert detail["query"]["words"] == "linen" and detail["response"]["mode"] == "hybrid"
    assert page.evaluate(f"{active}.className") == "lk-crop-box"
    detail = search_with(page, lambda: page.keyboard.press("ArrowRight"))  # shrink the box: a crop search
    assert detail["response"]["count"] > 0
    # Tab through to the first result's "More like this" and use it.
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate(f"{active}.className") == "like":
            break
    assert page.evaluate(f"{active}.className") == "like"
    detail = search_with(page, lambda: page.keyboard.press("Enter"))
    assert detail["query"]["kind"] == "similar"
    page.keyboard.press("Escape")
    assert page.is_hidden(f"{WIDGET} dialog")
    assert page.evaluate(f"{active}.className").startswith("trigger")


def test_no_serious_accessibility_violations(
    page: Any, phone_page: Any, shop: DemoShop, query_photo: Callable[[str], Path]
) -> None:
    source = axe_source()
    for current in (page, phone_page):
        open_shop(current, shop)
        choose_photo(current, query_photo("skirt"))
        wait_for_images(current)
        current.add_script_tag(content=source)
        result = current.evaluate("axe.run(document, { resultTypes: ['violations'] })")
        serious = [
            (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
            for v in result["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        assert not serious, serious
    phone_page.screenshot(path=str(SCREENSHOTS / "widget-phone.png"))


def test_labels_follow_the_lang_attribute(
    page: Any, shop: DemoShop, query_photo: Callable[[str], Path]
) -> None:
    open_shop(page, shop, "?lang=fr")  # the page's language is the default
    assert page.get_attribute(f"{WIDGET} .trigger", "title") == "Rechercher par photo"
    detail = choose_photo(page, query_photo("hat"))
    assert detail["response"]["count"] == 8
    assert page.inner_text(f"{WIDGET} .status") == "8 résultats"
    assert page.inner_text(f"{WIDGET} .pick") == "Choisir une photo"
    assert page.get_attribute(f"{WIDGET} .close", "aria-label") == "Fermer"
    # The attribute wins over the page, and a change re-labels what is on screen.
    page.eval_on_selector(WIDGET, "el => el.setAttribute('lang', 'vi')")
    assert page.inner_text(f"{WIDGET} .status") == "8 kết quả"
    assert page.inner_text(f"{CARDS} .like >> nth=0") == "Sản phẩm tương tự"
    assert page.get_attribute(f"{WIDGET} .lk", "lang") == "vi"
    page.eval_on_selector(WIDGET, "el => el.setAttribute('lang', 'en')")
    assert page.inner_text(f"{WIDGET} .remove") == "Remove photo"


def test_attributes_preset_the_category_and_page_size(page: Any, shop: DemoShop, catalog: Catalog) -> None:
    open_shop(page, shop, "?attrs=" + 'category="shoes" page-size="5"')
    page.click(f"{WIDGET} .trigger")
    page.fill(f"{WIDGET} #words", "summer")
    detail = search_with(page, lambda: page.press(f"{WIDGET} #words", "Enter"))
    skus = [card["sku"] for card in shown_cards(page)]
    assert detail["response"]["top_k"] == 5 and len(skus) <= 5
    assert skus and all(sku in catalog.skus["shoes"] for sku in skus)


def test_a_phone_offers_its_camera(browser: Any, shop: DemoShop, query_photo: Callable[[str], Path]) -> None:
    context = browser.new_context(viewport=PHONE, device_scale_factor=1, has_touch=True, is_mobile=True)
    try:
        page = context.new_page()
        page.set_default_timeout(30_000)
        choosers: list[Any] = []
        page.on("filechooser", lambda chooser: choosers.append(chooser))
        open_shop(page, shop)
        page.tap(f"{WIDGET} .trigger")
        assert page.is_visible(f"{WIDGET} .camera")  # only where the pointer is coarse
        assert page.get_attribute(f"{WIDGET} input.shoot", "capture") == "environment"
        page.tap(f"{WIDGET} .camera")
        for _ in range(50):
            if choosers:
                break
            page.wait_for_timeout(100)
        assert len(choosers) == 1 and not choosers[0].is_multiple()
        detail = search_with(page, lambda: choosers[0].set_files(str(query_photo("shorts"))))
        assert detail["response"]["count"] == 8
        dialog = page.locator(f"{WIDGET} dialog").bounding_box()
        assert dialog and dialog["width"] == PHONE["width"]  # full screen on a phone
    finally:
        context.close()


@pytest.fixture(scope="module")
def fallback_server(
    web_database: tuple[str, Path],
    widget_server: Server,
    shops: dict[str, DemoShop],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    """The same catalog served without CLIP (its real weights cannot be loaded offline)."""
    database_url, data_dir = web_database
    empty_cache = tmp_path_factory.mktemp("widget-no-hf-cache")
    env = server_env(
        database_url,
        data_dir,
        LOOKALIKE_CORS_ORIGINS=shops["listed"].url,
        LOOKALIKE_CLIP_RANDOM_WEIGHTS="0",
        HF_HUB_OFFLINE="1",
        HF_HOME=str(empty_cache),
        HUGGINGFACE_HUB_CACHE=str(empty_cache / "hub"),
    )
    with serve(env, tmp_path_factory.mktemp("web-logs-widget-fallback") / "serve.log") as server:
        yield server


def test_fallback_modes_are_worded_for_shoppers(
    page: Any, shop: DemoShop, fallback_server: Server, query_photo: Callable[[str], Path]
) -> None:
    open_shop(page, shop, "?attrs=" + f'api="{fallback_server.url}" page-size="8"')
    detail = choose_photo(page, query_photo("dress"))
    assert detail["response"]["mode"] == "mobilenet_fallback"
    status = page.inner_text(f"{WIDGET} .status")
    assert status == "8 results · Showing visually similar items."
    assert "ViT" not in status and "WEIGHTS" not in status  # nothing technical reaches shoppers
    page.click(f"{WIDGET} .remove")
    page.fill(f"{WIDGET} #words", "dress")
    detail = search_with(page, lambda: page.press(f"{WIDGET} #words", "Enter"))
    assert detail["response"]["mode"] == "fulltext_fallback"
    assert page.inner_text(f"{WIDGET} .status").endswith("Showing items that match your words.")


FILE_EVENT = """([target, type, data, name]) => {
    const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
    const transfer = new DataTransfer();
    transfer.items.add(new File([bytes], name, { type: "image/jpeg" }));
    const host = document.querySelector("lookalike-search");
    const node = target.startsWith("widget:") ? host.shadowRoot.querySelector(target.slice(7)) : document.querySelector(target);
    if (type === "paste") {
        node.dispatchEvent(new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true, cancelable: true }));
        return;
    }
    for (const step of ["dragenter", "dragover", "drop"]) {
        node.dispatchEvent(new DragEvent(step, { dataTransfer: transfer, bubbles: true, cancelable: true }));
    }
}"""


def test_paste_or_drop_a_photo(page: Any, shop: DemoShop, query_photo: Callable[[str], Path]) -> None:
    """``for="#shop-search-input"``: a photo pasted into the shop's own search box searches; a photo
    dropped on the camera button or into the open modal does too."""
    open_shop(page, shop)

    def send(target: str, kind: str, photo: Path) -> dict[str, Any]:
        data = base64.b64encode(photo.read_bytes()).decode()
        return search_with(page, lambda: page.evaluate(FILE_EVENT, [target, kind, data, photo.name]))

    detail = send("#shop-search-input", "paste", query_photo("t-shirt"))
    assert page.is_visible(f"{WIDGET} dialog") and detail["response"]["count"] == 8
    page.keyboard.press("Escape")
    detail = send("widget:.trigger", "drop", query_photo("outwear"))
    assert page.is_visible(f"{WIDGET} dialog") and detail["response"]["count"] == 8
    detail = send("widget:.panel", "drop", query_photo("longsleeve"))
    assert detail["response"]["count"] == 8 and page.is_visible(f"{WIDGET} .preview")
    # The element's methods, for shops that wire their own buttons.
    detail = search_with(page, lambda: page.eval_on_selector(WIDGET, "el => el.searchWords('dress')"))
    assert detail["query"]["words"] == "dress" and page.is_hidden(f"{WIDGET} .preview")
