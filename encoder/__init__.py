"""Image and text encoders for Lookalike: CLIP (primary) and MobileNetV2 (fallback).

Everything outside this package talks to encoders through :class:`encoder.base.Encoder`,
so the API never cares whether vectors come from an in-process model or the encoder service.
"""

import os

# One process here runs torch (MobileNetV2, preprocessing) and ONNX Runtime (CLIP) on the
# same few cores. PyTorch's OpenMP workers busy-wait ~300,000 spins after every parallel
# op by default; on 2 cores that steals a whole core from the ONNX pass that follows,
# measured as 37 -> 27 ms for a CLIP image query and 69 -> 38 ms for MobileNetV2 + CLIP
# back to back. libgomp reads this once, when torch loads it, so it is set on import of
# this package, which every entry point imports before torch; a value in the environment wins.
#
# Not with LOOKALIKE_CLIP_RUNTIME=torch (issue 20): then every model is torch, one OpenMP pool,
# nothing to steal from, and the cap was what made our torch path slower than a plain open_clip
# call: each of a ViT-B/32 forward's ~150 parallel regions found its worker asleep, ~440 futex
# sleeps and wake-ups per batch-1 image (7 with libgomp's default spin), each a few tens of us
# on a virtual machine. The runtime is read from the environment or ./.env, as api.settings does.


def _clip_runtime_setting() -> str:
    value = os.environ.get("LOOKALIKE_CLIP_RUNTIME")
    if value is None:
        try:
            with open(".env", encoding="utf-8") as env_file:
                for line in env_file:
                    name, _, setting = line.strip().partition("=")
                    if name.strip() == "LOOKALIKE_CLIP_RUNTIME":
                        value = setting.strip().strip("'\"")
        except OSError:
            pass
    return (value or "auto").strip().lower()


if _clip_runtime_setting() != "torch":
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")
