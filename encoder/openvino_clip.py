"""CLIP on OpenVINO: the graphs :mod:`encoder.clip_onnx` exports, compiled by OpenVINO's CPU plugin.

Issue 20 asked whether OpenVINO beats ONNX Runtime on our CPUs. It reads the same ONNX files,
so it costs no second exporter, and it goes through the same gate: every tower is compared
with the torch fp32 reference on the fixed probe before it serves, and anything that fails
falls back (int8 text to fp32 text, the whole runtime to torch) with the reason logged.

Three variants, selectable with ``LOOKALIKE_CLIP_RUNTIME``:

- ``openvino``: fp32 graphs, fp32 arithmetic.
- ``openvino-bf16``: fp32 graphs, bf16 arithmetic where the CPU has it (AVX-512 BF16, AMX).
- ``openvino-int8``: weight-only int8 in blocks of 32 (``MatMulNBits``, the format the int8 text
  tower already uses); OpenVINO runs these as compressed-weight matmuls and quantises the
  activations per group at run time. The image tower gets its own file: ONNX Runtime's int8
  image graph (``DynamicQuantizeLinear`` + ``MatMulInteger``) is decomposed to fp32 by
  OpenVINO and ran 4x slower than it does in ONNX Runtime here.

Which is fastest depends on the CPU: on an AMD EPYC (Zen 4) ONNX Runtime's int8 image tower
led, on a Xeon with AMX this bf16 one does (docs/benchmarks.md), so ``auto`` times both where it
runs (:mod:`encoder.clip_auto`) instead of trusting a table.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from encoder.clip import ClipEncoder
from encoder.clip_onnx import OnnxClipEncoder, Probe, Tower, prepare_probe, select_tower
from encoder.onnx_export import quantize_blockwise_int8

PRECISION = {"openvino": "f32", "openvino-bf16": "bf16", "openvino-int8": "f32"}
"""OpenVINO's ``INFERENCE_PRECISION_HINT`` per runtime (int8 weights still do fp32 elsewhere)."""


class OpenVinoSession:
    """One compiled tower with ONNX Runtime's ``run(None, feeds)``, so OnnxClipEncoder can call it.

    An infer request is not safe to share between threads; passes are already serialised by
    the encoder's forward queues, the lock only makes that hold for any other caller too.
    """

    def __init__(self, compiled: Any) -> None:
        self._request = compiled.create_infer_request()
        self._lock = threading.Lock()

    def run(self, output_names: None, input_feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self._lock:
            result = self._request.infer(input_feed)  # outputs are copies (share_outputs=False)
            return [np.asarray(result[0])]


def compile_tower(path: Path, precision: str, blob_cache: Path) -> OpenVinoSession:
    """Compile ``path`` for this CPU; compiled blobs are cached (a warm start skips the 5-12 s).

    Threads as for ONNX Runtime: the cores torch was given. Pinning is off, because other
    processes (PostgreSQL, a second API worker) share those cores and a pinned pool waits
    for a core that is busy instead of taking one that is free.
    """
    import openvino as ov

    core = ov.Core()
    config = {
        "INFERENCE_PRECISION_HINT": precision,
        "INFERENCE_NUM_THREADS": torch.get_num_threads(),
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
        "ENABLE_CPU_PINNING": False,
        "CACHE_DIR": str(blob_cache),
    }
    return OpenVinoSession(core.compile_model(str(path), "CPU", config))


def build_openvino(base: ClipEncoder, runtime: str, cache_dir: Path) -> OnnxClipEncoder:
    """``base`` with both forward passes on OpenVINO ``runtime``; raises when it cannot serve."""
    if runtime not in PRECISION:
        raise ValueError(f"unknown OpenVINO runtime {runtime!r}; use one of {', '.join(PRECISION)}")
    probe = prepare_probe(base, cache_dir)
    return probe.encoder(
        base, image=openvino_image_tower(probe, runtime), text=openvino_text_tower(probe, runtime)
    )


def openvino_image_tower(probe: Probe, runtime: str) -> Tower:
    """The image tower compiled for ``runtime`` (its own int8 file for ``openvino-int8``)."""
    return select_tower(
        probe.folder,
        "visual",
        [runtime],
        probe.export_visual,
        quantize_blockwise_int8,
        probe.image_parity,
        open_session=_opener(probe, runtime),
        int8_name="int8-blockwise",
        names=_names(runtime),
        runtime_tag=f".{runtime}",
    )


def openvino_text_tower(probe: Probe, runtime: str) -> Tower:
    """The text tower compiled for ``runtime``; ``openvino-int8`` falls back to fp32 weights."""
    int8, fp32 = _names(runtime)
    return select_tower(
        probe.folder,
        "text",
        [int8, fp32] if runtime == "openvino-int8" else [fp32],
        probe.export_text,
        quantize_blockwise_int8,  # the same file as ONNX Runtime's int8 text tower
        probe.text_parity,
        open_session=_opener(probe, runtime),
        names=(int8, fp32),
        runtime_tag=f".{runtime}",
    )


def _names(runtime: str) -> tuple[str, str]:
    """What select_tower calls the int8 and fp32 files of ``runtime`` (bf16 has no int8 file)."""
    return ("openvino-int8", "openvino") if runtime != "openvino-bf16" else ("-", runtime)


def _opener(probe: Probe, runtime: str) -> Callable[[Path], OpenVinoSession]:
    import openvino  # noqa: F401 -- fail here, with the reason logged, if it is missing

    blobs = probe.folder / "openvino-blobs"
    return lambda path: compile_tower(path, PRECISION[runtime], blobs)
