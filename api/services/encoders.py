"""The encoders the API serves with, built from settings, and which of them are up right now.

CLIP runs in-process, or in the encoder service when ``LOOKALIKE_ENCODER_URL`` is set. The
MobileNetV2 fallback always runs in-process: it is what answers when the service is down.
An in-process CLIP whose weights could not be loaded is retried now and then, so dropping a
checkpoint into place (or the network coming back) heals the service without a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from api.settings import Settings
from encoder.base import Encoder, EncoderDescription
from encoder.errors import EncoderUnavailableError
from encoder.factory import build_clip_encoder, build_mobilenet_encoder, build_remote_encoder
from encoder.registry import MOBILENET_MODEL_ID

if TYPE_CHECKING:
    from encoder.circuit import CircuitBreaker
    from encoder.client import PoolBreaker, RemoteEncoder

log = logging.getLogger(__name__)

RELOAD_AFTER_S = 60.0
RANDOM_SUFFIX = "@random"
"""Marks vectors made by random-weight test models, so real weights later count them as stale."""


def stored_model_id(encoder: Encoder) -> str:
    """The model id written beside a vector this encoder made."""
    return encoder.model_id + (RANDOM_SUFFIX if encoder.weights_source == "random" else "")


class EncoderHub:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._clip: Encoder | None = None
        self._clip_reason: str | None = None
        self._clip_tried_at = 0.0
        self._clip_reloading = False
        self._mobilenet: Encoder | None = None
        self._mobilenet_reason: str | None = None
        self._remote: RemoteEncoder | None = None
        if settings.encoder_url:
            self._remote = build_remote_encoder(
                settings.encoder_url,
                "clip",
                timeout_s=settings.encoder_timeout_s,
                failure_threshold=settings.encoder_circuit_failures,
                reset_after_s=settings.encoder_circuit_reset_s,
                expected_model=settings.clip_model,
            )

    def load(self) -> None:
        """Load the in-process models (at startup, so the first request does not pay for it)."""
        self._load_mobilenet()
        if self._remote is None:
            self._load_clip()

    def _load_clip(self) -> None:
        self._clip_tried_at = time.monotonic()
        try:
            self._clip = build_clip_encoder(
                self.settings.clip_model,
                weights_path=self.settings.clip_weights_path,
                random_weights=self.settings.clip_random_weights,
                device=self.settings.device,
                batch_size=self.settings.batch_size,
                # Exported models go to the user cache dir (XDG_CACHE_HOME), not data_dir: they
                # are rebuildable, and one export then serves every data dir on the machine.
                runtime=self.settings.clip_runtime,
            )
            self._clip_reason = None
            runtime = self._clip.description().runtime
            log.info("CLIP %s ready on %s (%s)", self._clip.model_id, self._clip.device, runtime)
        except EncoderUnavailableError as exc:
            self._clip, self._clip_reason = None, str(exc)
            log.warning("CLIP unavailable, search runs in fallback modes: %s", exc)

    def _reload_clip_in_background(self) -> None:
        """Retry loading CLIP on a thread of its own: a load can take a minute, and it once ran
        inside the request that noticed it was due, which waited for it. Requests meanwhile keep
        being served by the fallback modes; one retry at a time, at most every RELOAD_AFTER_S."""
        with self._lock:
            if self._clip_reloading or time.monotonic() - self._clip_tried_at <= RELOAD_AFTER_S:
                return
            self._clip_reloading = True
            self._clip_tried_at = time.monotonic()

        def reload() -> None:
            try:
                self._load_clip()
            finally:
                self._clip_reloading = False

        threading.Thread(target=reload, name="lookalike-clip-reload", daemon=True).start()

    def _load_mobilenet(self) -> None:
        try:
            self._mobilenet = build_mobilenet_encoder(self.settings.device, self.settings.batch_size)
            self._mobilenet_reason = None
        except EncoderUnavailableError as exc:
            self._mobilenet, self._mobilenet_reason = None, str(exc)
            log.warning("MobileNetV2 fallback unavailable: %s", exc)

    def clip(self) -> Encoder:
        """The CLIP encoder, or EncoderUnavailableError with the reason (never random weights)."""
        if self._remote is not None:
            if self._remote.breaker.state == "open":
                self._remote.breaker.before_call()  # raises with the breaker's own explanation
            served = self._remote.info()["model_id"]  # fetched once, then cached by the client
            if served != self.settings.clip_model:
                # Its vectors would not fit (or not mean the same as) the stored ones.
                raise EncoderUnavailableError(
                    f"encoder service serves {served} but LOOKALIKE_CLIP_MODEL is {self.settings.clip_model}"
                )
            return self._remote
        if self._clip is None and time.monotonic() - self._clip_tried_at > RELOAD_AFTER_S:
            self._reload_clip_in_background()
        if self._clip is None:
            raise EncoderUnavailableError(self._clip_reason or "CLIP is not loaded")
        return self._clip

    def mobilenet(self) -> Encoder:
        if self._mobilenet is None:
            raise EncoderUnavailableError(self._mobilenet_reason or "MobileNetV2 is not loaded")
        return self._mobilenet

    @property
    def clip_model_id(self) -> str:
        """What stored CLIP vectors must have been made by to count as current."""
        suffix = RANDOM_SUFFIX if self.settings.clip_random_weights else ""
        return self.settings.clip_model + suffix

    @property
    def mobilenet_model_id(self) -> str:
        return MOBILENET_MODEL_ID

    @property
    def decode_size(self) -> int:
        """Shortest side any of our models resizes to; JPEG decoding may draft down to it."""
        sizes = [e.decode_size for e in (self._clip, self._mobilenet) if e is not None]
        return max([s for s in sizes if s] or [256])

    def circuits(self) -> dict[str, CircuitBreaker | PoolBreaker]:
        """The encoder service's circuit by its URL(s) (for /metrics); empty when CLIP is in-process."""
        if self._remote is None:
            return {}
        return {self._remote.base_url: self._remote.breaker}

    def health(self) -> dict[str, Any]:
        return {"clip": self._clip_health(), "fallback_encoder": self._mobilenet_health()}

    def _clip_health(self) -> dict[str, Any]:
        if self._remote is not None:
            try:
                if self._remote.breaker.state == "open":
                    self._remote.breaker.before_call()  # raises: no probe while the circuit is open
                # A live probe: the client's cached info() would report a dead service as fine.
                info = self._remote.health().get("models", {}).get("clip", {})
                if not info.get("available"):
                    raise EncoderUnavailableError(
                        f"encoder service has no CLIP: {info.get('reason', 'not loaded')}"
                    )
            except EncoderUnavailableError as exc:
                return {
                    "status": "down",
                    "model": self.clip_model_id,
                    "service": self._remote.base_url,
                    "reason": str(exc),
                    "circuit": self._remote.breaker.state,
                }
            return {
                "status": "ok",
                "model": info.get("model_id"),
                "dim": info.get("dim"),
                "device": f"remote:{info.get('device')}",
                "weights": info.get("weights_source"),
                "service": self._remote.base_url,
                "circuit": self._remote.breaker.state,
            }
        if self._clip is None:
            return {"status": "down", "model": self.clip_model_id, "reason": self._clip_reason}
        return _local_health(self._clip.description())

    def _mobilenet_health(self) -> dict[str, Any]:
        if self._mobilenet is None:
            return {"status": "down", "reason": self._mobilenet_reason}
        return _local_health(self._mobilenet.description())

    def close(self) -> None:
        if self._remote is not None:
            self._remote.close()


def _local_health(described: EncoderDescription) -> dict[str, Any]:
    """An in-process encoder's health entry; ``forward_passes``: passes run and calls merged into
    another's pass, per input kind (see encoder.inference)."""
    health: dict[str, Any] = {
        "status": "ok",
        "model": described.model_id,
        "dim": described.dim,
        "device": described.device,
        "weights": described.weights_source,
    }
    if described.runtime is not None:
        health["runtime"] = {"image": described.runtime, "text": described.text_runtime}
    health["preprocess_on"] = described.preprocess_on
    health["forward_passes"] = described.forward_pass_stats()
    return health
