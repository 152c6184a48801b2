"""The duplicate finder on real photos: the 3,068 clothing train photos as a catalog, plus a JPEG
q=70 re-encode, a half-size copy and a 5%-cropped copy of 50 of them. Every planted copy must
come back in its original's cluster, and nothing else may: at the defaults, no two different
photos of the catalog are reported -- not even the reshoots of one hat or one vest that lie
closer in vector space than a half-size copy does (what the pixel check is for). The same
report is served by the CLI (JSON and CSV) and by the admin route, and the candidate SQL goes
through the HNSW index."""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import text

from api.db import migrate
from api.db.catalog import Catalog
from api.db.duplicates import neighbours_sql, neighbours_within
from api.db.engine import Database
from api.services import duplicates as service
from api.services.duplicates import DuplicateQuery, find_duplicates, stored_model_id
from api.services.encoders import RANDOM_SUFFIX
from api.settings import Settings
from encoder.images import decode_image
from encoder.mobilenet import MobileNetEncoder, load_mobilenet_encoder
from encoder.registry import MOBILENET_MODEL_ID
from tests.api.conftest import ADMIN, ADMIN_TOKEN, running_api
from tests.api.db.seeding import copy_products, vector_text
from tests.support import clean_env, run_cli

# Encoding 3,218 photos with MobileNetV2: 1-3 minutes on 2 shared cores.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
PLANTED = 50
VARIANTS = ("q70", "half", "crop5")
DATASET_DUPLICATE = frozenset(
    {
        "train/shorts/6075b4a5-5b1a-4ce0-aea0-9dbfbca7c35c.jpg",
        "train/skirt/637a56e4-7fa6-4f75-8859-0f8902461554.jpg",
    }
)
"""The dataset holds this one photo twice (filed as shorts and as skirt, re-encoded): a real duplicate."""
RESHOOTS = [
    (
        "train/hat/5e944547-5d37-4b1a-a544-64a250377e4d.jpg",
        "train/hat/79307c6e-cc11-422f-8b55-d01148cc94b3.jpg",
    ),
    (
        "train/outwear/62bb46a5-44de-48d9-8c95-3b11ef386471.jpg",
        "train/outwear/c258578a-6d97-4514-91b5-7d146893756f.jpg",
    ),
]
"""Two shots of one hat and of one vest: 0.058 and 0.079 apart in MobileNetV2 space, not copies."""


def variants(data: bytes) -> dict[str, bytes]:
    """The three ways a shop re-uploads one photo: recompressed, resized, lightly cropped."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    out = {}
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=70)
    out["q70"] = buffer.getvalue()
    half = image.resize((max(1, image.width // 2), max(1, image.height // 2)), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    half.save(buffer, "JPEG", quality=90)
    out["half"] = buffer.getvalue()
    dx, dy = round(image.width * 0.025), round(image.height * 0.025)  # 5% of each side, split evenly
    buffer = io.BytesIO()
    image.crop((dx, dy, image.width - dx, image.height - dy)).save(buffer, "JPEG", quality=90)
    out["crop5"] = buffer.getvalue()
    return out


def encode(mobilenet: MobileNetEncoder, blobs: list[bytes]) -> np.ndarray:
    """The product's own decode and encoder, batch by batch (what ingest would store)."""
    parts = []
    for start in range(0, len(blobs), 32):
        images = [
            decode_image(blob, max_pixels=40_000_000, target_size=mobilenet.decode_size)
            for blob in blobs[start : start + 32]
        ]
        parts.append(mobilenet.encode_images(images))
    return np.concatenate(parts)


@dataclass
class Planted:
    settings: Settings
    database: Database
    catalog: Catalog
    expected: set[frozenset[str]]
    """For each planted photo, the skus of it and its three copies; and the dataset's own duplicate."""


