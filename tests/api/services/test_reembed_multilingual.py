"""Switching to a multilingual model this machine cannot load (SigLIP 2, 768-d, whose tokenizer
comes from the Hugging Face Hub): ``lookalike reembed --model`` resizes the column and warns,
and the API then reports CLIP down with that reason and serves image and text queries through
its fallback modes -- never through random weights."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest

from api.db.catalog import Catalog
from api.db.clip_column import clip_column_dim
from api.db.engine import Database
from api.settings import Settings
from tests.api.conftest import ADMIN_TOKEN, b64, running_api
from tests.support import clean_env, run_cli

SIGLIP2 = "ViT-B-16-SigLIP2__webli"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("transformers") is not None,
    reason="transformers is installed: SigLIP 2 would fail later, on the tokenizer download",
)


def test_reembed_to_siglip2_resizes_then_search_falls_back_honestly(
    create_database: Callable[[], str], make_settings: Callable[..., Settings], clothing_dataset: Path
) -> None:
    url = create_database()
    photos = {
        f"{d.name}-0": sorted(d.glob("*.jpg"))[0]
        for d in sorted((clothing_dataset / "train").iterdir())
        if d.name in ("hat", "shoes", "dress")
    }
    before = make_settings(database_url=url, admin_token=ADMIN_TOKEN)
    with running_api(before) as (client, state):
        for sku, photo in photos.items():
            state.products.upsert(
                sku, {"name": f"{sku[:-2]} classic", "category": sku[:-2]}, photo.read_bytes()
            )
        assert client.post("/api/v1/search", json={"text": "hat"}).json()["mode"] == "clip_text"

    done = run_cli(
        "reembed",
        "--model",
        SIGLIP2,
        env=clean_env(DATABASE_URL=url, LOOKALIKE_DATA_DIR=str(before.data_dir)),
    )
    assert done.returncode == 0, done.stderr
    assert "vector(512) to vector(768)" in done.stdout
    assert "cannot load ViT-B-16-SigLIP2__webli" in done.stdout and "tokenizer unavailable" in done.stdout
    after = make_settings(database_url=url, admin_token=ADMIN_TOKEN, clip_model=SIGLIP2)
    database = Database(after)
    with database.engine.connect() as conn:
        assert clip_column_dim(conn, Catalog.from_settings(after)) == 768
    database.dispose()

    # Random weights were asked for (as in every test), and are still not served: the text
    # tower cannot tokenize without the real tokenizer, so CLIP is down with that reason.
    with running_api(after) as (client, _state):
        clip = client.get("/api/v1/health").json()["components"]["clip"]
        assert clip["status"] == "down" and "tokenizer unavailable" in clip["reason"]
        by_image = client.post("/api/v1/search", json={"image": b64(photos["shoes-0"].read_bytes())}).json()
        assert by_image["mode"] == "mobilenet_fallback" and by_image["results"][0]["sku"] == "shoes-0"
        assert "tokenizer unavailable" in by_image["fallback_reason"]
        by_text = client.post("/api/v1/search", json={"text": "hat"}).json()
        assert by_text["mode"] == "fulltext_fallback" and by_text["results"][0]["sku"] == "hat-0"


def test_reembed_help_lists_the_models_with_widths_and_languages() -> None:
    shown = run_cli("reembed", "--help", env=clean_env())
    assert shown.returncode == 0
    assert f"{SIGLIP2}: 768-d, multilingual" in shown.stdout
    assert "xlm-roberta-base-ViT-B-32__laion5b_s13b_b90k: 512-d, multilingual" in shown.stdout
