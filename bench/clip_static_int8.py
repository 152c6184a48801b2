"""Static int8 for the CLIP image tower (NNCF post-training quantisation on OpenVINO), against the gate.

    .venv/bin/pip install nncf==3.4.0   # not a project dependency: this is the only user
    .venv/bin/python bench/clip_static_int8.py [--calibration real|synthetic] [--photos 186]

Issue 20 asked for an image encode <= 15 ms; weights and activations both in int8 (AMX / VNNI
matmuls) is the one route known to get there on 2 cores. Anything that serves must match torch
fp32 to cosine >= 0.999 (``encoder.clip_onnx.PARITY_MIN_COSINE``), so this measures both: the
batch-1 time of the quantised tower beside OpenVINO's bf16 one, and the cosine of every test photo
against fp32. Calibration needs photos like the ones it will see: ``real`` takes 64 from the
dataset's train split (a shop's own photos, in a product), ``synthetic`` the probe-like colour
fields the encoder can make on its own. The test photos are the test split, every other one.
The exported graph comes from the encoder's own cache (run any CLIP runtime once first).
"""

from __future__ import annotations

# First, before torch loads: the package sets the OpenMP spin policy libgomp reads at load.
import encoder  # noqa: F401

# isort: split
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
from encoder.clip import load_clip_encoder  # noqa: E402
from encoder.clip_onnx import PARITY_MIN_COSINE, default_cache_dir  # noqa: E402
from encoder.registry import DEFAULT_CLIP_MODEL  # noqa: E402

DATASET = Path(os.environ.get("LOOKALIKE_DATASET_DIR", REPO_ROOT.parent / "shared/datasets/clothing-small"))


def synthetic(seed: int) -> Image.Image:
    rng = np.random.RandomState(seed)
    grid = rng.randint(3, 12)
    coarse = Image.fromarray(rng.randint(0, 256, (grid, grid, 3), dtype=np.uint8))
    smooth = np.asarray(
        coarse.resize([(400, 534), (534, 400), (256, 256)][seed % 3], Image.BICUBIC), np.int16
    )
    grain = rng.randint(-12, 13, smooth.shape, dtype=np.int16)
    return Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8))


def batch1_ms(compiled: object, feed: np.ndarray, repeats: int = 40) -> float:
    request = compiled.create_infer_request()  # type: ignore[attr-defined]
    for _ in range(5):
        request.infer({0: feed})
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        request.infer({0: feed})
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calibration", choices=("real", "synthetic"), default="real")
    parser.add_argument("--photos", type=int, default=186)
    args = parser.parse_args()
    import nncf
    import openvino as ov

    graphs = sorted(default_cache_dir().glob("*/visual-fp32.onnx"))
    if not graphs:
        raise SystemExit(f"no exported image tower under {default_cache_dir()}: run bench/encode.py once")
    core = ov.Core()
    fp32 = core.read_model(str(graphs[0]))
    clip = load_clip_encoder(DEFAULT_CLIP_MODEL, random_weights=True, device="cpu")

    def pixels(image: Image.Image) -> np.ndarray:
        """The encoder's own transforms (what a served photo gets), as a batch of one."""
        return clip.preprocess_images([image]).numpy()

    if args.calibration == "real":
        calibration = [
            pixels(Image.open(p).convert("RGB")) for p in sorted(DATASET.glob("train/*/*.jpg"))[::40][:64]
        ]
    else:
        calibration = [pixels(synthetic(seed)) for seed in range(64)]
    tests = [
        pixels(Image.open(p).convert("RGB")) for p in sorted(DATASET.glob("test/*/*.jpg"))[::2][: args.photos]
    ]
    reference = core.compile_model(fp32, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    want = [reference({0: t})[0][0] for t in tests]
    started = time.perf_counter()
    quantised = nncf.quantize(
        fp32, nncf.Dataset(calibration), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(calibration)
    )
    quantise_s = time.perf_counter() - started
    config = {"INFERENCE_NUM_THREADS": 2, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
    for name, model, precision in (("bf16 (openvino-bf16)", fp32, "bf16"), ("static int8", quantised, "f32")):
        compiled = core.compile_model(model, "CPU", {**config, "INFERENCE_PRECISION_HINT": precision})
        request = compiled.create_infer_request()
        got = [request.infer({0: t})[0][0] for t in tests]
        cosines = np.array(
            [g @ w / (np.linalg.norm(g) * np.linalg.norm(w)) for g, w in zip(got, want, strict=True)]
        )
        misses = int((cosines < PARITY_MIN_COSINE).sum())
        print(
            f"{name:22s} batch 1 p50 {batch1_ms(compiled, tests[0]):5.1f} ms | cosine to fp32 over {len(tests)} "
            f"photos: min {cosines.min():.5f}, mean {cosines.mean():.5f}, {misses} below {PARITY_MIN_COSINE}"
        )
    print(f"(calibration: {len(calibration)} {args.calibration} images, quantised in {quantise_s:.0f} s)")


if __name__ == "__main__":
    main()
