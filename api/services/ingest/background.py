"""The API's embedding loop: drain the queue in a daemon thread, then sleep until the catalog
changes (NOTIFY, :mod:`api.db.catalog_events`) or the poll interval passes, so requests are
never blocked by embedding and database or encoder trouble never stops the server."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from api.db.catalog_events import CatalogListener
from api.services.ingest.maintenance import Maintenance
from api.services.ingest.progress import BatchResult, Tally

log = logging.getLogger(__name__)

POLL_S = 30.0
LOG_EVERY_S = 10.0

Drain = Callable[[Callable[[BatchResult], None], threading.Event], Tally]
"""Embed until no row needs work or the event is set, reporting each batch to the callback."""


class BackgroundLoop:
    def __init__(
        self,
        drain: Drain,
        maintenance: Maintenance,
        database_url: str,
        progress_line: Callable[[], str],
        *,
        poll_s: float = POLL_S,
    ) -> None:
        self.drain = drain
        self.maintenance = maintenance
        self.database_url = database_url
        self.progress_line = progress_line
        self.poll_s = poll_s
        """Read before every wait, so it may be changed while the loop runs."""
        self.state = "stopped"
        self.last_error: str | None = None
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Drain now and after every catalog change or ``poll_s`` seconds, in a daemon thread."""
        if self._thread is not None:
            return
        self.stopping.clear()
        self._thread = threading.Thread(target=self._run, name="lookalike-embedder", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the batch in hand (or abandon it: its rows are released either way) and stop."""
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.state = "stopped"

    def _run(self) -> None:
        last_log = 0.0

        def report(_: BatchResult) -> None:
            nonlocal last_log
            if time.monotonic() - last_log >= LOG_EVERY_S:
                last_log = time.monotonic()
                log.info("embedding worker: %s", self.progress_line())

        self.maintenance.at_start()
        listener = CatalogListener(self.database_url)
        listener.start()  # before the first round: a write during it must still wake the next wait
        while not self.stopping.is_set():
            try:
                self.state = "running"
                tally = self.drain(report, self.stopping)
                if tally.embedded or tally.failed or tally.unchanged:
                    log.info(
                        "embedding worker: caught up (%d embedded, %d unchanged, %d failed this round)",
                        tally.embedded,
                        tally.unchanged,
                        tally.failed,
                    )
                self.maintenance.after_round(tally, every_s=self.poll_s)
                self.state = "idle"
                self.last_error = None
            except Exception as exc:  # database or encoder trouble: keep serving, try again later
                self.state = "error"
                self.last_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                log.warning("embedding worker: %s; retrying in %.0fs", self.last_error, self.poll_s)
                self.stopping.wait(self.poll_s)
                continue
            # A shop's write wakes us at once (api.db.catalog_events); the poll is the safety net.
            listener.wait(self.poll_s, self.stopping)
        listener.close()
