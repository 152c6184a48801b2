"""RemoteEncoder: the :class:`encoder.base.Encoder` interface over the encoder service's HTTP API.

The API holds one of these instead of a model when ``LOOKALIKE_ENCODER_URL`` is set (one URL,
or several comma-separated: a pool). Every transport failure feeds the instance's circuit
breaker, so a dead service turns into an immediate retry on another instance, or, when none
is left, an EncoderUnavailableError (and the API's fallback), never a timeout per request.
"""

from __future__ import annotations

import io
import itertools
import threading
from collections.abc import Sequence
from typing import Any, Literal

import httpx
import numpy as np
from PIL import Image

from encoder.base import EncoderDescription
from encoder.circuit import CircuitBreaker
from encoder.errors import EncoderError, EncoderUnavailableError, InvalidImageError

ModelName = Literal["clip", "mobilenet"]


class _Instance:
    """One encoder-service process: its HTTP client, breaker, requests in flight, last /health."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        failure_threshold: int,
        reset_after_s: float,
    ) -> None:
        self.base_url = base_url
        self.breaker = CircuitBreaker(failure_threshold, reset_after_s, name=f"encoder service {base_url}")
        self.http = httpx.Client(
            base_url=base_url,
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            # A local service must not be routed through a corporate proxy from the env.
            trust_env=False,
        )
        self.in_flight = 0
        self.served = 0
        self.info: dict[str, Any] | None = None
        """This model's entry of the instance's last /health answer (refreshed by every probe)."""


class _InstanceFailed(EncoderUnavailableError):
    """One instance failed (transport error or 5xx): another instance may still serve the call."""


class PoolBreaker:
    """The pool seen as one breaker (what callers that know one service look at): closed while
    any instance is closed, half-open while one may be probed, open only when all are."""

    def __init__(self, instances: list[_Instance]) -> None:
        self._instances = instances

    @property
    def state(self) -> str:
        states = [i.breaker.state for i in self._instances]
        if "closed" in states:
            return "closed"
        return "half_open" if "half_open" in states else "open"

    @property
    def consecutive_failures(self) -> int:
        return min(i.breaker.consecutive_failures for i in self._instances)

    @property
    def last_error(self) -> str | None:
        return "; ".join(
            f"{i.base_url}: {i.breaker.last_error}" for i in self._instances if i.breaker.last_error
        )

    def before_call(self) -> None:
        if self.state == "open":
            raise EncoderUnavailableError(f"every encoder service's circuit is open ({self.last_error})")


class RemoteEncoder:
    """The encoder service's API as an :class:`encoder.base.Encoder`, over one or several instances.

    ``base_url`` may list several instances, comma-separated (``LOOKALIKE_ENCODER_URL``). Each
    call goes to the least busy instance whose breaker is closed (ties in turn); when it fails
    (transport error, 5xx) the call is retried on the next one, so losing one of two instances
    costs a client nothing and never sends search to the MobileNet fallback. Only when every
    instance fails, or every breaker is open, does the call raise EncoderUnavailableError.

    ``expected_model``: the CLIP model the catalog's vectors come from. Every health probe
    re-reads each instance's model id, and an instance serving another model (a restart with
    other settings) is left out until it serves the expected one again.
    """

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
        expected_model: str | None = None,
    ) -> None:
        if model not in ("clip", "mobilenet"):
            raise ValueError(f"model must be 'clip' or 'mobilenet', not {model!r}")
        urls = [part.strip().rstrip("/") for part in base_url.split(",") if part.strip()]
        if not urls:
            raise ValueError("no encoder service URL given")
        self.instances = [
            _Instance(
                url,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                failure_threshold=failure_threshold,
                reset_after_s=reset_after_s,
            )
            for url in urls
        ]
        self.base_url = ", ".join(urls)
        self.model = model
        self.expected_model = expected_model
        self.max_files_per_request = max_files_per_request
        # One instance: its own breaker, as before; several: the pool's view of theirs.
        self.breaker: CircuitBreaker | PoolBreaker = (
            self.instances[0].breaker if len(self.instances) == 1 else PoolBreaker(self.instances)
        )
        self._lock = threading.Lock()
        self._turn = itertools.count()
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

    def encode_uploads(self, blobs: Sequence[bytes], images: Sequence[Image.Image]) -> np.ndarray:
        """The original bytes: the service decodes them itself, so nothing is re-encoded here."""
        return self.encode_image_bytes(list(blobs))

    def description(self) -> EncoderDescription:
        info = self.info()
        return EncoderDescription(
            model_id=str(info["model_id"]),
            dim=int(info["dim"]),
            device=f"remote:{info['device']}",
            weights_source=str(info.get("weights_source", "unknown")),
            supports_texts=self.supports_texts,
            batch_size=info.get("batch_size"),
        )

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
        """This model's /health entry from an instance that serves the expected model (fetched
        once per instance, refreshed by :meth:`health`); EncoderUnavailableError if none does."""
        for instance in self.instances:
            if instance.info is not None and self._fits(instance):
                return instance.info
        reasons = []
        for instance in self.instances:
            if instance.info is None and instance.breaker.state != "open":
                try:
                    self._probe(instance)
                except EncoderUnavailableError as exc:
                    reasons.append(str(exc))
                    continue
            if instance.info is not None and self._fits(instance):
                return instance.info
            if instance.info is not None:
                reasons.append(self._misfit(instance))
        raise EncoderUnavailableError("; ".join(reasons) or f"encoder service {self.base_url} is unavailable")

    def health(self) -> dict[str, Any]:
        """Probe every instance now (re-reading its model id) and answer like one service's
        /health, from the first instance that is up and fits, plus ``instances``."""
        answers: list[tuple[_Instance, dict[str, Any] | None, str | None]] = []
        for instance in self.instances:
            try:
                answers.append((instance, self._probe(instance), None))
            except EncoderUnavailableError as exc:
                answers.append((instance, None, str(exc)))
        listing = [
            {
                "url": instance.base_url,
                "status": "ok" if answer is not None and self._fits(instance) else "down",
                "model_id": (instance.info or {}).get("model_id") if answer is not None else None,
                "circuit": instance.breaker.state,
                "in_flight": instance.in_flight,
                "served": instance.served,
                **({"reason": error} if error else {}),
                **(
                    {"reason": self._misfit(instance)}
                    if answer is not None and not self._fits(instance)
                    else {}
                ),
            }
            for instance, answer, error in answers
        ]
        for instance, answer, _ in answers:
            if answer is not None and self._fits(instance):
                return {**answer, "instances": listing}
        # None fits: say why for each (down, or serving another model since a restart).
        reasons = [error or self._misfit(instance) for instance, _, error in answers]
        raise EncoderUnavailableError("; ".join(reasons) or "no encoder service answered")

    def close(self) -> None:
        for instance in self.instances:
            instance.http.close()

    def __enter__(self) -> RemoteEncoder:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- plumbing ------------------------------------------------------------------------

    def _fits(self, instance: _Instance) -> bool:
        if instance.info is None or not instance.info.get("available", True):
            return False
        return self.expected_model is None or instance.info.get("model_id") == self.expected_model

    def _misfit(self, instance: _Instance) -> str:
        info = instance.info or {}
        if not info.get("available", True):
            return (
                f"encoder service {instance.base_url} has no {self.model}: {info.get('reason', 'not loaded')}"
            )
        return f"encoder service {instance.base_url} serves {info.get('model_id')}, not {self.expected_model}"

    def _probe(self, instance: _Instance) -> dict[str, Any]:
        """GET /health on one instance; remember its entry for our model (even if it does not fit)."""
        payload = self._call_instance(instance, "GET", "/health", {})
        entry = payload.get("models", {}).get(self.model, {})
        instance.info = {**entry, "available": bool(entry.get("available"))}
        if not entry.get("available"):
            raise EncoderUnavailableError(self._misfit(instance))
        return payload

    def _empty(self) -> np.ndarray:
        return np.zeros((0, self.dim), dtype=np.float32)

    def _pick(self, tried: set[int]) -> _Instance | None:
        """Least busy closed instance that fits (in turn on ties), else one due for a probe."""
        turn = next(self._turn)
        count = len(self.instances)
        order = [self.instances[(turn + k) % count] for k in range(count)]
        candidates = [i for i in order if id(i) not in tried and (i.info is None or self._fits(i))]
        closed = [i for i in candidates if i.breaker.state == "closed"]
        if closed:
            return min(closed, key=lambda i: i.in_flight)  # min keeps the rotation on ties
        for instance in candidates:
            if instance.breaker.allow():
                return instance
        return None

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        tried: set[int] = set()
        failures: list[str] = []
        while True:
            instance = self._pick(tried)
            if instance is None:
                break
            tried.add(id(instance))
            try:
                return self._call_instance(instance, method, path, kwargs, checked=True)
            except _InstanceFailed as exc:
                failures.append(str(exc))
        if failures:
            raise EncoderUnavailableError("; ".join(failures))
        if len(self.instances) == 1:
            self.instances[0].breaker.before_call()  # raises with the breaker's own explanation
        raise EncoderUnavailableError(
            f"no encoder service can take the call ({self.base_url}): "
            + "; ".join(
                self._misfit(i)
                if i.info and not self._fits(i)
                else f"{i.base_url}: circuit {i.breaker.state}"
                for i in self.instances
            )
        )

    def _call_instance(
        self, instance: _Instance, method: str, path: str, kwargs: dict[str, Any], *, checked: bool = False
    ) -> dict[str, Any]:
        if not checked:
            instance.breaker.before_call()
        with self._lock:
            instance.in_flight += 1
        try:
            response = instance.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            reason = f"{type(exc).__name__}: {exc}"
            instance.breaker.record_failure(reason)
            raise _InstanceFailed(f"encoder service {instance.base_url} unreachable ({reason})") from exc
        finally:
            with self._lock:
                instance.in_flight -= 1
        if response.status_code >= 500:
            message = _error_message(response)
            instance.breaker.record_failure(f"HTTP {response.status_code}: {message}")
            raise _InstanceFailed(f"encoder service {instance.base_url}: {message}")
        # The service answered: whatever it said, it is alive.
        instance.breaker.record_success()
        instance.served += 1
        if response.status_code >= 400:
            code, message = _error_fields(response)
            if response.status_code in (413, 422) and code not in ("invalid_request", "unknown_model"):
                raise InvalidImageError(code, message)
            raise EncoderError(f"encoder service rejected the request ({code}): {message}")
        try:
            return response.json()
        except ValueError as exc:
            raise EncoderUnavailableError(f"encoder service {instance.base_url} sent invalid JSON") from exc


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
