"""URL ingestion through a real HTTP server on 127.0.0.1: every failure mode lands in embed_error
with its reason, failed rows are not retried until asked, and private redirects are refused."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from api.db import migrate
from api.db.engine import Database
from api.services.encoders import EncoderHub
from api.services.fetch import FetchError, FetchPolicy, check_host
from api.services.ingest.bulk import run_ingest
from api.services.ingest.sources import file_items
from api.services.ingest.worker import EmbeddingWorker
from api.settings import Settings
from tests.support import ImageServer

MAX_BYTES = 300_000


@pytest.fixture(scope="module")
def server(clothing_dataset: Path) -> Iterator[ImageServer]:
    image = sorted((clothing_dataset / "test" / "hat").glob("*.jpg"))[0].read_bytes()
    server = ImageServer(image)
    server.slow_s = 3.0  # past the 0.5 s read timeout below
    yield server
    server.close()


@pytest.fixture(scope="module")
def hub(make_settings: Callable[..., Settings]) -> Iterator[EncoderHub]:
    hub = EncoderHub(make_settings())
    hub.load()
    yield hub
    hub.close()


def policy_for(server: ImageServer, settings: Settings) -> FetchPolicy:
    """Private addresses refused, except the test server's exact host:port (so redirects are checked)."""
    return FetchPolicy(
        max_bytes=MAX_BYTES,
        allow_private=False,
        image_root=settings.media_dir,
        connect_timeout_s=1.0,
        read_timeout_s=0.5,
        retries=1,
        backoff_s=0.05,
        trusted_hosts=frozenset({f"127.0.0.1:{server.port}"}),
    )


def test_check_host_refuses_private_addresses() -> None:
    for host in ("127.0.0.1", "10.0.0.1", "169.254.169.254", "192.168.1.1", "::1"):
        with pytest.raises(FetchError) as caught:
            check_host(host, 80, allow_private=False)
        assert caught.value.code == "url_forbidden"
    check_host("127.0.0.1", 80, allow_private=True)


def test_url_ingest_records_each_failure_and_retries_only_on_request(
    server: ImageServer,
    hub: EncoderHub,
    clothing_dataset: Path,
    create_database: Callable[[], str],
    make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    settings = make_settings(database_url=create_database(), image_root=tmp_path / "media")
    database = Database(settings)
    migrate.upgrade(database)
    local = tmp_path / "outside" / "shirt.jpg"  # outside the media dir: copied in by content hash
    local.parent.mkdir()
    shutil.copyfile(sorted((clothing_dataset / "test" / "shirt").glob("*.jpg"))[0], local)
    expected = {
        "good": None,
        "missing": "url_not_found",
        "slow": "url_timeout",
        "huge": "image_too_big",
        "page": "url_not_image",
        "loop": "url_redirect_loop",
        "metadata": "url_forbidden",
        "lan": "url_forbidden",
        "corrupt": "truncated_image",
    }
    lines = [
        {"sku": sku, "name": sku, "price": "9.50", "image_url": server.url(f"/{sku}.jpg")} for sku in expected
    ]
    lines.append(
        {
            "sku": "local",
            "name": "Local shirt",
            "attributes": {"color": "blue"},
            "image_path": "outside/shirt.jpg",
        }
    )
    lines.append({"name": "no sku"})
    products = tmp_path / "products.jsonl"
    products.write_text("\n".join(json.dumps(line) for line in lines) + "\n")

    worker = EmbeddingWorker(settings, database, hub, policy=policy_for(server, settings))
    tally = run_ingest(worker, file_items(products), show_progress=False)

    assert tally.embedded == 2  # good + local
    assert tally.failed == 9  # 8 bad images + the row without a sku
    assert tally.reasons["invalid_row"] == 1
    assert tally.reasons["url_forbidden"] == 2
    with database.engine.connect() as conn:
        rows = {r.sku: r for r in conn.execute(text("SELECT * FROM products")).all()}
    assert set(rows) == {*expected, "local"}
    for sku, code in expected.items():
        if code is None:
            assert rows[sku].embed_error is None and rows[sku].image_embedding is not None
        else:
            assert rows[sku].embed_error.startswith(f"{code}:"), (sku, rows[sku].embed_error)
            assert rows[sku].image_embedding is None
    assert "169.254.169.254" in rows["metadata"].embed_error
    assert (
        rows["local"].image_url.startswith("uploads/")
        and (settings.media_dir / rows["local"].image_url).is_file()
    )
    assert rows["local"].fallback_embedding is not None

    # A re-run does not hammer dead URLs: failed rows are skipped, nothing is fetched or embedded.
    again = run_ingest(worker, file_items(products), show_progress=False)
    assert (again.embedded, again.failed, again.skipped, again.unchanged) == (0, 1, 8, 2)

    # --retry-failed tries them again; the one that got fixed meanwhile embeds.
    server.missing_exists = True
    retried = run_ingest(worker, None, retry_failed=True, show_progress=False)
    assert retried.embedded == 1 and retried.failed == 7
    worker.close()
    database.dispose()
