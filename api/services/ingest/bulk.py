"""``lookalike ingest``: write the source's products, then drain the embedding queue with a progress bar.

Two phases, so an interrupted run is harmless: products are upserted in batches first (by sku, so
nothing is ever duplicated), then the same worker the API runs embeds whatever still needs it.
Re-running re-reads local files to notice in-place edits (sha256), but embeds only what changed.

Local images: a file inside the media dir is stored as its path relative to it (the API serves
it from there); a file elsewhere is copied into ``<media>/uploads/<sha256>.<ext>`` with
:func:`save_image`, so the stored ``image_url`` always works for ``/api/v1/images/...`` and a
changed file gets a new URL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TypeVar

from tqdm import tqdm

from api.db.embedding_queue import WantedModels, reset_sources
from api.db.product_batches import StoredImage, stored_images, upsert_products
from api.db.stats import product_count
from api.db.vector_indexes import deferred
from api.errors import LookalikeError
from api.services.embedding import sha256_hex
from api.services.images.storage import save_image
from api.services.ingest.background import LOG_EVERY_S
from api.services.ingest.progress import BatchResult, Failure, Tally
from api.services.ingest.sources import BadRow, SourceItem
from api.services.ingest.worker import EmbeddingWorker
from api.settings import Settings

log = logging.getLogger(__name__)

SYNC_BATCH = 500
T = TypeVar("T")


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


@dataclass(frozen=True)
class ResolvedImage:
    url: str
    sha256: str | None
    """Known for local files (read during sync), None for URLs (the worker fetches them)."""


def resolve_local_image(path: Path, settings: Settings) -> ResolvedImage:
    """The ``image_url`` to store for a local file, per the module docstring's rule."""
    data = path.read_bytes()
    media = settings.media_dir.resolve()
    resolved = path.resolve()
    if resolved.is_relative_to(media):
        url = resolved.relative_to(media).as_posix()
    else:
        url = save_image(data, settings)
    return ResolvedImage(url, sha256_hex(data))


def classify(stored: StoredImage | None, image: ResolvedImage, tally: Tally) -> bool:
    """Count a row that needs no work; return True when a local file changed under the same URL."""
    if stored is None or stored.image_url != image.url or stored.embed_source != image.url:
        return False  # new product or new source: the worker picks it up
    if image.sha256 is not None and stored.image_sha256 != image.sha256:
        return True
    if stored.failed:
        tally.skipped += 1  # failed before with this very source; --retry-failed retries it
    elif stored.current:
        tally.unchanged += 1
    return False


def sync_items(
    worker: EmbeddingWorker, items: Iterable[SourceItem | BadRow], models: WantedModels, tally: Tally
) -> int:
    """Upsert the products in batches; returns how many rows were inserted or changed."""
    settings, catalog = worker.settings, worker.catalog
    if catalog.attached:
        raise LookalikeError(
            "this catalog is the shop's own table (LOOKALIKE_FIELD_* mappings): products are written "
            "by the shop; run `lookalike ingest --embed-only` to embed them"
        )
    written = 0
    for chunk in _chunks(items, SYNC_BATCH):
        rows: list[tuple[str, dict[str, object]]] = []
        images: dict[str, ResolvedImage] = {}
        for item in chunk:
            if isinstance(item, BadRow):
                tally.add_failure(Failure(None, item.where, "invalid_row", item.message))
                continue
            fields = dict(item.fields)
            if item.image_path is not None:
                try:
                    images[item.sku] = resolve_local_image(item.image_path, settings)
                except OSError as exc:
                    tally.add_failure(Failure(None, item.sku, "image_unreadable", str(exc)))
                    continue
            elif item.image_url is not None:
                images[item.sku] = ResolvedImage(item.image_url, None)
            else:
                tally.skipped += 1  # a product without an image: searchable by text only
            if item.sku in images:
                fields["image_url"] = images[item.sku].url
            rows.append((item.sku, fields))
        with worker.database.begin() as conn:
            stored = stored_images(conn, catalog, [sku for sku, _ in rows], models)
            written += upsert_products(conn, catalog, rows)
            changed = [sku for sku, image in images.items() if classify(stored.get(sku), image, tally)]
            if changed:
                reset_sources(conn, catalog, failed_only=False, skus=changed)
    return written