@pytest.fixture(scope="module")
def planted(
    create_database: Callable[[], str],
    make_settings: Callable[..., Settings],
    clothing_dataset: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Planted]:
    media = tmp_path_factory.mktemp("media")  # the dataset stays read-only; copies go beside it
    shutil.copytree(clothing_dataset / "train", media / "train")
    (media / "planted").mkdir()
    paths = sorted((media / "train").glob("*/*.jpg"))
    chosen = paths[:: len(paths) // PLANTED][:PLANTED]  # spread over every class
    rows: list[tuple[str, str, Path]] = [(str(p.relative_to(media)), p.parent.name, p) for p in paths]
    expected = {DATASET_DUPLICATE}
    for photo in chosen:
        original = str(photo.relative_to(media))
        group = {original}
        for kind, blob in variants(photo.read_bytes()).items():
            copy = media / "planted" / f"{photo.parent.name}-{photo.stem}-{kind}.jpg"
            copy.write_bytes(blob)
            rows.append((str(copy.relative_to(media)), photo.parent.name, copy))
            group.add(str(copy.relative_to(media)))
        expected.add(frozenset(group))

    mobilenet = load_mobilenet_encoder(device="cpu")
    vectors = encode(mobilenet, [path.read_bytes() for *_, path in rows])
    settings = make_settings(database_url=create_database(), admin_token=ADMIN_TOKEN, image_root=media)
    database = Database(settings)
    migrate.upgrade(database)
    # sku = image path: the report names photos directly.
    copy_products(
        database,
        "sku, name, category, image_url, fallback_embedding, fallback_model",
        (
            (sku, f"{category} {i}", category, sku, vector_text(vector), MOBILENET_MODEL_ID)
            for i, ((sku, category, _), vector) in enumerate(zip(rows, vectors, strict=True))
        ),
    )
    yield Planted(settings, database, Catalog.from_settings(settings), expected)
    database.dispose()


def clusters_of(report: dict[str, object]) -> set[frozenset[str]]:
    return {frozenset(p["sku"] for p in c["products"]) for c in report["clusters"]}  # type: ignore[index,union-attr]


def test_every_planted_copy_is_found_and_no_two_different_photos(planted: Planted) -> None:
    progress: list[tuple[str, int, int]] = []
    report = find_duplicates(
        planted.database,
        planted.catalog,
        planted.settings,
        DuplicateQuery(),
        progress=lambda stage, done, total: progress.append((stage, done, total)),
    )
    assert report.products_checked == 3068 + PLANTED * len(VARIANTS)
    assert progress[0] == ("vectors", 0, report.products_checked)
    assert ("vectors", report.products_checked, report.products_checked) in progress
    assert progress[-1][0] == "pixels" and progress[-1][1] == progress[-1][2]
    assert clusters_of(report.as_dict()) == planted.expected
    assert report.unreadable == {}
    # The candidates held more than the copies: similar products, turned away by their pixels.
    assert report.rejected_pairs > 0 and report.candidate_pairs > report.rejected_pairs
    worst = max(c.max_nearest for c in report.clusters)
    lowest = min(m.similarity for c in report.clusters for m in c.members if m.similarity is not None)
    print(
        f"\n{report.candidate_pairs} candidates, {report.rejected_pairs} rejected; copies up to "
        f"{worst:.4f} apart in vectors, pixel similarity >= {lowest:.4f}; {report.elapsed_s:.1f} s"
    )


def test_vectors_alone_cannot_tell_reshoots_from_copies(planted: Planted) -> None:
    """Why the pixel check exists: without it, the threshold that catches the half-size copies
    also reports two different shots of one hat and of one vest."""
    report = find_duplicates(
        planted.database, planted.catalog, planted.settings, DuplicateQuery(verify=False)
    )
    found = clusters_of(report.as_dict())
    for a, b in RESHOOTS:
        assert any({a, b} <= cluster for cluster in found), (a, b)
    assert report.min_similarity is None and all(
        m.similarity is None for c in report.clusters for m in c.members
    )


def test_threshold_and_category_narrow_the_report(planted: Planted) -> None:
    hats = find_duplicates(
        planted.database, planted.catalog, planted.settings, DuplicateQuery(category="hat")
    )
    assert hats.products_checked < 3068 and hats.clusters
    assert clusters_of(hats.as_dict()) == {g for g in planted.expected if all("hat" in sku for sku in g)}
    # A tight cut keeps only the re-encodes (<= 0.0004 apart; crops and half-size copies are
    # >= 0.0066 away): every cluster is then an original and its q=70 copy.
    tight = clusters_of(
        find_duplicates(
            planted.database, planted.catalog, planted.settings, DuplicateQuery(threshold=0.001)
        ).as_dict()
    )
    assert len(tight) == PLANTED
    assert all(len(c) == 2 and any("q70" in sku for sku in c) for c in tight)
    assert all(any(c <= g for g in planted.expected) for c in tight)


def test_the_neighbour_query_uses_the_hnsw_index(planted: Planted) -> None:
    params = {"model": MOBILENET_MODEL_ID, "category": None, "k": 11, "max_distance": 0.1}
    with planted.database.engine.connect() as conn:
        first = conn.execute(text("SELECT min(id) FROM products")).scalar_one()
        params |= {"first": first, "last": first + 9}
        sql = neighbours_sql(planted.catalog, "mobilenet", category=False)
        plan = "\n".join(row[0] for row in conn.execute(text("EXPLAIN " + sql), params))
        conn.rollback()
        found = neighbours_within(
            conn,
            planted.catalog,
            "mobilenet",
            MOBILENET_MODEL_ID,
            first=first,
            last=first + 9,
            k=10,
            max_distance=1.0,
        )
    assert planted.catalog.fallback_index in plan, plan
    assert found and all(n.a != n.b for n in found)
    assert {n.a for n in found} <= set(range(first, first + 10))


def test_cli_reports_json_and_csv(planted: Planted, tmp_path: Path) -> None:
    env = clean_env(
        DATABASE_URL=str(planted.settings.database_url),
        LOOKALIKE_DATA_DIR=str(planted.settings.data_dir),
        LOOKALIKE_IMAGE_ROOT=str(planted.settings.image_root),
    )
    done = run_cli("duplicates", "--format", "json", "--no-progress", env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert clusters_of(json.loads(done.stdout)) == planted.expected
    assert f"{PLANTED + 1} clusters, {PLANTED * 4 + 2} products" in done.stderr
    out = tmp_path / "dupes.csv"
    done = run_cli("duplicates", "--category", "shoes", "--output", str(out), env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert rows and {r["category"] for r in rows} == {"shoes"}
    assert all(int(r["size"]) == 4 for r in rows)
    assert "pixels" in done.stderr  # the progress bar went to stderr
    bad = run_cli("duplicates", "--threshold", "2", env=env)
    assert bad.returncode == 1 and "threshold must be a cosine distance" in bad.stderr


def test_admin_route(planted: Planted) -> None:
    with running_api(planted.settings) as (client, _state):
        assert client.get("/api/v1/duplicates").status_code == 401
        bad = client.get("/api/v1/duplicates", params={"threshold": "-1"}, headers=ADMIN)
        assert bad.status_code == 422 and bad.json()["error"]["code"]
        wrong = client.get("/api/v1/duplicates", params={"vectors": "sift"}, headers=ADMIN)
        assert wrong.status_code == 422 and "error" in wrong.json()
        body = client.get("/api/v1/duplicates", params={"category": "dress"}, headers=ADMIN).json()
        assert clusters_of(body) == {g for g in planted.expected if all("dress" in sku for sku in g)}
        assert body["vectors"] == "mobilenet" and body["threshold"] == service.DEFAULT_THRESHOLDS["mobilenet"]
        as_csv = client.get("/api/v1/duplicates", params={"format": "csv"}, headers=ADMIN)
        assert as_csv.headers["content-type"].startswith("text/csv")
        assert as_csv.text.splitlines()[0].startswith("cluster,size,id,sku")
        assert len(as_csv.text.splitlines()) == 1 + PLANTED * 4 + 2


def test_clip_vectors_are_looked_up_by_the_configured_model_id(planted: Planted) -> None:
    # Random-weight test vectors carry the same suffix the encoder hub writes.
    assert stored_model_id("clip", planted.settings) == planted.settings.clip_model + RANDOM_SUFFIX
    assert service.RANDOM_SUFFIX == RANDOM_SUFFIX
    # This catalog has no CLIP vectors at all: nothing to compare, an empty report.
    report = find_duplicates(
        planted.database, planted.catalog, planted.settings, DuplicateQuery(vectors="clip")
    )
    assert report.products_checked == 0 and report.clusters == []
