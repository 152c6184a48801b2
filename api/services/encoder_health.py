"""What GET /api/v1/health says about each encoder: one entry shape for in-process and remote ones."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from encoder.base import EncoderDescription
from encoder.errors import EncoderUnavailableError

if TYPE_CHECKING:
    from encoder.client import RemoteEncoder


def local_health(described: EncoderDescription) -> dict[str, Any]:
    """An in-process encoder's entry; ``forward_passes``: passes run and calls merged into
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


def down(reason: str | None, **known: Any) -> dict[str, Any]:
    return {"status": "down", **known, "reason": reason}


def remote_clip_health(remote: RemoteEncoder, model_id: str) -> dict[str, Any]:
    """The encoder service's CLIP, probed live: the client's cached info() would report a dead
    service as fine. No probe while its circuit is open."""
    try:
        if remote.breaker.state == "open":
            remote.breaker.before_call()  # raises with the breaker's own explanation
        info = remote.health().get("models", {}).get("clip", {})
        if not info.get("available"):
            raise EncoderUnavailableError(f"encoder service has no CLIP: {info.get('reason', 'not loaded')}")
    except EncoderUnavailableError as exc:
        return {
            "status": "down",
            "model": model_id,
            "service": remote.base_url,
            "reason": str(exc),
            "circuit": remote.breaker.state,
        }
    return {
        "status": "ok",
        "model": info.get("model_id"),
        "dim": info.get("dim"),
        "device": f"remote:{info.get('device')}",
        "weights": info.get("weights_source"),
        "service": remote.base_url,
        "circuit": remote.breaker.state,
    }
