"""The embedding worker: claim a batch of rows that need vectors, fetch, encode, write, repeat.

``lookalike ingest`` drains the queue in the foreground; ``lookalike serve`` runs the same loop in
a daemon thread so requests are never blocked by it. Any number of workers in any number of
processes can run at once: claims are row locks taken with ``SKIP LOCKED`` (see
:mod:`api.db.embedding_queue`), released by PostgreSQL when a worker's connection dies.

One worker can also run several *lanes*: threads that each claim, decode, encode and write
their own batch on their own connection. Decoding and resizing (Pillow) and the forward passes
(torch, ONNX Runtime) release the GIL, so while one lane's batch is in the model the others
decode theirs and write the last one; the encoders merge the lanes' concurrent calls into
shared passes (:class:`encoder.inference.ForwardQueue`). One batch on one thread leaves every
core but one idle during decoding, and a GPU idle during everything but the forward pass.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from api.db.catalog import Catalog
from api.db.catalog_events import CatalogListener
from api.db.category_indexes import CategoryIndexPolicy, SyncReport, sync
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
from api.db.prewarm import PrewarmReport, prewarm
from api.observability import instruments
from api.services.embedding import embed_images, sha256_hex
from api.services.encoders import EncoderHub
from api.services.fetch import FetchError, FetchPolicy, fetch_client, fetch_image
from api.services.image_input import fetch_policy
from api.services.ingest.progress import BatchResult, Failure, Tally
from api.settings import MAX_EMBED_LANES, Settings
from encoder.devices import is_cuda, resolve_device
from encoder.errors import EncoderUnavailableError, InvalidImageError

if TYPE_CHECKING:
    from api.state import AppState

log = logging.getLogger(__name__)

FETCH_THREADS = 4
"""Concurrent downloads per batch: enough to hide network latency, few enough to be polite."""
POLL_S = 30.0
LOG_EVERY_S = 10.0


def ingest_lanes(settings: Settings, requested: int | None = None) -> int:
    """Lanes for ``lookalike ingest``: ``--lanes``, else ``LOOKALIKE_EMBED_LANES``, else :func:`auto_lanes`."""
    return requested or settings.embed_lanes or auto_lanes(resolve_device(settings.device))


def auto_lanes(device: str) -> int:
    """Lanes for ``lookalike ingest`` when none are asked for.

    On a CPU the encoders already use every core, so a second lane only overlaps one batch's
    decoding and writing with the next one's forward pass; more lanes just contend. On a GPU
    the forward pass is cheap and decoding is the work, so every core but one decodes.
    """
    if is_cuda(device):
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cores = os.cpu_count() or 2
        return max(2, min(cores - 1, MAX_EMBED_LANES))
    return 2


class StaleWalk:
    """How far one round of claims has walked the table looking for stale rows (see claim_batch)."""

    def __init__(self) -> None:
        self.after: Any = None
        """The highest key passed so far (None: the walk has not started); any orderable key type."""
        self._lock = threading.Lock()

    def passed(self, row_id: Any) -> None:
        with self._lock:
            self.after = row_id if self.after is None else max(self.after, row_id)


class EmbeddingWorker:
    def __init__(
        self,
        settings: Settings,
        database: Database,
        hub: EncoderHub,
        *,
        catalog: Catalog | None = None,
        policy: FetchPolicy | None = None,
        batch_size: int | None = None,
        lanes: int = 1,
        poll_s: float = POLL_S,
    ) -> None:
        if not 1 <= lanes <= MAX_EMBED_LANES:
            raise ValueError(f"lanes must be between 1 and {MAX_EMBED_LANES}, not {lanes}")
        self.settings = settings
        self.database = database
        self.hub = hub
        self.catalog = catalog or Catalog.from_settings(settings)
        self.policy = policy or fetch_policy(settings)
        self.batch_size = batch_size or settings.batch_size
        self.lanes = lanes
        self.poll_s = poll_s
        self.totals = Tally()
        self.state = "stopped"
        self.last_error: str | None = None
        self.last_batch_at: datetime | None = None
        self._busy_s = 0.0
        self._busy_since: float | None = None
        self._totals_lock = threading.Lock()
        self._dim_warned = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = fetch_client(self.policy)  # connects only to addresses the policy checked
        self._pool = ThreadPoolExecutor(FETCH_THREADS * lanes, thread_name_prefix="lookalike-fetch")

    # --- what to ask for -----------------------------------------------------------------------
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
            with nullcontext(conn) if conn is not None else self.database.engine.connect() as reader:
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
        with self.database.engine.connect() as conn:
            return pending_count(conn, self.catalog, models or self.wanted(conn))

    # --- one batch -----------------------------------------------------------------------------
    def run_batch(
        self, models: WantedModels | None = None, walk: StaleWalk | None = None
    ) -> BatchResult | None:
        """Claim, fetch, encode and write one batch in one transaction; None when there is no work.

        ``walk``: where this round's search for stale rows has got to (shared by its lanes).
        """
        walk = walk or StaleWalk()
        with self.database.engine.connect() as conn, conn.begin():
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
            result = self._embed_and_write(conn, rows, blobs, models)
        with self._totals_lock:
            self.last_batch_at = datetime.now(UTC)
            self.totals.add_batch(result)
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

    def _embed_and_write(
        self, conn: Any, rows: list[ClaimedRow], blobs: list[bytes | FetchError], models: WantedModels
    ) -> BatchResult:
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
                keep_clip = models.clip is not None and got.clip is not None
                embedded.append(
                    Embedded(
                        id=row.id,
                        source=row.image_url,
                        image_sha256=got.image_sha256,
                        clip=got.clip if keep_clip else None,
                        clip_model=got.clip_model if keep_clip else None,
                        fallback=got.fallback,
                        fallback_model=got.fallback_model,
                    )
                )
        write_embedded(conn, self.catalog, embedded)
        mark_unchanged(conn, self.catalog, unchanged)
        mark_failed(conn, self.catalog, failed_rows)
        return BatchResult([e.id for e in embedded], [i for i, _ in unchanged], failures)

    # --- until done ----------------------------------------------------------------------------
    def drain(
        self,
        on_batch: Callable[[BatchResult], None] | None = None,
        stop: threading.Event | None = None,
    ) -> Tally:
        """Process batches on ``self.lanes`` lanes until no row needs work (or ``stop`` is set).

        Returns this run's counts. ``on_batch`` is called once per batch, never concurrently.
        The first error in any lane stops the others after the batch in hand (theirs still
        commit) and is raised here; an error's own batch is rolled back, so its rows stay pending.
        """
        tally = Tally()
        stop = stop or self._stop
        halt = threading.Event()
        report = threading.Lock()
        walk = StaleWalk()

        def lane() -> None:
            while not (stop.is_set() or halt.is_set()):
                result = self.run_batch(walk=walk)
                if result is None:
                    return
                with report:
                    tally.add_batch(result)
                    if on_batch is not None:
                        on_batch(result)

        self._busy_since = time.monotonic()
        try:
            if self.lanes == 1:
                lane()
            else:
                _run_lanes(lane, self.lanes, halt)
        finally:
            self._busy_s += time.monotonic() - self._busy_since
            self._busy_since = None
        return tally

    # --- in the background ---------------------------------------------------------------------
    def start(self) -> None:
        """Run :meth:`drain` in a daemon thread now and every ``poll_s`` seconds after."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="lookalike-embedder", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the batch in hand (or abandon it: its rows are released either way) and stop."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.state = "stopped"

    def close(self) -> None:
        self.stop()
        self._pool.shutdown(wait=False)
        self._client.close()

    def _loop(self) -> None:
        last_log = 0.0

        def report(batch: BatchResult) -> None:
            nonlocal last_log
            if time.monotonic() - last_log >= LOG_EVERY_S:
                last_log = time.monotonic()
                log.info(
                    "embedding worker: %d embedded, %d unchanged, %d failed so far; %.2f images/s",
                    self.totals.embedded,
                    self.totals.unchanged,
                    self.totals.failed,
                    self.rate(),
                )

        self.prewarm()
        listener = CatalogListener(self.database.url)
        listener.start()  # before the first round: a write during it must still wake the next wait
        last_index_sync = -float("inf")
        index_sync_owed = True
        while not self._stop.is_set():
            try:
                self.state = "running"
                tally = self.drain(on_batch=report)
                if tally.embedded or tally.failed or tally.unchanged:
                    log.info(
                        "embedding worker: caught up (%d embedded, %d unchanged, %d failed this round)",
                        tally.embedded,
                        tally.unchanged,
                        tally.failed,
                    )
                # Counting the categories is a scan: once per poll interval at most, however often
                # NOTIFY wakes the worker for a product or two.
                index_sync_owed = index_sync_owed or bool(tally.embedded)
                if index_sync_owed and time.monotonic() - last_index_sync >= self.poll_s:
                    self.sync_category_indexes()
                    last_index_sync, index_sync_owed = time.monotonic(), False
                self.state = "idle"
                self.last_error = None
            except Exception as exc:  # database or encoder trouble: keep serving, try again later
                self.state = "error"
                self.last_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                log.warning("embedding worker: %s; retrying in %.0fs", self.last_error, self.poll_s)
                self._stop.wait(self.poll_s)
                continue
            # A shop's write wakes us at once (api.db.catalog_events); the poll is the safety net.
            listener.wait(self.poll_s, self._stop)
        listener.close()

    def prewarm(self) -> PrewarmReport | None:
        """Pull the HNSW graphs into memory (at start, before embedding): see :mod:`api.db.prewarm`."""
        if not self.settings.prewarm:
            return None
        try:
            report = prewarm(self.database, self.catalog)
        except Exception as exc:  # only ever an optimisation
            log.warning("prewarming the HNSW indexes failed: %s", exc)
            return None
        log.info(report.render())
        return report

    def sync_category_indexes(self) -> SyncReport | None:
        """Bring the per-category HNSW indexes in line with the catalog (None when turned off)."""
        if not self.settings.category_indexes:
            return None
        report = sync(self.database, self.catalog, CategoryIndexPolicy.from_settings(self.settings))
        if report.created or report.dropped:
            log.info(report.render())
        return report

    def rate(self) -> float:
        """Images per second while draining (idle waits between rounds left out)."""
        since = self._busy_since
        busy = self._busy_s + (time.monotonic() - since if since is not None else 0.0)
        return self.totals.embedded / busy if busy > 0 else 0.0

    def progress(self) -> dict[str, Any]:
        """For ``/api/v1/stats``: what this process's worker did, and what is still pending overall."""
        try:
            pending: int | None = self.pending()
        except Exception:
            pending = None
        return {
            "state": self.state,
            **self.totals.as_dict(),
            "pending": pending,
            "images_per_s": round(self.rate(), 2),
            "batch_size": self.batch_size,
            "lanes": self.lanes,
            "last_batch_at": self.last_batch_at.isoformat() if self.last_batch_at else None,
            "last_error": self.last_error,
        }


