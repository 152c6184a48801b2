"""Index upkeep beside the embedding worker: prewarm the HNSW graphs at start, keep the
per-category indexes in line with the catalog after rounds that embedded something, and rebuild
graphs built with other parameters than the settings' (:mod:`api.db.hnsw_graphs`)."""

from __future__ import annotations

import logging
import time

from api.db.catalog import Catalog
from api.db.category_indexes import CategoryIndexPolicy, SyncReport, sync
from api.db.engine import Database
from api.db.hnsw_graphs import GraphReport
from api.db.hnsw_graphs import sync as sync_graphs
from api.db.prewarm import PrewarmReport, prewarm
from api.services.ingest.progress import Tally
from api.settings import Settings

log = logging.getLogger(__name__)


class Maintenance:
    def __init__(self, settings: Settings, database: Database, catalog: Catalog) -> None:
        self.settings = settings
        self.database = database
        self.catalog = catalog
        self._last_index_sync = -float("inf")
        self._index_sync_owed = True  # the first round checks, whatever it embedded

    def at_start(self) -> None:
        """Run once when the background worker starts, before its first round."""
        self.prewarm()

    def after_round(self, tally: Tally, every_s: float) -> None:
        """Counting the categories is a scan: once per ``every_s`` at most, however often NOTIFY
        wakes the worker for a product or two, and only when something was embedded since."""
        self._index_sync_owed = self._index_sync_owed or bool(tally.embedded)
        if self._index_sync_owed and time.monotonic() - self._last_index_sync >= every_s:
            self.sync_category_indexes()
            self.sync_graphs()
            self._last_index_sync, self._index_sync_owed = time.monotonic(), False

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

    def sync_graphs(self) -> GraphReport:
        """Rebuild the graphs whose build parameters differ from LOOKALIKE_HNSW_* (concurrently)."""
        return sync_graphs(self.database, self.catalog)
