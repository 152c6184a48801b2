"""`reembed` to a 768-d model: the column and its HNSW index change in place, the old-width
worker stops writing CLIP vectors, migrations leave the new width alone, and a worker with the
new model fills the vectors (ViT-L-14 with random weights: slow on CPU, so a handful of rows)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from api.db import migrate
from api.db.catalog import Catalog
from api.db.clip_column import clip_column_dim, index_definition
from api.db.engine import Database
from api.errors import LookalikeError
from api.services.encoders import EncoderHub
from api.services.ingest.bulk import run_ingest
from api.services.ingest.reembed import reembed
from api.services.ingest.sources import folder_items
from api.services.ingest.worker import EmbeddingWorker
from api.settings import Settings

pytestmark = pytest.mark.slow
LARGE = "ViT-L-14__openai"


def test_reembed_to_768_changes_column_and_index_and_the_worker_refills(
    clothing_dataset: Path,
    create_database: Callable[[], str],
    make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    media = tmp_path / "media"
    for path in sorted((clothing_dataset / "test" / "skirt").glob("*.jpg"))[:3]:
        (media / "few").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, media / "few" / path.name)
    url = create_database()
    small = make_settings(database_url=url, image_root=media)
    database = Database(small)
    migrate.upgrade(database)
    hub = EncoderHub(small)
    hub.load()
    worker = EmbeddingWorker(small, database, hub)
    assert run_ingest(worker, folder_items(media / "few"), show_progress=False).embedded == 3

    with pytest.raises(LookalikeError, match="unknown CLIP model"):
        reembed(database, "ViT-H-99__nope")
    change = reembed(database, LARGE)
    assert (change.old_dim, change.new_dim, change.column_changed) == (512, 768, True)
    assert LARGE in change.instructions()

    catalog = Catalog.from_settings(small)
    with database.engine.connect() as conn:
        assert clip_column_dim(conn, catalog) == 768
        assert "hnsw" in (index_definition(conn, catalog) or "")
        row = conn.execute(
            text(
                "SELECT count(image_embedding) AS clip, count(image_model) AS model, count(fallback_embedding) AS fb FROM products"
            )
        ).one()
    assert (row.clip, row.model, row.fb) == (0, 0, 3)  # MobileNetV2 vectors keep serving meanwhile

    # A process still configured for the old model must not write 512-d vectors into vector(768).
    assert worker.wanted().clip is None
    worker.close()
    hub.close()

    large = make_settings(database_url=url, image_root=media, clip_model=LARGE)
    large_db = Database(large)
    migrate.upgrade(large_db)  # already at head: nothing fights the new width
    migrate.downgrade(large_db, "0004")
    migrate.upgrade(large_db)
    with large_db.engine.connect() as conn:
        assert clip_column_dim(conn, Catalog.from_settings(large)) == 768

    large_hub = EncoderHub(large)
    large_hub.load()
    large_worker = EmbeddingWorker(large, large_db, large_hub)
    tally = large_worker.drain()
    assert tally.embedded == 3 and tally.failed == 0
    with large_db.engine.connect() as conn:
        dims = conn.execute(
            text("SELECT DISTINCT vector_dims(image_embedding), image_model FROM products")
        ).all()
    assert dims == [(768, f"{LARGE}@random")]
    large_worker.close()
    large_hub.close()
    large_db.dispose()
    database.dispose()
