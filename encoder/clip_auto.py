"""``LOOKALIKE_CLIP_RUNTIME=auto``: each CLIP tower on the runtime that is fastest on this CPU.

Which runtime wins is a property of the CPU, not of the code: on an AMD EPYC (Zen 4) ONNX
Runtime's int8 image tower led OpenVINO's bf16 one, on a Xeon with AMX the order flips, and the
text tower's winner differs again (docs/benchmarks.md, issue 20). A table of CPU flags would be
wrong on the next CPU, so ``auto`` measures where it runs: every contender that passes the same
parity gate as the named runtimes (cosine >= 0.999 to torch fp32 on the probe) is timed on
batch-1 passes of the probe (what a search pays), alternately, and the fastest serves. The losers
are dropped; the timings are kept on the encoder (``race``) and logged.

Timed twice: on idle cores, and with one core taken by another process. A server shares its
cores (PostgreSQL, other requests), and the runtimes do not suffer alike: on the 2-core Xeon
OpenVINO's bf16 image tower was 5% faster idle and 35% slower beside one busy process
(docs/benchmarks.md, "sixth session"), so idle timings alone would choose the tower that serves
worse under load. The score is the sum of the two medians.

The contenders are the fastest correct variant of each runtime: ONNX Runtime int8 (fp32 where
int8 misses parity) for both towers; OpenVINO bf16 for images (AMX / AVX-512 BF16 matmuls; on a
CPU without them OpenVINO computes in fp32 and simply loses) and OpenVINO int8 weights for text
(fp32 where they miss parity). A runtime that cannot load is left out with its reason logged; when
none can, the caller falls back to torch as before.
"""

from __future__ import annotations

import logging
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from encoder.clip import ClipEncoder
from encoder.clip_onnx import (
    Lap,
    OnnxClipEncoder,
    Probe,
    Tower,
    onnx_image_tower,
    onnx_text_tower,
    prepare_probe,
    trim_tokens,
)
from encoder.errors import EncoderUnavailableError
from encoder.openvino_clip import openvino_image_tower, openvino_text_tower

log = logging.getLogger(__name__)

Contender = tuple[str, Callable[[Probe, str], Tower]]
"""The runtime asked for, and how to build that tower on it."""

IMAGE_CONTENDERS: tuple[Contender, ...] = (
    ("auto", onnx_image_tower),
    ("openvino-bf16", openvino_image_tower),
)
TEXT_CONTENDERS: tuple[Contender, ...] = (
    ("auto", onnx_text_tower),
    ("openvino-int8", openvino_text_tower),
)

WARMUP_PASSES = 2
"""Untimed passes first: OpenVINO and ONNX Runtime both allocate on their first runs."""
TIMED_ROUNDS = 7
"""Rounds of one pass per contender, alternated, so a burst of other work hits all of them."""


def build_auto(base: ClipEncoder, cache_dir: Path) -> OnnxClipEncoder:
    """``base`` with each forward pass on its fastest correct runtime here; raises when none serves."""
    probe = prepare_probe(base, cache_dir)
    image, image_laps = fastest(
        _contenders(probe, "visual", IMAGE_CONTENDERS), "pixels", probe.pixels[:1].numpy()
    )
    text, text_laps = fastest(
        _contenders(probe, "text", TEXT_CONTENDERS), "tokens", trim_tokens(probe.tokens[2:3]).numpy()
    )
    log.info("CLIP auto: image %s, text %s (batch-1 ms idle / beside a busy core: image %s; text %s)",
             image[0], text[0], _render(image_laps), _render(text_laps))  # fmt: skip
    return probe.encoder(base, image=image, text=text, race={"image": image_laps, "text": text_laps})


def fastest(towers: list[Tower], input_name: str, feed: np.ndarray) -> tuple[Tower, dict[str, Lap]]:
    """The tower with the lowest idle + busy median on ``feed``, and every tower's :data:`Lap`.

    One contender is served without timing it: there is nothing to choose.
    """
    if len(towers) == 1:
        return towers[0], {}
    for _ in range(WARMUP_PASSES):
        for _, session in towers:
            session.run(None, {input_name: feed})
    idle = _medians(towers, input_name, feed)
    with one_core_taken():
        busy = _medians(towers, input_name, feed)
    laps = {name: (idle[name], busy[name]) for name, _ in towers}
    return min(towers, key=lambda tower: sum(laps[tower[0]])), laps


def _medians(towers: list[Tower], input_name: str, feed: np.ndarray) -> dict[str, float]:
    passes: dict[str, list[float]] = {name: [] for name, _ in towers}
    for _ in range(TIMED_ROUNDS):
        for name, session in towers:
            started = time.perf_counter()
            session.run(None, {input_name: feed})
            passes[name].append((time.perf_counter() - started) * 1000)
    return {name: round(statistics.median(times), 2) for name, times in passes.items()}


@contextmanager
def one_core_taken() -> Iterator[None]:
    """Another process spinning on one core for the block, as PostgreSQL or a request would.

    A process rather than a thread: a Python thread would hold the GIL the timed thread needs
    back after each pass, and a native one would need a library of its own.
    """
    try:
        spinner = subprocess.Popen(
            [sys.executable, "-S", "-c", "while True: pass"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    except OSError as exc:  # no interpreter to start (an embedded Python): time on idle cores only
        log.info("CLIP auto: no busy-core timing (%s)", exc)
        yield
        return
    try:
        time.sleep(0.05)  # started and spinning before the first timed pass
        yield
    finally:
        spinner.kill()
        spinner.wait()


def _contenders(probe: Probe, tower: str, contenders: tuple[Contender, ...]) -> list[Tower]:
    """Every contender that builds and passes parity; raises with all the reasons when none does."""
    built: list[Tower] = []
    reasons: list[str] = []
    for runtime, build in contenders:
        try:
            built.append(build(probe, runtime))
        except Exception as exc:  # a runtime that cannot serve here is not a contender
            reasons.append(f"{runtime}: {exc}")
            log.info("CLIP auto: %s tower not on %s: %s", tower, runtime, exc)
    if not built:
        raise EncoderUnavailableError(f"no runtime serves the {tower} tower: " + "; ".join(reasons))
    return built


def _render(laps: dict[str, Lap]) -> str:
    return (
        ", ".join(f"{name} {idle:.1f} / {busy:.1f}" for name, (idle, busy) in laps.items()) or "one contender"
    )
