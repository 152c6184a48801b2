"""One batch of the embedding queue: claim rows, fetch their images, encode, write, in one transaction.

Any number of embedders in any number of processes can run at once: claims are row locks taken
with ``SKIP LOCKED`` (see :mod:`api.db.embedding_queue`), released by PostgreSQL when a
connection dies, so a batch that fails is rolled back and its rows simply stay pending.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection

from api.db.catalog import Catalog
from api.db.clip_column import clip_column_dim
from api.db.embedding_queue import (
    ClaimedRow,
    Embedded,
    WantedModels,
    claim_batch,
    mark_failed,
    mark_unchanged,
    pending_count,
    write_embedded,
)
from api.db.engine import Database
from api.observability import instruments
from api.services.embedding import embed_images, sha256_hex
from api.services.encoders import EncoderHub
from api.services.fetch import FetchError, FetchPolicy, fetch_client, fetch_image
from api.services.ingest.progress import BatchResult, Failure
from api.settings import Settings
from encoder.errors import EncoderUnavailableError, InvalidImageError

log = logging.getLogger(__name__)

FETCH_THREADS = 4
"""Concurrent downloads per batch: enough to hide network latency, few enough to be polite."""


class StaleWalk:
    """How far one round of claims has walked the table looking for stale rows (see claim_batch)."""

    def __init__(self) -> None:
        self.after: Any = None
        """The highest key passed so far (None: the walk has not started); any orderable key type."""
        self._lock = threading.Lock()

    def passed(self, row_id: Any) -> None:
        with self._lock:
            self.after = row_id if self.after is None else max(self.after, row_id)


class BatchEmbedder:
    """Claims and embeds one batch per call; safe to call from several lanes at once."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        hub: EncoderHub,
        catalog: Catalog,
        policy: FetchPolicy,
        batch_size: int,
        *,
        fetch_threads: int = FETCH_THREADS,
    ) -> None:
        self.settings = settings
        self.database = database
        self.hub = hub
        self.catalog = catalog
        self.policy = policy
        self.batch_size = batch_size
        self._dim_warned = False
        self._client = fetch_client(policy)  # connects only to addresses the policy checked
        self._pool = ThreadPoolExecutor(fetch_threads, thread_name_prefix="lookalike-fetch")

    def wanted(self, conn: Connection | None = None) -> WantedModels:
        """Ask only for vectors a model that is up can make, so a down model causes no busy loop.

        Checked for every batch (a model may go down mid-round), on the batch's own connection.
        """
        clip: str | None = self.hub.clip_model_id
        try:
            self.hub.clip()
        except EncoderUnavailableError:
            clip = None
        if clip is not None:
            with nullcontext(conn) if conn is not None else self.database.connect() as reader:
                dim = clip_column_dim(reader, self.catalog)
            if dim is not None and dim != self.settings.clip_dim:
                if not self._dim_warned:
                    log.error(
                        "image_embedding is vector(%s) but LOOKALIKE_CLIP_MODEL=%s makes %s-d vectors; "
                        "CLIP vectors are not written until the two agree (see `lookalike reembed`)",
                        dim,
                        self.settings.clip_model,
                        self.settings.clip_dim,
                    )
                    self._dim_warned = True
                clip = None
        fallback: str | None = self.hub.mobilenet_model_id
        try:
            self.hub.mobilenet()
        except EncoderUnavailableError:
            fallback = None
        return WantedModels(clip=clip, fallback=fallback)

    def pending(self, models: WantedModels | None = None) -> int:
        with self.database.connect() as conn:
            return pending_count(conn, self.catalog, models or self.wanted(conn))

    def run_batch(
        self, models: WantedModels | None = None, walk: StaleWalk | None = None
    ) -> BatchResult | None:
        """Claim, fetch, encode and write one batch in one transaction; None when there is no work.

        ``walk``: where this round's search for stale rows has got to (shared by its lanes).
        """
        walk = walk or StaleWalk()
        with self.database.connect() as conn, conn.begin():
            models = models or self.wanted(conn)
            if models.clip is None and models.fallback is None:
                return None
            rows = claim_batch(conn, self.catalog, models, self.batch_size, stale_after=walk.after)
            if not rows:
                return None
            stale_keys = [row.id for row in rows if row.stale]
            if stale_keys:
                walk.passed(max(stale_keys))
            blobs = list(self._pool.map(self._fetch, rows))
            result = self.embed_and_write(conn, rows, blobs, models)
        instruments.EMBEDDED.inc(len(result.embedded_ids))  # rate() of it is /metrics' embed rate
        instruments.EMBED_FAILURES.inc(len(result.failures))
        return result

    def _fetch(self, row: ClaimedRow) -> bytes | FetchError:
        try:
            return fetch_image(row.image_url, self.policy, self._client)
        except FetchError as exc:
            return exc
        except OSError as exc:  # an unreadable local file
            return FetchError("image_unreadable", str(exc))

    def embed_and_write(
        self, conn: Any, rows: list[ClaimedRow], blobs: list[bytes | FetchError], models: WantedModels
    ) -> BatchResult:
        """Sort the fetched rows into failed, unchanged (same bytes, current vectors) and to embed;
        write all three on ``conn`` (the claim's transaction)."""
        failures: list[Failure] = []
        failed_rows: list[tuple[Any, str, str, str | None]] = []
        unchanged: list[tuple[Any, str]] = []
        to_embed: list[tuple[ClaimedRow, bytes]] = []
        for row, blob in zip(rows, blobs, strict=True):
            if isinstance(blob, FetchError):
                failures.append(Failure(row.id, row.sku, blob.code, blob.message))
                failed_rows.append((row.id, row.image_url, f"{blob.code}: {blob.message}", None))
            elif (
                sha256_hex(blob) == row.image_sha256
                and (row.clip_current or models.clip is None)
                and (row.fallback_current or models.fallback is None)
            ):
                unchanged.append((row.id, row.image_url))
            else:
                to_embed.append((row, blob))
        embedded: list[Embedded] = []
        if to_embed:
            results = embed_images(self.hub, [b for _, b in to_embed], self.settings.max_image_pixels)
            for (row, blob), got in zip(to_embed, results, strict=True):
                if isinstance(got, InvalidImageError):
                    failures.append(Failure(row.id, row.sku, got.code, got.message))
                    failed_rows.append(
                        (row.id, row.image_url, f"{got.code}: {got.message}", sha256_hex(blob))
                    )
                    continue
                if models.clip is None:  # not wanted now: keep whatever CLIP vector the row has
                    got = replace(got, clip=None, clip_model=None)
                embedded.append(Embedded(row.id, row.image_url, got))
        write_embedded(conn, self.catalog, embedded)
        mark_unchanged(conn, self.catalog, unchanged)
        mark_failed(conn, self.catalog, failed_rows)
        return BatchResult([e.id for e in embedded], [i for i, _ in unchanged], failures)

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self._client.close()
