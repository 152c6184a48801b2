"""``auto`` serves each CLIP tower on whichever runtime was fastest here, among those that pass parity."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from encoder import clip_auto
from encoder.clip_onnx import OnnxClipEncoder, Probe, Tower, onnx_image_tower, onnx_text_tower
from encoder.openvino_clip import openvino_image_tower, openvino_text_tower
from tests.encoder.runtimes import random_clip

pytestmark = pytest.mark.slow  # builds ONNX Runtime and OpenVINO towers: not in `make test-fast`

pytest.importorskip("openvino")
pytest.importorskip("onnxruntime")

DELAY_S = 0.05
"""Added to every pass of a handicapped tower: far more than any gap between the runtimes."""


class Slowed:
    """A real tower session that takes DELAY_S longer per pass."""

    def __init__(self, session: object) -> None:
        self._session = session

    def run(self, output_names: None, input_feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        time.sleep(DELAY_S)
        return self._session.run(output_names, input_feed)  # type: ignore[attr-defined]


def slowed(build: Callable[[Probe, str], Tower]) -> Callable[[Probe, str], Tower]:
    def build_slowed(probe: Probe, runtime: str) -> Tower:
        name, session = build(probe, runtime)
        return name, Slowed(session)

    return build_slowed


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("auto-cache")


def _auto(cache_dir: Path) -> OnnxClipEncoder:
    encoder = random_clip("auto", cache_dir)
    assert isinstance(encoder, OnnxClipEncoder), "auto fell back to torch"
    return encoder


def test_each_tower_serves_on_the_runtime_that_timed_fastest(cache_dir: Path) -> None:
    encoder = _auto(cache_dir)
    image, text = encoder.race["image"], encoder.race["text"]
    assert set(image) == {"onnx-int8", "openvino-bf16"}  # both pass parity on random weights
    assert set(text) == {"onnx-int8", "openvino-int8"}
    assert encoder.runtime == min(image, key=lambda name: sum(image[name]))
    assert encoder.text_runtime == min(text, key=lambda name: sum(text[name]))
    assert all(idle > 0 and busy > 0 for idle, busy in [*image.values(), *text.values()])


@pytest.mark.parametrize(
    ("handicapped", "image_winner", "text_winner"),
    [
        ("openvino", "onnx-int8", "onnx-int8"),
        ("onnx", "openvino-bf16", "openvino-int8"),
    ],
)
def test_a_slower_runtime_loses(
    handicapped: str, image_winner: str, text_winner: str, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = {"onnx": onnx_image_tower, "openvino": openvino_image_tower}
    text = {"onnx": onnx_text_tower, "openvino": openvino_text_tower}
    for builds in (image, text):
        builds[handicapped] = slowed(builds[handicapped])
    monkeypatch.setattr(
        clip_auto, "IMAGE_CONTENDERS", (("auto", image["onnx"]), ("openvino-bf16", image["openvino"]))
    )
    monkeypatch.setattr(
        clip_auto, "TEXT_CONTENDERS", (("auto", text["onnx"]), ("openvino-int8", text["openvino"]))
    )
    encoder = _auto(cache_dir)
    assert (encoder.runtime, encoder.text_runtime) == (image_winner, text_winner)
    loser = next(name for name in encoder.race["image"] if name != image_winner)
    assert min(encoder.race["image"][loser]) >= DELAY_S * 1000


def test_the_busy_core_is_another_process_and_is_gone_afterwards() -> None:
    with clip_auto.one_core_taken():
        spinners = _spinners()
        assert len(spinners) == 1
    assert _spinners() == []


def test_without_an_interpreter_to_start_it_times_idle_cores_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")  # an embedded Python has none
    with clip_auto.one_core_taken():
        assert _spinners() == []


def _spinners() -> list[int]:
    """Children of this process running the spinner's command line."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
            cmdline = (status.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields["PPid"]) == os.getpid() and b"while True: pass" in cmdline:
            found.append(int(status.parent.name))
    return found


def test_without_openvino_both_towers_run_on_onnx_runtime(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    encoder = _auto(cache_dir)
    assert (encoder.runtime, encoder.text_runtime) == ("onnx-int8", "onnx-int8")
    assert encoder.race == {"image": {}, "text": {}}  # one contender each: nothing was timed
