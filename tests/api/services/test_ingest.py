"""Folder ingest of the full train split (3,068 real photos), killed midway and resumed, then the
follow-ups that reuse that one expensive run: a re-run embeds nothing, an edited file re-embeds
exactly its product, two workers (and one worker's lanes) on 500 cleared rows embed each row
exactly once, and an error in one lane stops the others without losing a row."""

from __future__ import annotations

import itertools
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text

from api.db import migrate
from api.db.catalog import Catalog
from api.db.embedding_queue import ClaimedRow
from api.db.engine import Database
from api.db.vector_indexes import hnsw_indexes
from api.services.encoders import EncoderHub
from api.services.ingest.bulk import timed_ingest
from api.services.ingest.progress import BatchResult, Tally
from api.services.ingest.sources import folder_items
from api.services.ingest.worker import EmbeddingWorker
from api.settings import Settings
from tests.api.conftest import running_api
from tests.support import LOOKALIKE, REPO_ROOT, clean_env

# One module-scoped run embeds 3,068 photos: ~10-17 min on 2 shared CPU cores, beyond the default 900s.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2700)]
TRAIN_IMAGES = 3068


@dataclass
class TrainRun:
    settings: Settings
    database: Database
    hub: EncoderHub
    folder: Path
    embedded_before_kill: int
    indexes_after_kill: dict[str, bool]
    tally: Tally
    elapsed_s: float


@pytest.fixture(scope="module")
def hub(make_settings: Callable[..., Settings]) -> Iterator[EncoderHub]:
    hub = EncoderHub(make_settings(clip_runtime="auto"))
    hub.load()
    yield hub
    hub.close()


def embedded_count(database: Database) -> int:
    with database.engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM products WHERE image_embedding IS NOT NULL AND embedded_at IS NOT NULL"
                )
            ).scalar()
            or 0
        )


@pytest.fixture(scope="module")
def train_run(
    tmp_path_factory: pytest.TempPathFactory,
    create_database: Callable[[], str],
    make_settings: Callable[..., Settings],
    clothing_dataset: Path,
    hub: EncoderHub,
) -> Iterator[TrainRun]:
    media = tmp_path_factory.mktemp("media")
    shutil.copytree(clothing_dataset / "train", media / "train")  # a copy: one file gets edited below
    # The production default runtime (ONNX, int8 image tower): the bulk of this test is encoding.
    settings = make_settings(database_url=create_database(), image_root=media, clip_runtime="auto")
    database = Database(settings)
    migrate.upgrade(database)

    # A real `lookalike ingest` process, SIGKILLed once it has written a few batches.
    env = clean_env(
        DATABASE_URL=str(settings.database_url),
        LOOKALIKE_DATA_DIR=str(settings.data_dir),
        LOOKALIKE_IMAGE_ROOT=str(media),
        LOOKALIKE_CLIP_RANDOM_WEIGHTS="true",
    )
    log = media.parent / "killed-ingest.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                *LOOKALIKE,
                "ingest",
                str(media / "train"),
                "--category-from-folder",
                "--no-progress",
                "--defer-indexes",
                "always",
            ],
            env=env,
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 300
            while embedded_count(database) < 2 * settings.batch_size:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the ingest process made no progress"
                time.sleep(0.5)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
    embedded_before_kill = embedded_count(database)
    with database.engine.connect() as conn:
        indexes_after_kill = hnsw_indexes(conn, Catalog.from_settings(settings))

    migrate.upgrade(database)  # as `lookalike ingest` starts: builds what the killed run had set aside
    worker = EmbeddingWorker(settings, database, hub, lanes=2)  # `lookalike ingest`'s default on a CPU
    tally, elapsed = timed_ingest(
        worker, folder_items(media / "train", category_from_folder=True), show_progress=False
    )
    print(f"\nresumed ingest: {tally.render(elapsed)}")
    worker.close()
    yield TrainRun(
        settings, database, hub, media / "train", embedded_before_kill, indexes_after_kill, tally, elapsed
    )
    database.dispose()


