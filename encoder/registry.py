"""The CLIP models Lookalike knows, keyed by the name users put in ``LOOKALIKE_CLIP_MODEL``.

Names follow Immich's ``<arch>__<pretrained>`` convention so a model id is also a stable
value to store beside each embedding (``image_model`` column): if the configured name
changes, stored vectors are stale by simple string comparison.

Each spec also says which languages its text tower reads and what it needs beyond the
checkpoint: English-trained CLIPs tokenize with open_clip's built-in BPE (nothing to
download), while the multilingual ones (XLM-RoBERTa text towers, SigLIP's multilingual
Gemma/mT5 vocabularies) need the ``transformers`` package and a Hugging Face tokenizer.
Checking that up front is what turns a missing piece into one clear "unavailable" reason
before a model of a gigabyte is built (docs/models.md compares them for a shop).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Literal


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
    languages: Literal["en", "multilingual"] = "en"
    """What the text tower was trained to read: English captions, or captions in ~100 languages."""
    hf_tokenizer: str | None = None
    """Hugging Face tokenizer the text tower needs (None: open_clip's built-in BPE, no download)."""
    hf_text_model: str | None = None
    """Hugging Face model the text tower is built from (its config is fetched even for random weights)."""
    image_size: int = 224
    """Input resolution of the image tower (cost grows with its square)."""

    @property
    def needs_transformers(self) -> bool:
        return self.hf_tokenizer is not None or self.hf_text_model is not None


CLIP_MODELS: dict[str, ClipModelSpec] = {
    spec.name: spec
    for spec in (
        ClipModelSpec("ViT-B-32__laion2b_s34b_b79k", "ViT-B-32", "laion2b_s34b_b79k", 512),
        ClipModelSpec("ViT-B-32__openai", "ViT-B-32", "openai", 512),
        ClipModelSpec("ViT-L-14__openai", "ViT-L-14", "openai", 768),
        ClipModelSpec("ViT-L-14__laion2b_s32b_b82k", "ViT-L-14", "laion2b_s32b_b82k", 768),
        ClipModelSpec("marqo-fashionCLIP", "hf-hub:Marqo/marqo-fashionCLIP", None, 512),
        # Multilingual: the same image towers' class, text towers that read ~100 languages.
        ClipModelSpec(
            "xlm-roberta-base-ViT-B-32__laion5b_s13b_b90k",
            "xlm-roberta-base-ViT-B-32",
            "laion5b_s13b_b90k",
            512,
            languages="multilingual",
            hf_tokenizer="xlm-roberta-base",
            hf_text_model="xlm-roberta-base",
        ),
        ClipModelSpec(
            "xlm-roberta-large-ViT-H-14__frozen_laion5b_s13b_b90k",
            "xlm-roberta-large-ViT-H-14",
            "frozen_laion5b_s13b_b90k",
            1024,
            languages="multilingual",
            hf_tokenizer="xlm-roberta-large",
            hf_text_model="xlm-roberta-large",
        ),
        ClipModelSpec(
            "ViT-B-16-SigLIP2__webli",
            "ViT-B-16-SigLIP2",
            "webli",
            768,
            languages="multilingual",
            hf_tokenizer="timm/ViT-B-16-SigLIP2",
        ),
        ClipModelSpec(
            "ViT-B-16-SigLIP-i18n-256__webli",
            "ViT-B-16-SigLIP-i18n-256",
            "webli",
            768,
            languages="multilingual",
            hf_tokenizer="timm/ViT-B-16-SigLIP-i18n-256",
            image_size=256,
        ),
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


def missing_requirements(spec: ClipModelSpec) -> str | None:
    """Why ``spec`` cannot be built in this environment before any weights are looked at, or None.

    open_clip would otherwise fail deep inside model construction (XLM-R) or only after
    building a 1.5 GB SigLIP (its tokenizer), with an ImportError that names neither the
    model nor the fix.
    """
    if spec.needs_transformers and importlib.util.find_spec("transformers") is None:
        what = spec.hf_tokenizer or spec.hf_text_model
        return (
            f"tokenizer unavailable: {spec.name} reads text with the Hugging Face tokenizer {what!r}, "
            "which needs the `transformers` package (pip install transformers) and the tokenizer files "
            "from the Hugging Face Hub or a local open_clip folder (LOOKALIKE_CLIP_WEIGHTS_PATH)"
        )
    return None


def describe_models() -> str:
    """One line per model for ``--help`` and error messages: name, width, languages."""
    lines = []
    for spec in CLIP_MODELS.values():
        extra = f", tokenizer {spec.hf_tokenizer} (needs transformers)" if spec.hf_tokenizer else ""
        lines.append(f"  {spec.name}: {spec.dim}-d, {spec.languages}{extra}")
    return "\n".join(lines)
