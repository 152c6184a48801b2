"""CPU cost of the registry's CLIP models that build offline: ``.venv/bin/python bench/clip_models.py``.

Multilingual models cannot be *used* here (their tokenizers come from the Hugging Face Hub),
but an architecture whose towers open_clip builds without downloads can be timed with random
weights: the compute is the same as with the real ones. So each model is built with seeded
random weights and timed per photo (batch 1, an image tensor at the model's resolution, the
transforms excluded) and per phrase (batch 1, 8 token ids padded to the model's context
length, the tokenizer excluded). XLM-R text towers are Hugging Face models and are not built
here. Models are measured in alternating rounds so the machine's drift hits all of them alike.
"""

from __future__ import annotations

# First, before torch loads: the package sets the OpenMP spin policy libgomp reads at load.
import encoder  # noqa: F401

# isort: split
import argparse
import gc
import os
import statistics
import time
from datetime import UTC, datetime

import open_clip
import torch

from encoder.devices import configure_cpu_threads
from encoder.registry import CLIP_MODELS, DEFAULT_CLIP_MODEL

DEFAULT_MODELS = [DEFAULT_CLIP_MODEL, "ViT-B-16-SigLIP2__webli", "ViT-B-16-SigLIP-i18n-256__webli"]


def build(name: str) -> tuple[torch.nn.Module, int, int, int]:
    spec = CLIP_MODELS[name]
    config = open_clip.get_model_config(spec.arch)
    torch.manual_seed(0)
    model = open_clip.create_model(spec.arch, pretrained=None).eval()
    context = int(config["text_cfg"].get("context_length", 77))
    params = sum(p.numel() for p in model.parameters())
    return model, spec.image_size, context, params


def timed(fn: object, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    configure_cpu_threads()
    print(
        f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"open_clip {open_clip.__version__}, threads {torch.get_num_threads()}"
    )
    image_ms: dict[str, list[float]] = {m: [] for m in args.models}
    text_ms: dict[str, list[float]] = {m: [] for m in args.models}
    sizes: dict[str, str] = {}
    for round_ in range(args.rounds):
        order = args.models if round_ % 2 == 0 else list(reversed(args.models))
        for name in order:
            model, size, context, params = build(name)
            sizes[name] = f"{params / 1e6:.0f}M params, {size}px, context {context}"
            pixels = torch.rand(1, 3, size, size)
            tokens = torch.zeros(1, context, dtype=torch.long)
            tokens[0, :8] = torch.arange(1, 9)
            with torch.inference_mode():
                model.encode_image(pixels)  # warm-up
                model.encode_text(tokens)
                image_ms[name] += timed(lambda m=model, p=pixels: m.encode_image(p), args.repeats)
                text_ms[name] += timed(lambda m=model, t=tokens: m.encode_text(t), args.repeats)
            del model
            gc.collect()
    print("| model | size | photo p50 (range of round p50s) | phrase p50 (range) |")
    print("|---|---|---|---|")
    for name in args.models:

        def p50s(values: list[float]) -> str:
            rounds = [
                statistics.median(values[i : i + args.repeats]) for i in range(0, len(values), args.repeats)
            ]
            return f"{statistics.median(values):.1f} ms ({min(rounds):.1f}-{max(rounds):.1f})"

        print(f"| {name} | {sizes[name]} | {p50s(image_ms[name])} | {p50s(text_ms[name])} |")


if __name__ == "__main__":
    main()
