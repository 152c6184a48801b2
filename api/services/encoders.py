"""The encoders the API serves with, built from settings, and which of them are up right now.

CLIP runs in-process (:class:`api.services.clip_loader.ClipLoader`, which also retries a failed
load), or in the encoder service when ``LOOKALIKE_ENCODER_URL`` is set (:func:`serving_remote`
checks it may be used). The MobileNetV2 fallback always runs in-process: it is what answers when
the service is down. Health entries are shaped in :mod:`api.services.encoder_health`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from api.services.clip_loader import RELOAD_AFTER_S, ClipLoader
from api.services.encoder_health import down, local_health, remote_clip_health
from api.settings import Settings
from encoder.base import Encoder
from encoder.errors import EncoderUnavailableError
from encoder.factory import build_mobilenet_encoder, build_remote_encoder
from encoder.registry import MOBILENET_MODEL_ID

if TYPE_CHECKING:
    from encoder.circuit import CircuitBreaker
    from encoder.client import PoolBreaker, RemoteEncoder

__all__ = ["RANDOM_SUFFIX", "RELOAD_AFTER_S", "EncoderHub", "serving_remote", "stored_model_id"]

log = logging.getLogger(__name__)

RANDOM_SUFFIX = "@random"
"""Marks vectors made by random-weight test models, so real weights later count them as stale."""


def stored_model_id(encoder: Encoder) -> str:
    """The model id written beside a vector this encoder made."""
    return encoder.model_id + (RANDOM_SUFFIX if encoder.weights_source == "random" else "")


def serving_remote(remote: RemoteEncoder, expected_model: str) -> RemoteEncoder:
    """The encoder service, if it may serve now: its circuit is not open and it serves the
    configured model (another model's vectors would not fit, or not mean the same as, ours)."""
    if remote.breaker.state == "open":
        remote.breaker.before_call()  # raises with the breaker's own explanation
    served = remote.info()["model_id"]  # fetched once, then cached by the client
    if served != expected_model:
        raise EncoderUnavailableError(
            f"encoder service serves {served} but LOOKALIKE_CLIP_MODEL is {expected_model}"
        )
    return remote


class EncoderHub:
    """CLIP (local or remote) and the MobileNetV2 fallback, each available or down with a reason."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clip_loader = ClipLoader(settings, clock)
        self._mobilenet: Encoder | None = None
        self._mobilenet_reason: str | None = None
        self.remote: RemoteEncoder | None = None
        if settings.encoder_url:
            self.remote = build_remote_encoder(
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
        if self.remote is None:
            self.clip_loader.load()

    def _load_mobilenet(self) -> None:
        try:
            self._mobilenet = build_mobilenet_encoder(self.settings.device, self.settings.batch_size)
            self._mobilenet_reason = None
        except EncoderUnavailableError as exc:
            self._mobilenet, self._mobilenet_reason = None, str(exc)
            log.warning("MobileNetV2 fallback unavailable: %s", exc)

    def clip(self) -> Encoder:
        """The CLIP encoder, or EncoderUnavailableError with the reason (never random weights)."""
        if self.remote is not None:
            return serving_remote(self.remote, self.settings.clip_model)
        return self.clip_loader.get()

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
        sizes = [e.decode_size for e in (self.clip_loader.encoder, self._mobilenet) if e is not None]
        return max([s for s in sizes if s] or [256])

    def circuits(self) -> dict[str, CircuitBreaker | PoolBreaker]:
        """The encoder service's circuit by its URL(s) (for /metrics); empty when CLIP is in-process."""
        if self.remote is None:
            return {}
        return {self.remote.base_url: self.remote.breaker}

    def health(self) -> dict[str, Any]:
        return {"clip": self._clip_health(), "fallback_encoder": self._mobilenet_health()}

    def _clip_health(self) -> dict[str, Any]:
        if self.remote is not None:
            return remote_clip_health(self.remote, self.clip_model_id)
        clip = self.clip_loader.encoder
        if clip is None:
            return down(self.clip_loader.reason, model=self.clip_model_id)
        return local_health(clip.description())

    def _mobilenet_health(self) -> dict[str, Any]:
        if self._mobilenet is None:
            return down(self._mobilenet_reason)
        return local_health(self._mobilenet.description())

    def close(self) -> None:
        if self.remote is not None:
            self.remote.close()