DEFER_MODES = ("auto", "always", "never")
DEFER_MIN_ROWS = 10_000
DEFER_MIN_SHARE = 0.2
"""``auto`` sets the HNSW indexes aside when at least this many rows, and this share of the
catalog, wait for vectors. The measured break-even share is lower (inserting a row into three
HNSW graphs costs about ten times what rebuilding costs per catalog row; see
:mod:`api.db.vector_indexes`), but searches scan exactly while the indexes are away, so only
loads that gain several times that set them aside. Small loads gain nothing: the graphs are small
and the encoders dominate. Numbers: docs/benchmarks.md, "Ingestion", "Writing vectors into a
populated catalog (third session)"."""


def should_defer(mode: str, pending: int, catalog_rows: int) -> bool:
    if mode not in DEFER_MODES:
        raise ValueError(f"unknown index mode {mode!r}; use one of {', '.join(DEFER_MODES)}")
    if mode == "never" or pending == 0:
        return False
    return mode == "always" or (pending >= DEFER_MIN_ROWS and pending >= DEFER_MIN_SHARE * catalog_rows)


def run_ingest(
    worker: EmbeddingWorker,
    items: Iterable[SourceItem | BadRow] | None,
    *,
    retry_failed: bool = False,
    show_progress: bool = True,
    defer_indexes: str = "auto",
) -> Tally:
    """Sync ``items`` (None: ``--embed-only``, the rows already in the table), then embed until done.

    ``defer_indexes`` (``auto`` / ``always`` / ``never``): drop the HNSW indexes while the
    vectors are written and build them once at the end (see :func:`should_defer`).
    """
    tally = Tally()
    models = worker.wanted()
    if models.clip is None and models.fallback is None:
        raise RuntimeError("no encoder is available (neither CLIP nor MobileNetV2 loaded)")
    if items is not None:
        written = sync_items(worker, items, models, tally)
        log.info("products synced: %d inserted or changed", written)
    if retry_failed:
        with worker.database.begin() as conn:
            retried = reset_sources(conn, worker.catalog, failed_only=True)
        log.info("retrying %d products whose image failed before", retried)
    total = worker.pending(models)
    if not should_defer(defer_indexes, total, _catalog_rows(worker)):
        tally.merge(_drain(worker, total, show_progress))
        return tally
    with deferred(worker.database, worker.catalog) as deferral:
        tally.merge(_drain(worker, total, show_progress))
        log.info("building the HNSW indexes again (%d rows embedded without them)", tally.embedded)
    log.info("HNSW indexes %s built in %.1f s", ", ".join(deferral.rebuilt) or "(none)", deferral.build_s)
    return tally


def _catalog_rows(worker: EmbeddingWorker) -> int:
    with worker.database.read() as conn:
        return product_count(conn, worker.catalog)


def _drain(worker: EmbeddingWorker, total: int, show_progress: bool) -> Tally:
    with tqdm(total=total, unit="img", desc="embedding", disable=not show_progress or None) as bar:
        last_log, done = time.monotonic(), 0

        def advance(batch: BatchResult) -> None:
            nonlocal last_log, done
            done += batch.size
            bar.update(batch.size)
            bar.set_postfix(embedded=worker.totals.embedded, failed=worker.totals.failed, refresh=False)
            if bar.disable and time.monotonic() - last_log >= LOG_EVERY_S:  # no terminal: say it in the log
                last_log = time.monotonic()
                log.info(
                    "embedding: %d/%d done, %d embedded, %d failed, %.2f images/s",
                    done,
                    total,
                    worker.totals.embedded,
                    worker.totals.failed,
                    worker.rate(),
                )

        return worker.drain(on_batch=advance)


def timed_ingest(
    worker: EmbeddingWorker,
    items: Iterable[SourceItem | BadRow] | None,
    *,
    retry_failed: bool = False,
    show_progress: bool = True,
    defer_indexes: str = "auto",
) -> tuple[Tally, float]:
    started = time.monotonic()
    tally = run_ingest(
        worker, items, retry_failed=retry_failed, show_progress=show_progress, defer_indexes=defer_indexes
    )
    return tally, time.monotonic() - started
