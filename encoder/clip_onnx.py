"""CLIP on ONNX Runtime: the same encoder, ~2-4x faster on CPU, exported once and cached on disk.

open_clip in eager fp32 spends most of a batch-1 call on framework overhead and fp32
matmuls; ONNX Runtime fuses the graph, and the image tower's matmuls can run as int8
(VNNI) with the embedding still within cosine 0.999 of fp32. Text gets the bigger win from
trimming the 77-token context to the real length (see :class:`encoder.onnx_export.TextTower`),
then from int8 weights (a trimmed query is bound by reading the weights).

Nothing here is trusted blindly: every artifact, freshly exported or read from the cache,
is compared with the live torch model on a fixed probe before it serves, and anything that
fails (export error, corrupt file, parity miss, missing onnxruntime) falls back -- int8 to
fp32 ONNX to torch -- with the reason logged. An optimisation never takes the service down.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import open_clip
import platformdirs
import torch
from PIL import Image

from encoder.clip import ClipEncoder
from encoder.errors import EncoderUnavailableError
from encoder.onnx_export import (
    OPSET,
    export_text,
    export_visual,
    quantize_text_int8,
    quantize_visual_int8,
    text_trimmable,
)

if TYPE_CHECKING:
    import onnxruntime as ort

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "torch", "onnx", "onnx-int8", "openvino", "openvino-bf16", "openvino-int8")
"""``auto``: per tower, the fastest at batch 1 on this CPU (idle and beside a busy core) of ONNX
Runtime int8 and OpenVINO (bf16 image, int8 text), among those that pass parity
(:mod:`encoder.clip_auto`); torch when none does, and on CUDA. ``onnx``: fp32 ONNX for both towers. ``onnx-int8``: int8 image tower,
and the int8 text tower where it passes parity (fp32 text otherwise). ``openvino*``: the same
exported graphs compiled by OpenVINO (:mod:`encoder.openvino_clip`)."""

PARITY_MIN_COSINE = 0.999
"""Every probe embedding must be at least this close to the torch fp32 one."""

CACHE_FORMAT = 1
"""Bump when the exported graphs change meaning, so old caches are ignored, not misused."""

PROBE_TEXTS = [
    "",
    "shoes",
    "a red summer dress",
    "black leather ankle boots with a low block heel and a zip",
    "green t-shirt for a wedding",
    "navy striped polo, slim fit, made of cotton",
    "oversized grey hoodie with a zip and two pockets, machine washable",
    "floral skirt",
]
"""Short and long queries; the int8 text tower must keep every one of them within parity."""


class TowerSession(Protocol):
    """What a forward pass needs from a compiled tower: ONNX Runtime's ``InferenceSession.run``."""

    def run(self, output_names: None, input_feed: dict[str, np.ndarray]) -> list[np.ndarray]: ...


Tower = tuple[str, TowerSession]
"""A compiled tower and the runtime that serves it (``onnx-int8``, ``openvino-bf16``, ...)."""
Lap = tuple[float, float]
"""A tower's median batch-1 ms on one runtime: on idle cores, and beside one busy process."""
Race = dict[str, dict[str, Lap]]
"""``auto``'s timings (:mod:`encoder.clip_auto`): tower -> runtime -> :data:`Lap`."""


def default_cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir("lookalike")) / "onnx"


def trim_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """Cut the padding after the batch's last EOT (the highest token id in each row)."""
    length = int(tokens.argmax(dim=-1).max()) + 1
    return tokens[:, :length].contiguous()


class OnnxClipEncoder(ClipEncoder):
    """:class:`encoder.clip.ClipEncoder` with its forward passes in ONNX Runtime.

    Same model, preprocessing and tokenizer (the torch model stays loaded: it is the parity
    reference); only the two forward passes and the text trimming differ.
    """

    def __init__(
        self,
        base: ClipEncoder,
        visual: TowerSession,
        text: TowerSession,
        *,
        runtime: str,
        text_runtime: str,
        artifacts: Path,
        race: Race | None = None,
    ) -> None:
        super().__init__(base.loaded, batch_size=base.batch_size)
        self.runtime = runtime
        """Which image tower actually serves (``auto`` resolves to one of the runtimes)."""
        self.text_runtime = text_runtime
        """Which text tower actually serves."""
        self.artifacts = artifacts
        self.race = race or {}
        """``auto`` only: per tower, each runtime's batch-1 median ms here, idle and beside a busy core."""
        self._visual = visual
        self._text = text

    def _image_forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return _run(self._visual, "pixels", pixels)

    def _text_forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return _run(self._text, "tokens", tokens)

    def _text_batch(self, texts: Sequence[str]) -> torch.Tensor:
        return trim_tokens(super()._text_batch(texts))


