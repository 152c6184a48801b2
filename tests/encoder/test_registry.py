"""The model registry against the installed open_clip: every name loads the architecture, tag,
width, tokenizer and resolution it claims, and a multilingual model that cannot get its
tokenizer here says so before anything is built -- random weights included."""

from __future__ import annotations

import importlib.util

import open_clip
import pytest

from api.settings import Settings
from encoder.clip import load_clip_encoder
from encoder.errors import EncoderUnavailableError
from encoder.registry import CLIP_MODELS, DEFAULT_CLIP_MODEL, clip_spec, describe_models, missing_requirements

MULTILINGUAL = [name for name, spec in CLIP_MODELS.items() if spec.languages == "multilingual"]
BUILT_IN = [name for name, spec in CLIP_MODELS.items() if not spec.arch.startswith("hf-hub:")]
HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None


@pytest.mark.parametrize("name", BUILT_IN)
def test_spec_matches_open_clip(name: str) -> None:
    spec = clip_spec(name)
    assert name == f"{spec.arch}__{spec.pretrained}"
    assert (spec.arch, spec.pretrained) in open_clip.list_pretrained()
    config = open_clip.get_model_config(spec.arch)
    assert config["embed_dim"] == spec.dim
    assert config["vision_cfg"]["image_size"] == spec.image_size
    text = config["text_cfg"]
    assert text.get("hf_tokenizer_name") == spec.hf_tokenizer
    assert text.get("hf_model_name") == spec.hf_text_model


def test_multilingual_models_are_registered_with_their_widths() -> None:
    widths = {name: clip_spec(name).dim for name in MULTILINGUAL}
    assert widths == {
        "xlm-roberta-base-ViT-B-32__laion5b_s13b_b90k": 512,
        "xlm-roberta-large-ViT-H-14__frozen_laion5b_s13b_b90k": 1024,
        "ViT-B-16-SigLIP2__webli": 768,
        "ViT-B-16-SigLIP-i18n-256__webli": 768,
    }
    assert all(clip_spec(name).needs_transformers for name in MULTILINGUAL)
    assert (
        clip_spec(DEFAULT_CLIP_MODEL).languages == "en"
        and not clip_spec(DEFAULT_CLIP_MODEL).needs_transformers
    )
    listing = describe_models()
    assert all(name in listing for name in CLIP_MODELS)


@pytest.mark.parametrize("name", MULTILINGUAL)
def test_settings_accept_multilingual_models_and_size_the_column(name: str) -> None:
    settings = Settings(clip_model=name, _env_file=None)  # type: ignore[call-arg]
    assert settings.clip_dim == clip_spec(name).dim


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="ViT-B-16-SigLIP2__webli"):
        clip_spec("ViT-B-16-SigLIP9__nope")


@pytest.mark.skipif(HAS_TRANSFORMERS, reason="transformers is installed: the tokenizer check passes")
@pytest.mark.parametrize("name", MULTILINGUAL)
def test_multilingual_model_without_its_tokenizer_is_unavailable_before_building(name: str) -> None:
    assert "tokenizer unavailable" in (missing_requirements(clip_spec(name)) or "")
    for random_weights in (True, False):  # random weights are no way around a missing tokenizer
        with pytest.raises(EncoderUnavailableError, match=r"tokenizer unavailable.*transformers"):
            # The registry's own message: raised before weights are looked up or a model is built.
            load_clip_encoder(name, random_weights=random_weights, device="cpu")


def test_english_models_need_nothing_beyond_open_clip() -> None:
    for name, spec in CLIP_MODELS.items():
        if spec.languages == "en":
            assert missing_requirements(spec) is None, name
