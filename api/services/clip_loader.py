"""The in-process CLIP encoder: built from settings, and built again later when it could not be.

A missing checkpoint (or a hub that was unreachable) is not permanent: dropping the weights into
place heals the service without a restart. The retry runs on a thread of its own, at most every
RELOAD_AFTER_S, because a load can take a minute and it once ran inside the request that noticed
it was due, which waited for it. Requests meanwhile are served by the fallback modes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from api.settings import Settings
from encoder.base import Encoder
from encoder.errors import EncoderUnavailableError
from encoder.factory import build_clip_encoder

log = logging.getLogger("api.services.encoders")

RELOAD_AFTER_S = 60.0


class ClipLoader:
    """Holds the in-process CLIP encoder or the reason it is missing; ``clock`` is injectable so
    tests can make a retry due without waiting for it."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.encoder: Encoder | None = None
        self.reason: str | None = None
        self.reloading = False
        self._tried_at = clock()
        self._lock = threading.Lock()

    def load(self) -> None:
        """Build the encoder now, in the caller's thread (start-up, and the background retry)."""
        self._tried_at = self.clock()
        try:
            self.encoder = build_clip_encoder(
                self.settings.clip_model,
                weights_path=self.settings.clip_weights_path,
                random_weights=self.settings.clip_random_weights,
                device=self.settings.device,
                batch_size=self.settings.batch_size,
                # Exported models go to the user cache dir (XDG_CACHE_HOME), not data_dir: they
                # are rebuildable, and one export then serves every data dir on the machine.
                runtime=self.settings.clip_runtime,
            )
            self.reason = None
            runtime = self.encoder.description().runtime
            log.info("CLIP %s ready on %s (%s)", self.encoder.model_id, self.encoder.device, runtime)
        except EncoderUnavailableError as exc:
            self.encoder, self.reason = None, str(exc)
            log.warning("CLIP unavailable, search runs in fallback modes: %s", exc)

    def get(self) -> Encoder:
        """The encoder, or EncoderUnavailableError with the reason (starting a retry when due)."""
        if self.encoder is None:
            self._retry_in_background()
        if self.encoder is None:
            raise EncoderUnavailableError(self.reason or "CLIP is not loaded")
        return self.encoder

    def _retry_in_background(self) -> None:
        """One retry at a time, at most every RELOAD_AFTER_S."""
        with self._lock:
            if self.reloading or self.clock() - self._tried_at <= RELOAD_AFTER_S:
                return
            self.reloading = True
            self._tried_at = self.clock()

        def reload() -> None:
            try:
                self.load()
            finally:
                self.reloading = False

        threading.Thread(target=reload, name="lookalike-clip-reload", daemon=True).start()
