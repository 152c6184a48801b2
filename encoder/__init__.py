"""Image and text encoders for Lookalike: CLIP (primary) and MobileNetV2 (fallback).

Everything outside this package talks to encoders through :class:`encoder.base.Encoder`,
so the API never cares whether vectors come from an in-process model or the encoder service.
"""

import os

# One process here runs torch (MobileNetV2, preprocessing) and ONNX Runtime (CLIP) on the
# same few cores. PyTorch's OpenMP workers busy-wait ~300,000 spins after every parallel
# op by default; on 2 cores that steals a whole core from the ONNX pass that follows
# (docs/benchmarks.md, "Threads that stopped stealing each other's cores"). libgomp reads this once, when torch loads it, so it is set on import of
# this package, which every entry point imports before torch; a value in the environment wins.
#
# It is also why LOOKALIKE_CLIP_RUNTIME=torch runs ~25% behind a plain open_clip process on an
# otherwise idle machine (issue 20): a ViT forward has ~150 parallel regions, and with the cap
# the second worker has gone to sleep before most of them (~440 futex wake-ups per batch-1
# image against 7 with libgomp's default spin). Lifting the cap for the torch runtime was
# tried and measured 2.6-6.3x slower with other work on the cores (docs/benchmarks.md), which is
# how a server runs (PostgreSQL, other requests), so the cap stays; a dedicated, otherwise
# idle machine running torch CLIP can export GOMP_SPINCOUNT=300000 to get that 25% back.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")
