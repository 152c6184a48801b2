"""Where every encoder is built: CLIP on each runtime, MobileNetV2, and the encoder-service client.

Callers (the API's EncoderHub, the encoder service, benchmarks) build here and then see only
:class:`encoder.base.Encoder`; parameters mirror api.settings, but the encoder package never
imports the API's settings (it must stay usable on its own). Choosing the CLIP runtime lives
here too, so that the runtime modules (torch, ONNX Runtime, OpenVINO) need not know each other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from encoder.base import Encoder
from encoder.client import ModelName, RemoteEncoder
from encoder.clip import ClipEncoder, load_clip_encoder
from encoder.clip_auto import build_auto
from encoder.clip_onnx import RUNTIMES, OnnxClipEncoder, build_onnx, default_cache_dir
from encoder.errors import EncoderUnavailableError
from encoder.mobilenet import MobileNetEncoder, load_mobilenet_encoder
from encoder.openvino_clip import build_openvino

log = logging.getLogger(__name__)


def build_clip_encoder(
    model_name: str,
    *,
    weights_path: Path | None = None,
    random_weights: bool = False,
    device: str = "auto",
    batch_size: int = 32,
    runtime: str = "torch",
    onnx_cache_dir: Path | None = None,
) -> ClipEncoder | OnnxClipEncoder:
    """CLIP from ``encoder.registry``; raises EncoderUnavailableError (with the reason) on missing weights.

    ``runtime`` is one of ``encoder.clip_onnx.RUNTIMES``; anything but ``torch`` exports to
    ``onnx_cache_dir`` on first use and silently (logged) falls back to torch if it cannot.
    The torch model is always built first, as the reference that the exported graphs must
    match and as that fallback. ``torch`` is the default here so a caller asking for "the
    model" gets the reference; the API opts in. On a GPU the model runs in fp16 with images
    resized on the device (:func:`encoder.clip_model.load_clip_model`), and no ONNX runtime.
    """
    base = load_clip_encoder(
        model_name,
        weights_path=weights_path,
        random_weights=random_weights,
        device=device,
        batch_size=batch_size,
    )
    if base.loaded.gpu_mode:
        return base
    return _on_runtime(base, runtime, onnx_cache_dir or default_cache_dir())


def _on_runtime(base: ClipEncoder, runtime: str, cache_dir: Path) -> ClipEncoder | OnnxClipEncoder:
    """``base`` on the requested runtime, or ``base`` itself with the reason logged."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown CLIP runtime {runtime!r}; use one of {', '.join(RUNTIMES)}")
    if runtime == "torch":
        return base
    if base.device != "cpu":
        if runtime != "auto":
            log.warning("CLIP runtime %s is CPU-only; using torch on %s", runtime, base.device)
        return base
    try:
        if runtime == "auto":
            fast = build_auto(base, cache_dir)
        elif runtime.startswith("openvino"):
            fast = build_openvino(base, runtime, cache_dir)
        else:
            fast = build_onnx(base, runtime, cache_dir)
    except Exception as exc:  # never crash the service over an optimisation
        log.warning("CLIP runtime %s unavailable, using torch fp32: %s", runtime, exc)
        return base
    log.info(
        "CLIP %s runs on %s, text on %s (artifacts in %s)",
        base.model_id, fast.runtime, fast.text_runtime, fast.artifacts,
    )  # fmt: skip
    return fast


def build_mobilenet_encoder(device: str = "auto", batch_size: int = 32) -> MobileNetEncoder:
    """The ImageNet MobileNetV2 fallback; raises EncoderUnavailableError if its weights are nowhere."""
    return load_mobilenet_encoder(device=device, batch_size=batch_size)


def build_remote_encoder(
    urls: str,
    model: ModelName = "clip",
    *,
    timeout_s: float,
    failure_threshold: int,
    reset_after_s: float,
    expected_model: str | None,
) -> RemoteEncoder:
    """The encoder service's client over ``urls`` (comma-separated: a pool; see encoder.client).

    Connecting gets at most a second: a service that does not accept within it is down, and
    the call moves on to another instance or the fallback instead of waiting the whole timeout.
    """
    return RemoteEncoder(
        urls,
        model,
        connect_timeout=min(1.0, timeout_s),
        read_timeout=timeout_s,
        failure_threshold=failure_threshold,
        reset_after_s=reset_after_s,
        # Each health probe re-reads the model of every instance; one serving another model is
        # left out (encoder.client), so its vectors never meet the catalog's.
        expected_model=expected_model,
    )


def build_service_encoders(
    *,
    clip_model: str | None,
    clip_weights: Path | None,
    random_weights: bool,
    mobilenet: bool,
    device: str,
    batch_size: int,
    clip_runtime: str,
    onnx_cache_dir: Path | None = None,
) -> tuple[Encoder | None, Encoder | None, dict[str, str]]:
    """What the encoder service serves; a model that cannot load is reported (why), not fatal."""
    reasons: dict[str, str] = {}

    def attempt(name: str, build: Callable[[], Encoder]) -> Encoder | None:
        try:
            return build()
        except EncoderUnavailableError as exc:
            reasons[name] = str(exc)
            log.error("%s unavailable: %s", name, exc)
            return None

    clip = mobile = None
    if clip_model is None:
        reasons["clip"] = "disabled"
    else:
        clip = attempt(
            "clip",
            lambda: build_clip_encoder(
                clip_model,
                weights_path=clip_weights,
                random_weights=random_weights,
                device=device,
                batch_size=batch_size,
                runtime=clip_runtime,
                onnx_cache_dir=onnx_cache_dir,
            ),
        )
    if not mobilenet:
        reasons["mobilenet"] = "disabled"
    else:
        mobile = attempt("mobilenet", lambda: build_mobilenet_encoder(device=device, batch_size=batch_size))
    return clip, mobile, reasons
