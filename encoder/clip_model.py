"""Loading one open_clip model: weights, preprocessing and tokenizer, shared by every CLIP runtime.

The torch encoder (:mod:`encoder.clip`) runs this model; the ONNX Runtime and OpenVINO ones
(:mod:`encoder.clip_onnx`, :mod:`encoder.openvino_clip`) export it and check their graphs
against it. They all read the same public :class:`ClipModel`, so none reaches into another
encoder's internals and the runtimes do not import each other in a circle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch
from PIL import Image

from encoder.clip_weights import ResolvedWeights, _hf_cached, resolve_weights, tag_config
from encoder.devices import configure_cpu_threads, gpu_mode_for, resolve_device
from encoder.errors import EncoderUnavailableError
from encoder.registry import ClipModelSpec, clip_spec, missing_requirements

RANDOM_WEIGHTS_SEED = 0
"""Random-weight models are seeded so that two processes (API and encoder service, or a test
and its reference) build bit-identical networks and their vectors can be compared."""


@dataclass(frozen=True)
class ClipModel:
    """A loaded open_clip model on its device, with exactly the preprocessing its weights pair with."""

    spec: ClipModelSpec
    model: torch.nn.Module
    """In eval mode on ``device``; fp16 in ``gpu_mode``, fp32 otherwise (the parity reference)."""
    preprocess: Callable[[Image.Image], torch.Tensor]
    tokenizer: Callable[[list[str]], torch.Tensor]
    device: str
    weights_source: str
    weights_key: str
    """Changes when the weights do: keys the ONNX cache (see :func:`_weights_fingerprint`)."""
    gpu_mode: bool
    """fp16 weights and images resized on the device (:mod:`encoder.tensor_transforms`)."""


def load_clip_model(
    model_name: str,
    *,
    weights_path: Path | None = None,
    random_weights: bool = False,
    device: str = "auto",
    cache_dir: str | None = None,
    gpu_mode: bool | None = None,
) -> ClipModel:
    """Build the registry model ``model_name``; raise EncoderUnavailableError rather than guess.

    ``random_weights`` builds the same architecture with seeded random init (tests and
    benchmarks: identical compute, meaningless vectors); the model then reports
    ``weights_source="random"`` so /health can never pass it off as a real model.

    ``gpu_mode`` (default: on CUDA) runs the model in fp16 and resizes images on the device;
    both match the fp32 Pillow reference to cosine >= 0.999 (tests run this mode on the CPU).
    """
    spec = clip_spec(model_name)
    missing = missing_requirements(spec)
    if missing is not None:
        # Before weights and building: random weights need the real tokenizer just the same.
        raise EncoderUnavailableError(missing)
    resolved_device = resolve_device(device)
    if resolved_device == "cpu":
        configure_cpu_threads()
    if random_weights:
        # Tokenizer first: a Hugging Face one may be undownloadable, and the model is the slow part.
        tokenizer = _tokenizer(spec, weights_path)
        model, preprocess = _build_random(spec)
        source = "random"
        weights_key = f"random:seed={RANDOM_WEIGHTS_SEED}:{spec.arch}"
    else:
        resolved = resolve_weights(spec, weights_path, cache_dir)
        tokenizer = _tokenizer(spec, weights_path)
        model, preprocess = _build_pretrained(spec, resolved, cache_dir)
        source = resolved.source
        weights_key = _weights_fingerprint(resolved, cache_dir)
    model = model.to(resolved_device).eval()
    gpu = gpu_mode_for(resolved_device, gpu_mode)
    return ClipModel(
        spec,
        model.half() if gpu else model,
        preprocess,
        tokenizer,
        device=resolved_device,
        weights_source=source,
        weights_key=weights_key,
        gpu_mode=gpu,
    )


def _weights_fingerprint(resolved: ResolvedWeights, cache_dir: str | None) -> str:
    """Source plus path, size and mtime of the checkpoint file(s): cheap, and changes when they do.

    This is what keys the ONNX cache (exported graphs and the probe reference they are checked
    against), so it must change with the weights. Hashing a 600 MB checkpoint would add seconds
    to every start; a file rewritten in place with the same size and mtime is the accepted gap.
    Hugging Face cache paths already carry the revision (``snapshots/<commit>/``).
    """
    paths: list[Path] = []
    if resolved.pretrained is not None:
        paths.append(Path(resolved.pretrained))
    elif resolved.model_name.startswith("local-dir:"):
        paths.extend(sorted(Path(resolved.model_name.removeprefix("local-dir:")).iterdir()))
    elif resolved.model_name.startswith("hf-hub:"):
        config = _hf_cached(resolved.model_name.removeprefix("hf-hub:"), "open_clip_config.json", cache_dir)
        paths.extend(sorted(Path(config).parent.iterdir()) if config else [])
    stamps = []
    for path in paths:
        try:
            stat = path.resolve().stat()
            stamps.append(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}")
        except OSError:
            stamps.append(f"{path}:missing")
    return "|".join([resolved.source, *stamps])


def _transform_kwargs(spec: ClipModelSpec) -> dict[str, Any]:
    """The tag's preprocessing and activation, applied even when weights come from a file."""
    cfg = tag_config(spec)
    kwargs: dict[str, Any] = {"force_quick_gelu": bool(cfg.get("quick_gelu", False))}
    for ours, theirs in (
        ("image_mean", "mean"),
        ("image_std", "std"),
        ("image_interpolation", "interpolation"),
        ("image_resize_mode", "resize_mode"),
    ):
        if cfg.get(theirs) is not None:
            kwargs[ours] = cfg[theirs]
    return kwargs


def _build_random(spec: ClipModelSpec) -> tuple[torch.nn.Module, Callable[..., torch.Tensor]]:
    if spec.arch.startswith("hf-hub:"):
        raise EncoderUnavailableError(
            f"random weights are only available for built-in architectures, not {spec.arch}"
        )
    # fork_rng keeps the caller's global RNG stream untouched by our seeding.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                spec.arch, pretrained=None, pretrained_text=False, **_transform_kwargs(spec)
            )
        except Exception as exc:  # e.g. an XLM-R text tower whose Hugging Face config is offline
            raise EncoderUnavailableError(f"could not build {spec.arch} (random weights): {exc}") from exc
    return model, preprocess


def _build_pretrained(
    spec: ClipModelSpec, resolved: ResolvedWeights, cache_dir: str | None
) -> tuple[torch.nn.Module, Callable[..., torch.Tensor]]:
    kwargs = _transform_kwargs(spec) if resolved.pretrained is not None else {}
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            resolved.model_name, pretrained=resolved.pretrained, cache_dir=cache_dir, **kwargs
        )
    except Exception as exc:
        raise EncoderUnavailableError(
            f"weights unavailable: could not load {resolved.source} into {spec.arch}: {exc}"
        ) from exc
    return model, preprocess


def _tokenizer(spec: ClipModelSpec, weights_path: Path | None) -> Callable[[list[str]], torch.Tensor]:
    name = spec.arch
    if weights_path is not None and Path(weights_path).is_dir():
        name = f"local-dir:{weights_path}"
    try:
        return open_clip.get_tokenizer(name)
    except Exception as exc:
        raise EncoderUnavailableError(f"tokenizer unavailable for {spec.name}: {exc}") from exc
