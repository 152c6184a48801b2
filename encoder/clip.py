"""CLIP (open_clip) as an :class:`encoder.base.Encoder`: images and texts in one space."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import open_clip
import torch
from PIL import Image

from encoder.clip_weights import ResolvedWeights, _hf_cached, resolve_weights, tag_config
from encoder.devices import configure_cpu_threads, gpu_mode_for, resolve_device
from encoder.errors import EncoderUnavailableError
from encoder.inference import ForwardQueue, encode_in_batches, pass_rows
from encoder.registry import ClipModelSpec, clip_spec, missing_requirements
from encoder.tensor_transforms import ImageBatches

if TYPE_CHECKING:
    from encoder.clip_onnx import OnnxClipEncoder

RANDOM_WEIGHTS_SEED = 0
"""Random-weight models are seeded so that two processes (API and encoder service, or a test
and its reference) build bit-identical networks and their vectors can be compared."""


class ClipEncoder:
    """One open_clip model plus exactly the preprocessing open_clip pairs with its weights."""

    def __init__(
        self,
        spec: ClipModelSpec,
        model: torch.nn.Module,
        preprocess: Callable[[Image.Image], torch.Tensor],
        tokenizer: Callable[[list[str]], torch.Tensor],
        *,
        device: str,
        batch_size: int,
        weights_source: str,
        preprocess_on_device: bool = False,
    ) -> None:
        self.spec = spec
        self.model_id = spec.name
        self.dim = spec.dim
        self.device = device
        self.batch_size = batch_size
        self.weights_source = weights_source
        self.supports_texts = True
        self.decode_size = _shortest_side(preprocess)
        """Shortest side the transforms resize to; decode_image may draft JPEGs down to it."""
        self._model = model
        self._dtype = next(model.parameters()).dtype
        self.runtime = "torch-fp16" if self._dtype == torch.float16 else "torch"
        """How the image tower runs (ONNX runtimes name themselves); the text tower: ``text_runtime``."""
        self.text_runtime = self.runtime
        self._preprocess = preprocess
        self._image_batches = ImageBatches(preprocess, device, on_device=preprocess_on_device)
        self.preprocess_on = self._image_batches.where
        """Where images are resized and cropped: Pillow on the CPU, or tensor ops on the device."""
        self._tokenizer = tokenizer
        lock = threading.Lock()  # image and text passes never overlap either
        # Lambdas, not bound methods: a runtime subclass's forward passes are the ones queued.
        self.image_queue = ForwardQueue(
            lambda pixels: self._image_forward(pixels),
            device=device,
            max_rows=pass_rows(device, batch_size),
            lock=lock,
        )
        self.text_queue = ForwardQueue(
            lambda tokens: self._text_forward(tokens),
            device=device,
            max_rows=pass_rows(device, batch_size),
            lock=lock,
        )

    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        return encode_in_batches(
            images,
            batch_size=self.batch_size,
            dim=self.dim,
            to_tensor=self._image_batch,
            run=self.image_queue,
        )

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return encode_in_batches(
            texts, batch_size=self.batch_size, dim=self.dim, to_tensor=self._text_batch, run=self.text_queue
        )

    # The three steps a runtime may replace (encoder.clip_onnx): preprocessing stays shared.
    def _image_forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._model.encode_image(pixels.to(self._dtype))

    def _text_forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._model.encode_text(tokens)

    def _text_batch(self, texts: Sequence[str]) -> torch.Tensor:
        return self._tokenizer(list(texts))

    def _image_batch(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return self._image_batches(images)


def load_clip_encoder(
    model_name: str,
    *,
    weights_path: Path | None = None,
    random_weights: bool = False,
    device: str = "auto",
    batch_size: int = 32,
    cache_dir: str | None = None,
    runtime: str = "torch",
    onnx_cache_dir: Path | None = None,
    gpu_mode: bool | None = None,
) -> ClipEncoder | OnnxClipEncoder:
    """Build the registry model ``model_name``; raise EncoderUnavailableError rather than guess.

    ``random_weights`` builds the same architecture with seeded random init (tests and
    benchmarks: identical compute, meaningless vectors); the encoder then reports
    ``weights_source="random"`` so /health can never pass it off as a real model.

    ``runtime`` (see :data:`encoder.clip_onnx.RUNTIMES`) may move the forward passes to ONNX
    Runtime; the torch model is always built first, as the reference that the exported
    graphs must match and as the fallback when they cannot be used. ``torch`` is the
    default here so a caller asking for "the model" gets the reference; the API opts in.

    ``gpu_mode`` (default: on CUDA) runs the model in fp16 and resizes images on the device
    (:mod:`encoder.tensor_transforms`); both match the fp32 Pillow reference to cosine >= 0.999
    (tests run this mode on the CPU). ONNX runtimes are for CPUs and are not used with it.
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
    base = ClipEncoder(
        spec,
        model.half() if gpu else model,
        preprocess,
        tokenizer,
        device=resolved_device,
        batch_size=batch_size,
        weights_source=source,
        preprocess_on_device=gpu,
    )
    if gpu:
        return base
    from encoder.clip_onnx import accelerate  # it subclasses ClipEncoder, so it imports this module

    return accelerate(base, runtime, cache_dir=onnx_cache_dir, weights_key=weights_key)


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


def _shortest_side(preprocess: Callable[..., Any]) -> int:
    """Read the resize target out of open_clip's Compose (falls back to 224, CLIP's usual)."""
    for step in getattr(preprocess, "transforms", []):
        size = getattr(step, "size", None) or getattr(step, "max_size", None)
        if isinstance(size, int):
            return size
        if isinstance(size, (tuple, list)) and size:
            return int(min(size))
    return 224
