"""Browser fixtures: one served catalog for the whole web suite, headless Debian Chromium."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.web.server import Catalog, Server, build_catalog, serve, server_env

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 960}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="session")
def web_database(
    create_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path]:
    """One database and data dir (media) shared by the normal and the fallback server."""
    return create_database(), tmp_path_factory.mktemp("web-data")


@pytest.fixture(scope="session")
def live_server(web_database: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    database_url, data_dir = web_database
    log = tmp_path_factory.mktemp("web-logs") / "serve.log"
    with serve(server_env(database_url, data_dir), log) as server:
        yield server


@pytest.fixture(scope="session")
def catalog(live_server: Server, clothing_dataset: Path) -> Catalog:
    return build_catalog(live_server.url, clothing_dataset)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (scripts/system-deps.sh installs it)")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_page(browser: object, viewport: dict[str, int], errors: list[str] | None = None) -> Iterator[object]:
    """A page in its own context; script errors and console errors go to ``errors``.

    "Failed to load resource" lines are the browser noting a 4xx/5xx answer, which several tests
    cause on purpose (a refused photo, a link to a photo the server no longer has); every other
    console error or uncaught exception counts.
    """
    context = browser.new_context(viewport=viewport, device_scale_factor=1)  # type: ignore[attr-defined]
    page = context.new_page()
    page.set_default_timeout(30_000)
    if errors is not None:
        page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
        page.on(
            "console",
            lambda m: (
                errors.append(m.text)
                if m.type == "error" and "Failed to load resource" not in m.text
                else None
            ),
        )
    yield page
    context.close()


@pytest.fixture
def console_errors() -> list[str]:
    """What the test's pages logged as errors (see open_page)."""
    return []


@pytest.fixture
def no_console_errors(console_errors: list[str]) -> Iterator[None]:
    """Use in a module (pytestmark) to fail its tests on any console error of their pages."""
    yield
    assert not console_errors, f"console errors: {console_errors}"


@pytest.fixture
def page(browser: object, console_errors: list[str]) -> Iterator[object]:
    yield from open_page(browser, DESKTOP, console_errors)


@pytest.fixture
def phone_page(browser: object, console_errors: list[str]) -> Iterator[object]:
    yield from open_page(browser, PHONE, console_errors)


@pytest.fixture
def query_photo(clothing_dataset: Path) -> Callable[[str], Path]:
    """A photo from the test split (never in the catalog) of the given class."""

    def pick(category: str) -> Path:
        return sorted((clothing_dataset / "test" / category).glob("*.jpg"))[0]

    return pick


@pytest.fixture(params=[DESKTOP, PHONE], ids=["1280", "390"])
def any_page(browser: object, request: pytest.FixtureRequest, console_errors: list[str]) -> Iterator[object]:
    """The test runs twice: at 1280 x 960 and at the 390 x 844 phone size."""
    yield from open_page(browser, request.param, console_errors)
