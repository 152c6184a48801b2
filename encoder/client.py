"""RemoteEncoder: the :class:`encoder.base.Encoder` interface over the encoder service's HTTP API.

The API holds one of these instead of a model when ``LOOKALIKE_ENCODER_URL`` is set. Every
transport failure feeds a circuit breaker, so a dead service turns into an immediate
EncoderUnavailableError (and the API's fallback) instead of a timeout per request.
"""

from __future__ import annotations

import io
from typing import Any, Literal

import httpx
import numpy as np
from PIL import Image

from encoder.circuit import CircuitBreaker
from encoder.errors import EncoderError, EncoderUnavailableError, InvalidImageError

ModelName = Literal["clip", "mobilenet"]


class RemoteEncoder:
    def __init__(
        self,
        base_url: str,
        model: ModelName = "clip",
        *,
        connect_timeout: float = 2.0,
        read_timeout: float = 30.0,
        failure_threshold: int = 3,
        reset_after_s: float = 30.0,
        max_files_per_request: int = 32,
    ) -> None:
        if model not in ("clip", "mobilenet"):
            raise ValueError(f"model must be 'clip' or 'mobilenet', not {model!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.max_files_per_request = max_files_per_request
        self.breaker = CircuitBreaker(
            failure_threshold, reset_after_s, name=f"encoder service {self.base_url}"
        )
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            # A local service must not be routed through a corporate proxy from the env.
            trust_env=False,
        )
        self._info: dict[str, Any] | None = None
        self.decode_size: int | None = None
        """The service decodes; callers need not pre-shrink images for us."""

    # --- Encoder interface ---------------------------------------------------------------

    @property
    def model_id(self) -> str:
        return str(self.info()["model_id"])

    @property
    def dim(self) -> int:
        return int(self.info()["dim"])

    @property
    def device(self) -> str:
        return f"remote:{self.info()['device']}"

    @property
    def weights_source(self) -> str:
        return str(self.info().get("weights_source", "unknown"))

    @property
    def supports_texts(self) -> bool:
        return self.model == "clip"

    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        """Send each image as a lossless PNG so the service sees exactly these pixels."""
        return self.encode_image_bytes([_png_bytes(image) for image in images])

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        if not self.supports_texts:
            raise NotImplementedError("MobileNetV2 is an image-only model; text search needs CLIP")
        if not texts:
            return self._empty()
        payload = self._call("POST", "/embed/texts", params={"model": self.model}, json=list(texts))
        return _rows(payload)

    # --- extras --------------------------------------------------------------------------

    def encode_image_bytes(self, blobs: list[bytes]) -> np.ndarray:
        """Encode original upload bytes (no re-encoding; the service decodes and validates)."""
        if not blobs:
            return self._empty()
        chunks = []
        step = self.max_files_per_request
        for start in range(0, len(blobs), step):
            files = [
                ("files", (f"image-{start + i}", blob, "application/octet-stream"))
                for i, blob in enumerate(blobs[start : start + step])
            ]
            payload = self._call("POST", "/embed/images", data={"model": self.model}, files=files)
            chunks.append(_rows(payload))
        return np.concatenate(chunks)

    def info(self) -> dict[str, Any]:
        """This model's /health entry (fetched once; raises EncoderUnavailableError if unreachable)."""
        if self._info is None:
            health = self.health()
            entry = health.get("models", {}).get(self.model, {})
            if not entry.get("available"):
                raise EncoderUnavailableError(
                    f"encoder service {self.base_url} has no {self.model}: {entry.get('reason', 'not loaded')}"
                )
            self._info = entry
        return self._info

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RemoteEncoder:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- plumbing ------------------------------------------------------------------------

    def _empty(self) -> np.ndarray:
        return np.zeros((0, self.dim), dtype=np.float32)

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        self.breaker.before_call()
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            reason = f"{type(exc).__name__}: {exc}"
            self.breaker.record_failure(reason)
            raise EncoderUnavailableError(f"encoder service {self.base_url} unreachable ({reason})") from exc
        if response.status_code >= 500:
            message = _error_message(response)
            self.breaker.record_failure(f"HTTP {response.status_code}: {message}")
            raise EncoderUnavailableError(f"encoder service {self.base_url}: {message}")
        # The service answered: whatever it said, it is alive.
        self.breaker.record_success()
        if response.status_code >= 400:
            code, message = _error_fields(response)
            if response.status_code in (413, 422) and code not in ("invalid_request", "unknown_model"):
                raise InvalidImageError(code, message)
            raise EncoderError(f"encoder service rejected the request ({code}): {message}")
        try:
            return response.json()
        except ValueError as exc:
            raise EncoderUnavailableError(f"encoder service {self.base_url} sent invalid JSON") from exc


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    # compress_level=1: PNG is lossless at every level, so trade size for CPU.
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _rows(payload: dict[str, Any]) -> np.ndarray:
    rows = np.asarray(payload["embeddings"], dtype=np.float32)
    if rows.ndim != 2:
        rows = rows.reshape(0, int(payload.get("dim", 0)))
    return rows


def _error_fields(response: httpx.Response) -> tuple[str, str]:
    try:
        error = response.json()["error"]
        return str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        return f"http_{response.status_code}", response.text[:200]


def _error_message(response: httpx.Response) -> str:
    return _error_fields(response)[1]