def _run_lanes(lane: Callable[[], None], count: int, halt: threading.Event) -> None:
    """Run ``lane`` on ``count`` threads; the first error halts the rest and is raised here.

    Interrupting the caller (Ctrl-C, SIGTERM via ``sys.exit``) also halts them: each lane
    finishes or abandons the batch in hand, and the caller's exit path (say, rebuilding
    indexes set aside) runs only once no lane is still writing.
    """
    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            lane()
        except BaseException as exc:
            errors.append(exc)
            halt.set()

    threads = [
        threading.Thread(target=guarded, name=f"lookalike-lane-{n}", daemon=True) for n in range(count)
    ]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    except BaseException:
        halt.set()
        for thread in threads:
            thread.join()
        raise
    if errors:
        raise errors[0]


def embedding_worker_stats(worker: EmbeddingWorker | None) -> dict[str, Any]:
    """The ``embedding_worker`` entry for ``/api/v1/stats`` (``{"state": "off"}`` without a worker)."""
    return worker.progress() if worker is not None else {"state": "off"}


def start_embedding_worker(state: AppState) -> EmbeddingWorker:
    """The API's worker: started beside the server, sharing its database, encoders and settings."""
    worker = EmbeddingWorker(state.settings, state.database, state.hub, catalog=state.catalog)
    worker.start()
    log.info("embedding worker started (batch %d, polls every %.0fs)", worker.batch_size, worker.poll_s)
    return worker