@dataclass(frozen=True)
class Probe:
    """The fixed probe every exported tower must match before it serves, and the folder its
    model's artifacts live in (one per weights: see :func:`_cache_key`). Shared with
    :mod:`encoder.openvino_clip`, which compiles the same files."""

    model: torch.nn.Module
    folder: Path
    pixels: torch.Tensor
    tokens: torch.Tensor
    want_image: np.ndarray
    want_text: np.ndarray

    @property
    def image_size(self) -> int:
        return int(self.pixels.shape[-1])

    def export_text(self, path: Path) -> None:
        export_text(self.model, path)

    def export_visual(self, path: Path) -> None:
        export_visual(self.model, self.image_size, path)

    def text_parity(self, session: TowerSession) -> float:
        return _min_cosine(_probe_texts(session, self.tokens), self.want_text)

    def image_parity(self, session: TowerSession) -> float:
        return _min_cosine(_run(session, "pixels", self.pixels).numpy(), self.want_image)

    def encoder(
        self,
        base: ClipEncoder,
        *,
        image: Tower,
        text: Tower,
        race: Race | None = None,
    ) -> OnnxClipEncoder:
        """``base`` with its forward passes on these towers (checked against this probe)."""
        return OnnxClipEncoder(
            base, image[1], text[1], runtime=image[0], text_runtime=text[0], artifacts=self.folder, race=race
        )


def prepare_probe(base: ClipEncoder, cache_dir: Path) -> Probe:
    """Check ``base`` can be exported, and get the torch reference (cached beside the artifacts)."""
    model = base.loaded.model
    why_not = text_trimmable(model)
    if why_not is not None:
        raise EncoderUnavailableError(why_not)
    folder = cache_dir / _cache_key(base.model_id, base.loaded.weights_key)
    pixels = _probe_pixels(base)
    tokens = base.loaded.tokenizer(PROBE_TEXTS)
    want_image, want_text = _reference(folder / "probe-reference.npz", model, pixels, tokens)
    return Probe(model, folder, pixels, tokens, want_image, want_text)


def build_onnx(base: ClipEncoder, runtime: str, cache_dir: Path) -> OnnxClipEncoder:
    """``base`` with both forward passes on ONNX Runtime ``runtime``; raises when it cannot serve."""
    probe = prepare_probe(base, cache_dir)
    return probe.encoder(base, image=onnx_image_tower(probe, runtime), text=onnx_text_tower(probe, runtime))


def onnx_image_tower(probe: Probe, runtime: str) -> Tower:
    """The image tower on ONNX Runtime: int8 where it passes parity (``auto`` then tries fp32)."""
    import onnxruntime  # noqa: F401 -- fail here, with the reason logged, if it is missing

    return select_tower(
        probe.folder,
        "visual",
        ["onnx-int8", "onnx"] if runtime == "auto" else [runtime],
        probe.export_visual,
        quantize_visual_int8,
        probe.image_parity,
    )


def onnx_text_tower(probe: Probe, runtime: str) -> Tower:
    """The text tower on ONNX Runtime: int8 weights where they pass parity, else fp32."""
    import onnxruntime  # noqa: F401 -- fail here, with the reason logged, if it is missing

    return select_tower(
        probe.folder,
        "text",
        ["onnx-int8", "onnx"] if runtime in ("auto", "onnx-int8") else ["onnx"],
        probe.export_text,
        quantize_text_int8,
        probe.text_parity,
    )


def select_tower(
    folder: Path,
    tower: str,
    order: list[str],
    export: Callable[[Path], None],
    quantize: Callable[[Path, Path], None],
    parity: Callable[[TowerSession], float],
    *,
    open_session: Callable[[Path], TowerSession] | None = None,
    int8_name: str = "int8",
    names: tuple[str, str] = ("onnx-int8", "onnx"),
    runtime_tag: str = "",
) -> tuple[str, TowerSession]:
    """The first of ``order`` (``names``: int8, fp32) whose file for ``tower`` passes parity.

    ``open_session`` turns a file into something with ONNX Runtime's ``run(None, feeds)``
    (default: an ORT session; :mod:`encoder.openvino_clip` passes its own), ``int8_name`` is the
    int8 file's suffix: runtimes that want a different int8 graph keep it in its own file.
    ``runtime_tag`` names the rejection notes of a runtime that shares files with another: a
    graph OpenVINO's bf16 fails is not thereby rejected for ONNX Runtime.
    """
    fp32 = folder / f"{tower}-fp32.onnx"

    def build_int8(path: Path) -> None:
        if not fp32.is_file():
            export(fp32)
        quantize(fp32, path)

    builds = {names[0]: (folder / f"{tower}-{int8_name}.onnx", build_int8), names[1]: (fp32, export)}
    reasons = []
    for name in order:
        path, build = builds[name]
        try:
            return name, _artifact(path, build, parity, open_session or _session, runtime_tag)
        except Exception as exc:
            reasons.append(f"{tower} {name}: {exc}")
            log.info("CLIP %s tower: %s not used: %s", tower, name, exc)
    raise EncoderUnavailableError("; ".join(reasons))


