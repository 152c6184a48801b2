"""Is the fallback worth serving? MobileNetV2 search over the real train split, judged on the test split."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from api.db.products import Embeddings, upsert_product, write_embeddings
from api.services.embedding import embed_images
from api.settings import Settings
from tests.api.conftest import ADMIN_TOKEN, running_api

BATCH = 64


def class_photos(dataset: Path, split: str) -> list[tuple[str, Path]]:
    return [(p.parent.name, p) for p in sorted((dataset / split).glob("*/*.jpg"))]


@pytest.mark.slow
def test_mobilenet_fallback_puts_the_right_class_first(
    create_database: Callable[[], str],
    make_settings: Callable[..., Settings],
    clothing_dataset: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    settings = make_settings(
        database_url=create_database(), admin_token=ADMIN_TOKEN, clip_random_weights=False
    )
    with running_api(settings) as (client, state):
        train = class_photos(clothing_dataset, "train")
        for start in range(0, len(train), BATCH):
            chunk = train[start : start + BATCH]
            results = embed_images(state.hub, [p.read_bytes() for _, p in chunk], settings.max_image_pixels)
            with state.database.engine.begin() as conn:
                for (label, photo), embedded in zip(chunk, results, strict=True):
                    assert isinstance(embedded, Embeddings) and embedded.clip is None
                    product_id, _ = upsert_product(
                        conn, state.catalog, f"{label}/{photo.stem}", {"name": photo.stem, "category": label}
                    )
                    write_embeddings(conn, state.catalog, product_id, embedded)

        test = class_photos(clothing_dataset, "test")
        correct = 0
        for label, photo in test:
            response = client.post(
                "/api/v1/search/image",
                files={"file": (photo.name, photo.read_bytes(), "image/jpeg")},
                data={"top_k": "1"},
            )
            body = response.json()
            assert body["mode"] == "mobilenet_fallback"
            correct += body["results"][0]["category"] == label
    accuracy = correct / len(test)
    print(
        f"\nmobilenet_fallback top-1 class match: {correct}/{len(test)} = {accuracy:.1%} ({len(train)} products)"
    )
    assert len(train) == 3068 and len(test) == 372
    assert accuracy >= 0.75
