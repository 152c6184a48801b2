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
os.environ.setdefault("GOMP_SPINCOUNT", "10000")