def _reference(
    path: Path, model: torch.nn.Module, pixels: torch.Tensor, tokens: torch.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """torch fp32's embeddings of the probe, computed once per cache folder.

    Stored beside the artifacts (same key: same weights) so a warm start checks the ONNX
    files without paying for torch forward passes; an unreadable file is recomputed.
    """
    try:
        with np.load(path) as stored:
            image, text = stored["image"], stored["text"]
        if image.shape[0] == len(pixels) and text.shape[0] == len(tokens):
            return image, text
    except Exception as exc:
        if path.exists():
            log.warning("probe reference %s unreadable (%s); recomputing it", path, exc)
    with torch.inference_mode():
        image = model.encode_image(pixels).numpy()
        text = model.encode_text(tokens).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, image=image, text=text)
    os.replace(tmp, path)
    return image, text


def _artifact(
    path: Path,
    build: Callable[[Path], None],
    parity: Callable[[TowerSession], float],
    open_session: Callable[[Path], TowerSession],
    runtime_tag: str = "",
) -> TowerSession:
    """Open ``path`` (building it if absent) and prove it matches torch; rebuild a bad cache once.

    A build whose fresh output misses parity (int8 on weights it does not suit) leaves a
    ``.rejected`` note, so later starts skip it instead of re-quantising every time.
    """
    rejected = path.with_name(f"{path.stem}{runtime_tag}.rejected")
    if rejected.is_file():
        raise EncoderUnavailableError(f"rejected earlier: {rejected.read_text().strip()}")
    for attempt in ("cached", "fresh"):
        fresh = not path.is_file()
        if fresh:
            log.info("exporting %s (first start with this model; cached afterwards)", path)
            build(path)
        try:
            session = open_session(path)
            cosine = parity(session)
        except Exception as exc:
            problem = f"unusable: {exc}"
        else:
            if cosine >= PARITY_MIN_COSINE:
                return session
            problem = f"parity miss: min cosine {cosine:.5f} < {PARITY_MIN_COSINE}"
            if fresh:
                rejected.write_text(problem + "\n")
        if fresh or attempt == "fresh":
            raise EncoderUnavailableError(f"{path.name} {problem}")
        log.warning("cached %s is %s; rebuilding it", path, problem)
        path.unlink(missing_ok=True)
    raise AssertionError("unreachable")


def _session(path: Path) -> ort.InferenceSession:
    """One session per tower; intra-op threads = the cores torch was given (physical cores here).

    Spinning is off: each session owns a thread pool, and idle workers that busy-wait after
    a run steal the cores from whatever runs next in this process (the other tower, torch's
    MobileNetV2); what it gains and costs is measured in docs/benchmarks.md ("Threads that
    stopped stealing each other's cores").
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # warnings about unused initialisers are noise here
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _run(session: TowerSession, name: str, batch: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(session.run(None, {name: batch.numpy()})[0])


def _probe_texts(session: TowerSession, tokens: torch.Tensor) -> np.ndarray:
    """Each probe text trimmed on its own and in a batch: both must match the 77-token reference."""
    alone = np.concatenate([_run(session, "tokens", trim_tokens(row[None])).numpy() for row in tokens])
    together = _run(session, "tokens", trim_tokens(tokens)).numpy()
    return np.concatenate([alone, together])


def _min_cosine(got: np.ndarray, want: np.ndarray) -> float:
    want = np.concatenate([want] * (len(got) // len(want)))
    dots = np.sum(got * want, axis=1)
    norms = np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1)
    return float(np.min(dots / np.maximum(norms, 1e-12)))


def _probe_pixels(base: ClipEncoder) -> torch.Tensor:
    """Three deterministic photo-like images (smooth colour fields + grain) through the real transforms."""
    rng = np.random.RandomState(1234)
    images = []
    for size in ((400, 534), (534, 400), (256, 256)):
        coarse = Image.fromarray(rng.randint(0, 256, (6, 5, 3), dtype=np.uint8))
        smooth = np.asarray(coarse.resize(size, Image.Resampling.BICUBIC), dtype=np.int16)
        grain = rng.randint(-12, 13, smooth.shape, dtype=np.int16)
        images.append(Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8)))
    return base.preprocess_images(images)


def _cache_key(model_id: str, weights_key: str) -> str:
    """Folder name: readable model id + a hash of everything that changes the exported graphs."""
    import onnx
    import onnxruntime

    parts: dict[str, Any] = {
        "format": CACHE_FORMAT,
        "model": model_id,
        "weights": weights_key,
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "opset": OPSET,
    }
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_id)
    return f"{safe}-{digest}"