def test_killed_ingest_resumes_to_every_product_once_with_both_embeddings(train_run: TrainRun) -> None:
    assert 0 < train_run.embedded_before_kill < TRAIN_IMAGES
    # The killed run's committed batches were kept: the resumed run embedded only the rest.
    assert train_run.tally.embedded == TRAIN_IMAGES - train_run.embedded_before_kill
    assert train_run.tally.failed == 0
    with train_run.database.engine.connect() as conn:
        row = conn.execute(
            text(
                """
                SELECT count(*) AS n, count(DISTINCT sku) AS skus,
                       count(*) FILTER (WHERE image_embedding IS NOT NULL AND image_model = :clip
                                        AND fallback_embedding IS NOT NULL AND fallback_model = :fb) AS both,
                       count(*) FILTER (WHERE embed_error IS NOT NULL) AS failed,
                       count(DISTINCT category) AS categories
                FROM products
                """
            ),
            {"clip": train_run.hub.clip_model_id, "fb": train_run.hub.mobilenet_model_id},
        ).one()
        urls = conn.execute(text("SELECT image_url FROM products WHERE sku LIKE 'dress/%' LIMIT 1")).scalar()
    assert (row.n, row.skus, row.both, row.failed, row.categories) == (TRAIN_IMAGES,) * 3 + (0, 10)
    assert urls is not None and urls.startswith("train/dress/")  # inside the media dir: stored relative
    assert (train_run.settings.media_dir / urls).is_file()


def test_the_killed_load_set_its_indexes_aside_and_the_next_start_built_them(train_run: TrainRun) -> None:
    # The killed run wrote its vectors with the HNSW indexes dropped (--defer-indexes always).
    assert train_run.indexes_after_kill == {}
    catalog = Catalog.from_settings(train_run.settings)
    with train_run.database.engine.connect() as conn:
        indexes = hnsw_indexes(conn, catalog)
    assert indexes == {catalog.image_index: True, catalog.fallback_index: True}


def test_rerun_embeds_nothing_new(train_run: TrainRun) -> None:
    worker = EmbeddingWorker(train_run.settings, train_run.database, train_run.hub)
    tally, _ = timed_ingest(
        worker, folder_items(train_run.folder, category_from_folder=True), show_progress=False
    )
    worker.close()
    assert (tally.embedded, tally.unchanged, tally.failed) == (0, TRAIN_IMAGES, 0)


def test_changed_file_reembeds_exactly_that_product(train_run: TrainRun, clothing_dataset: Path) -> None:
    target = sorted((train_run.folder / "dress").glob("*.jpg"))[0]
    replacement = sorted((clothing_dataset / "validation" / "shoes").glob("*.jpg"))[0]
    shutil.copyfile(replacement, target)
    with train_run.database.engine.connect() as conn:
        before = dict(conn.execute(text("SELECT sku, embedded_at FROM products")).all())

    worker = EmbeddingWorker(train_run.settings, train_run.database, train_run.hub)
    tally, _ = timed_ingest(
        worker, folder_items(train_run.folder, category_from_folder=True), show_progress=False
    )
    worker.close()

    assert (tally.embedded, tally.unchanged, tally.failed) == (1, TRAIN_IMAGES - 1, 0)
    with train_run.database.engine.connect() as conn:
        after = dict(conn.execute(text("SELECT sku, embedded_at FROM products")).all())
    changed = [sku for sku in after if after[sku] != before[sku]]
    assert changed == [f"dress/{target.name}"]


def test_two_workers_embed_each_of_500_rows_exactly_once(train_run: TrainRun) -> None:
    with train_run.database.engine.begin() as conn:
        cleared = (
            conn.execute(
                text(
                    """
                UPDATE products SET image_embedding = NULL, image_model = NULL,
                       fallback_embedding = NULL, fallback_model = NULL, embedded_at = NULL
                WHERE id IN (SELECT id FROM products ORDER BY random() LIMIT 500) RETURNING id
                """
                )
            )
            .scalars()
            .all()
        )
    assert len(cleared) == 500

    databases = [Database(train_run.settings) for _ in range(2)]  # separate pools, like two processes
    workers = [EmbeddingWorker(train_run.settings, db, train_run.hub) for db in databases]
    embedded: list[list[int]] = [[], []]
    start = threading.Barrier(2)

    def run(index: int) -> None:
        start.wait()
        workers[index].drain(on_batch=lambda batch: embedded[index].extend(batch.embedded_ids))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert embedded[0] and embedded[1], "both workers should have taken part"
    assert not set(embedded[0]) & set(embedded[1])
    assert sorted(embedded[0] + embedded[1]) == sorted(cleared)  # each row once, no other row touched
    assert workers[0].progress()["pending"] == 0
    for worker, database in zip(workers, databases, strict=True):
        worker.close()
        database.dispose()


def clear_vectors(database: Database, rows: int) -> dict[int, np.ndarray]:
    """Take the vectors off ``rows`` random products (as a model switch would); their old CLIP vectors."""
    with database.engine.begin() as conn:
        cleared = conn.execute(
            text(
                """
                UPDATE products p SET image_embedding = NULL, image_model = NULL,
                       fallback_embedding = NULL, fallback_model = NULL, embedded_at = NULL
                FROM (SELECT id, image_embedding FROM products ORDER BY random() LIMIT :rows) old
                WHERE p.id = old.id RETURNING p.id, old.image_embedding::real[] AS image_embedding
                """
            ),
            {"rows": rows},
        ).all()
    return {row.id: np.asarray(row.image_embedding, dtype=np.float32) for row in cleared}


