"""Honest numbers: matches relative to the best hit, pages that end with the matches, and words
that still count in a photo + words search when CLIP is down."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.db.catalog import Catalog
from api.db.engine import Database
from api.db.search import VectorColumn, VectorQuery
from api.services import relevance
from api.settings import Settings
from tests.api.conftest import ADMIN_TOKEN, Api, b64, running_api
from tests.api.db.seeding import clustered_unit_vectors, copy_products, vector_text

COLOURS = ("Red", "Blue", "Green")


def pages(client: TestClient, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every page of a search, following next_offset until it ends."""
    out = []
    offset: int | None = 0
    while offset is not None:
        response = client.post("/api/v1/search", json={**body, "offset": offset})
        assert response.status_code == 200, response.text
        out.append(response.json())
        offset = out[-1]["next_offset"]
        assert len(out) < 50, "the pages never end"
    return out


def test_matches_are_relative_to_the_best_hit_and_the_list_ends(api: Api) -> None:
    listed = pages(api.client, {"image": b64(api.image("dress-1")), "top_k": 4})
    hits = [hit for page in listed for hit in page["results"]]
    assert hits[0]["sku"] == "dress-1" and hits[0]["match"] == 1.0
    matches = [hit["match"] for hit in hits]
    assert matches == sorted(matches, reverse=True) and all(0.3 <= m <= 1 for m in matches)
    # The raw score stays for API users.
    assert all(
        isinstance(hit["score"], float) and hit["similarity"] == round(hit["score"] * 100, 2) for hit in hits
    )
    # The list ends with the matches, before the catalog does; the last page says so.
    assert 1 < len(hits) < len(api.products)
    assert listed[-1]["next_offset"] is None
    assert len({hit["sku"] for hit in hits}) == len(hits)
    # A later page measures its matches against the same best hit.
    second = api.client.post(
        "/api/v1/search", json={"image": b64(api.image("dress-1")), "top_k": 4, "offset": 4}
    )
    assert second.json()["results"] == listed[1]["results"] if len(listed) > 1 else True


def test_a_text_query_shows_its_best_hit_as_a_full_match(api: Api) -> None:
    body = api.client.post("/api/v1/search", json={"text": "a pair of shoes", "top_k": 5}).json()
    assert body["results"][0]["match"] == 1.0
    assert body["words_used"] is None


@pytest.fixture(scope="module")
def no_clip(
    create_database: Callable[[], str],
    make_settings: Callable[..., Settings],
    clothing_dataset: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[TestClient]:
    """CLIP without weights (fallback modes), and a catalog whose dresses carry colour words."""
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf")))
    settings = make_settings(
        database_url=create_database(), admin_token=ADMIN_TOKEN, clip_random_weights=False
    )
    try:
        with running_api(settings) as (client, state):
            for category in ("dress", "skirt", "shirt"):
                for i, photo in enumerate(sorted((clothing_dataset / "train" / category).glob("*.jpg"))[:9]):
                    colour = COLOURS[i % 3]
                    state.products.upsert(
                        f"{category}-{i}",
                        {"name": f"{colour} {category} {i}", "category": category},
                        photo.read_bytes(),
                    )
            yield client
    finally:
        mp.undo()


def test_words_rerank_the_photo_candidates_when_clip_is_down(
    no_clip: TestClient, clothing_dataset: Path
) -> None:
    photo = b64(sorted((clothing_dataset / "test" / "dress").glob("*.jpg"))[0].read_bytes())
    alone = no_clip.post("/api/v1/search", json={"image": photo, "top_k": 10}).json()
    assert alone["mode"] == "mobilenet_fallback" and alone["words_used"] is None

    def search(alpha: float) -> dict[str, Any]:
        body = no_clip.post(
            "/api/v1/search", json={"image": photo, "text": "green", "alpha": alpha, "top_k": 10}
        )
        assert body.status_code == 200, body.text
        return body.json()

    def green_places(results: list[dict[str, Any]]) -> list[int]:
        return [i for i, hit in enumerate(results) if hit["name"].startswith("Green")]

    mixed = search(0.5)
    assert mixed["mode"] == "mobilenet_fallback"
    assert "re-ranked" in mixed["words_used"]
    order = [hit["sku"] for hit in mixed["results"]]
    assert order != [hit["sku"] for hit in alone["results"]]
    # The words move products whose text has them up, and the slider sets how far.
    assert mixed["results"][0]["name"].startswith("Green")
    top = 5
    assert len([i for i in green_places(mixed["results"]) if i < top]) > len(
        [i for i in green_places(alone["results"]) if i < top]
    )
    words_only = search(0.0)
    assert all(hit["name"].startswith("Green") for hit in words_only["results"][:3])
    photo_only = search(1.0)
    assert [hit["sku"] for hit in photo_only["results"]] == [hit["sku"] for hit in alone["results"]]
    # Cached per slider position: a repeat with another alpha is not the first one's answer.
    assert search(0.5)["cached"] and [h["sku"] for h in search(0.5)["results"]] == order


def _sql_background(database: Database, vector: np.ndarray) -> float:
    """The background as the mean of per-row cosines, computed by PostgreSQL."""
    with database.engine.connect() as conn:
        return float(
            conn.execute(
                text(
                    "SELECT avg(1 - (image_embedding <=> CAST(:v AS vector))) FROM (SELECT image_embedding "
                    "FROM products WHERE image_embedding IS NOT NULL LIMIT :n) AS sample"
                ),
                {"v": vector_text(vector), "n": relevance.BACKGROUND_SAMPLE},
            ).scalar_one()
        )


def _background(database: Database, vector: np.ndarray) -> float | None:
    catalog = Catalog.from_settings(database.settings)
    with database.read() as conn:
        return relevance.background(conn, catalog, VectorQuery(VectorColumn.CLIP, vector))


def _copy(database: Database, vectors: np.ndarray, start: int) -> None:
    rows = ((f"S{start + i}", f"item {i}", vector_text(v)) for i, v in enumerate(vectors))
    copy_products(database, "sku, name, image_embedding", rows)


def test_the_background_is_the_mean_cosine_to_the_sample_and_a_full_sample_is_read_once(
    migrated_database: Database,
) -> None:
    rng = np.random.default_rng(11)
    vectors = clustered_unit_vectors(rng, 400) * rng.uniform(0.5, 2.0, size=(400, 1)).astype(np.float32)
    query = clustered_unit_vectors(rng, 1)[0] * 3  # neither side needs unit length
    _copy(migrated_database, vectors[:100], 0)
    assert _background(migrated_database, query) == pytest.approx(
        _sql_background(migrated_database, query), abs=1e-5
    )
    _copy(migrated_database, vectors[100:], 100)  # a sample still filling up is read again
    full = _sql_background(migrated_database, query)
    assert _background(migrated_database, query) == pytest.approx(full, abs=1e-5)
    with migrated_database.begin() as conn:
        conn.execute(text("DELETE FROM products"))
    assert _background(migrated_database, query) == pytest.approx(full, abs=1e-5)  # reused for its TTL
