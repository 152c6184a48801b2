"""The embedding worker: the one object ``lookalike ingest`` and ``lookalike serve`` share.

It puts together the parts, each in its own module: :mod:`~api.services.ingest.batch` claims and
embeds one batch, :mod:`~api.services.ingest.lanes` runs batches on several threads until the
queue is empty, :mod:`~api.services.ingest.background` repeats that in the API's daemon thread,
and :mod:`~api.services.ingest.maintenance` keeps the indexes in shape around it. What is left
here is the bookkeeping ``/api/v1/stats`` and the logs read: totals, rate, state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from api.db.catalog import Catalog
from api.db.category_indexes import SyncReport
from api.db.embedding_queue import WantedModels
from api.db.engine import Database
from api.db.prewarm import PrewarmReport
from api.services.encoders import EncoderHub
from api.services.fetch import FetchPolicy
from api.services.images.download import fetch_policy
from api.services.ingest.background import POLL_S, BackgroundLoop
from api.services.ingest.batch import FETCH_THREADS, BatchEmbedder, StaleWalk
from api.services.ingest.lanes import check_lanes, drain_lanes, ingest_lanes
from api.services.ingest.maintenance import Maintenance
from api.services.ingest.progress import BatchResult, Tally
from api.settings import Settings

if TYPE_CHECKING:
    from api.state import AppState

log = logging.getLogger(__name__)

# ingest_lanes: `lookalike ingest` (api/cli.py) imports it from here with the worker.
__all__ = ["EmbeddingWorker", "embedding_worker_stats", "ingest_lanes", "start_embedding_worker"]


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
        self.settings = settings
        self.database = database
        self.hub = hub
        self.catalog = catalog or Catalog.from_settings(settings)
        self.lanes = check_lanes(lanes)
        self.embedder = BatchEmbedder(
            settings,
            database,
            hub,
            self.catalog,
            policy or fetch_policy(settings),
            batch_size or settings.batch_size,
            fetch_threads=FETCH_THREADS * lanes,
        )
        self.maintenance = Maintenance(settings, database, self.catalog)
        self.loop = BackgroundLoop(
            lambda on_batch, stop: self.drain(on_batch, stop),
            self.maintenance,
            database.url,
            self._progress_line,
            poll_s=poll_s,
        )
        self.totals = Tally()
        self.last_batch_at: datetime | None = None
        self._totals_lock = threading.Lock()
        self._busy_s = 0.0
        self._busy_since: float | None = None

    @property
    def batch_size(self) -> int:
        return self.embedder.batch_size

    @property
    def policy(self) -> FetchPolicy:
        return self.embedder.policy

    @property
    def poll_s(self) -> float:
        return self.loop.poll_s

    @poll_s.setter
    def poll_s(self, value: float) -> None:
        self.loop.poll_s = value

    @property
    def state(self) -> str:
        return self.loop.state

    @property
    def last_error(self) -> str | None:
        return self.loop.last_error

    def wanted(self, conn: Connection | None = None) -> WantedModels:
        return self.embedder.wanted(conn)

    def pending(self, models: WantedModels | None = None) -> int:
        return self.embedder.pending(models)

    def run_batch(
        self, models: WantedModels | None = None, walk: StaleWalk | None = None
    ) -> BatchResult | None:
        result = self.embedder.run_batch(models, walk)
        if result is not None:
            with self._totals_lock:
                self.last_batch_at = datetime.now(UTC)
                self.totals.add_batch(result)
        return result

    def drain(
        self,
        on_batch: Callable[[BatchResult], None] | None = None,
        stop: threading.Event | None = None,
    ) -> Tally:
        """Process batches on ``self.lanes`` lanes until no row needs work (or ``stop`` is set).

        Returns this run's counts; see :func:`~api.services.ingest.lanes.drain_lanes` for errors.
        """
        self._busy_since = time.monotonic()
        try:
            return drain_lanes(
                lambda walk: self.run_batch(walk=walk), self.lanes, stop or self.loop.stopping, on_batch
            )
        finally:
            self._busy_s += time.monotonic() - self._busy_since
            self._busy_since = None

    def start(self) -> None:
        self.loop.start()

    def stop(self, timeout: float = 30.0) -> None:
        self.loop.stop(timeout)

    def close(self) -> None:
        self.stop()
        self.embedder.close()

    def prewarm(self) -> PrewarmReport | None:
        return self.maintenance.prewarm()

    def sync_category_indexes(self) -> SyncReport | None:
        return self.maintenance.sync_category_indexes()

    def rate(self) -> float:
        """Images per second while draining (idle waits between rounds left out)."""
        since = self._busy_since
        busy = self._busy_s + (time.monotonic() - since if since is not None else 0.0)
        return self.totals.embedded / busy if busy > 0 else 0.0

    def _progress_line(self) -> str:
        return (
            f"{self.totals.embedded} embedded, {self.totals.unchanged} unchanged, "
            f"{self.totals.failed} failed so far; {self.rate():.2f} images/s"
        )

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


def embedding_worker_stats(worker: EmbeddingWorker | None) -> dict[str, Any]:
    """The ``embedding_worker`` entry for ``/api/v1/stats`` (``{"state": "off"}`` without a worker)."""
    return worker.progress() if worker is not None else {"state": "off"}


def start_embedding_worker(state: AppState) -> EmbeddingWorker:
    """The API's worker: started beside the server, sharing its database, encoders and settings."""
    worker = EmbeddingWorker(state.settings, state.database, state.hub, catalog=state.catalog)
    worker.start()
    log.info("embedding worker started (batch %d, polls every %.0fs)", worker.batch_size, worker.poll_s)
    return worker
