"""The CLIP models Lookalike knows, keyed by the name users put in ``LOOKALIKE_CLIP_MODEL``.

Names follow Immich's ``<arch>__<pretrained>`` convention so a model id is also a stable
value to store beside each embedding (``image_model`` column): if the configured name
changes, stored vectors are stale by simple string comparison.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClipModelSpec:
    name: str
    """Registry key and the model id stored with each embedding."""
    arch: str
    """open_clip architecture name, or an ``hf-hub:`` reference."""
    pretrained: str | None
    """open_clip pretrained tag (None for hf-hub models, whose weights come with the reference)."""
    dim: int
    """Embedding width: the size of the ``image_embedding`` vector column."""


CLIP_MODELS: dict[str, ClipModelSpec] = {
    spec.name: spec
    for spec in (
        ClipModelSpec("ViT-B-32__laion2b_s34b_b79k", "ViT-B-32", "laion2b_s34b_b79k", 512),
        ClipModelSpec("ViT-B-32__openai", "ViT-B-32", "openai", 512),
        ClipModelSpec("ViT-L-14__openai", "ViT-L-14", "openai", 768),
        ClipModelSpec("ViT-L-14__laion2b_s32b_b82k", "ViT-L-14", "laion2b_s32b_b82k", 768),
        ClipModelSpec("marqo-fashionCLIP", "hf-hub:Marqo/marqo-fashionCLIP", None, 512),
    )
}

DEFAULT_CLIP_MODEL = "ViT-B-32__laion2b_s34b_b79k"

MOBILENET_MODEL_ID = "mobilenet_v2__imagenet1k_v1"
MOBILENET_DIM = 1280


def clip_spec(name: str) -> ClipModelSpec:
    """Look a model up, failing with the list of known names (a typo should not be a mystery)."""
    try:
        return CLIP_MODELS[name]
    except KeyError:
        known = ", ".join(sorted(CLIP_MODELS))
        raise ValueError(f"unknown CLIP model {name!r}; known models: {known}") from None