def clip_vectors(database: Database, ids: list[int]) -> dict[int, np.ndarray]:
    with database.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, image_embedding::real[] AS image_embedding FROM products WHERE id = ANY(:ids)"),
            {"ids": ids},
        ).all()
    return {row.id: np.asarray(row.image_embedding, dtype=np.float32) for row in rows}


def test_three_lanes_embed_each_of_500_rows_exactly_once_with_the_same_vectors(train_run: TrainRun) -> None:
    before = clear_vectors(train_run.database, 500)
    worker = EmbeddingWorker(train_run.settings, train_run.database, train_run.hub, lanes=3)
    embedded: list[int] = []
    lanes_seen: set[str] = set()
    inside = threading.Lock()

    def on_batch(batch: BatchResult) -> None:
        assert inside.acquire(blocking=False), "on_batch ran concurrently"
        try:
            embedded.extend(batch.embedded_ids)
            lanes_seen.add(threading.current_thread().name)
        finally:
            inside.release()

    tally = worker.drain(on_batch=on_batch)
    progress = worker.progress()
    worker.close()

    assert sorted(embedded) == sorted(before)  # each row once, no other row touched
    assert (tally.embedded, tally.failed, progress["pending"], progress["lanes"]) == (500, 0, 0, 3)
    assert len(lanes_seen) > 1, "the batches should have been spread over the lanes"
    after = clip_vectors(train_run.database, embedded)
    # Same photos, same models: only the int8 image tower's per-batch activation scales differ.
    cosines = [float(before[i] @ after[i]) for i in embedded]
    assert min(cosines) >= 0.999


def test_an_error_in_one_lane_stops_the_others_and_its_rows_stay_pending(train_run: TrainRun) -> None:
    before = clear_vectors(train_run.database, 320)
    worker = EmbeddingWorker(train_run.settings, train_run.database, train_run.hub, lanes=3)
    write = worker.embedder.embed_and_write
    calls = itertools.count()
    doomed: list[int] = []

    def write_or_fail(conn: Any, rows: list[ClaimedRow], *args: Any) -> BatchResult:
        if next(calls) == 2:  # the third batch: its rows were claimed and encoded, then this
            doomed.extend(row.id for row in rows)
            raise RuntimeError("disk full")
        return write(conn, rows, *args)

    worker.embedder.embed_and_write = write_or_fail  # type: ignore[method-assign]
    embedded: list[int] = []
    with pytest.raises(RuntimeError, match="disk full"):
        worker.drain(on_batch=lambda batch: embedded.extend(batch.embedded_ids))
    pending = worker.pending()
    worker.close()

    # The other lanes finished the batches in hand and stopped; nothing of the failed one was written.
    assert doomed and not set(doomed) & set(embedded)
    assert len(embedded) < len(before) - len(doomed), "the other lanes should have stopped early"
    assert pending == len(before) - len(embedded)
    with train_run.database.engine.connect() as conn:
        written = conn.execute(
            text("SELECT count(*) FROM products WHERE id = ANY(:ids) AND embedded_at IS NOT NULL"),
            {"ids": doomed},
        ).scalar()
    assert written == 0

    worker = EmbeddingWorker(train_run.settings, train_run.database, train_run.hub, lanes=3)
    tally = worker.drain()  # a retry picks the rest up, the failed batch included
    worker.close()
    assert tally.embedded == len(before) - len(embedded)


def test_mobilenet_fallback_over_the_ingested_train_split_finds_the_right_class(
    train_run: TrainRun, clothing_dataset: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Is the fallback worth serving? Each real test photo, searched with CLIP unavailable, against
    the 3,068 ingested train products: the first result should be of the photo's class."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # like this machine: real CLIP weights cannot be had
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    settings = train_run.settings.model_copy(update={"clip_random_weights": False})
    test_photos = [(p.parent.name, p) for p in sorted((clothing_dataset / "test").glob("*/*.jpg"))]
    correct = 0
    with running_api(settings) as (client, _):
        for label, photo in test_photos:
            response = client.post(
                "/api/v1/search/image",
                files={"file": (photo.name, photo.read_bytes(), "image/jpeg")},
                data={"top_k": "1"},
            )
            body = response.json()
            assert body["mode"] == "mobilenet_fallback", body
            correct += body["results"][0]["category"] == label
    accuracy = correct / len(test_photos)
    print(f"\nmobilenet_fallback top-1 class match: {correct}/{len(test_photos)} = {accuracy:.1%}")
    assert len(test_photos) == 372
    assert accuracy >= 0.75
