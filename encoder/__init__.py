"""Image and text encoders for Lookalike: CLIP (primary) and MobileNetV2 (fallback).

Everything outside this package talks to encoders through :class:`encoder.base.Encoder`,
so the API never cares whether vectors come from an in-process model or the encoder service.
"""
