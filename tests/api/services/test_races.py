"""No false failures under concurrency, with real processes: two ingests of one folder at once
(they once shared `<sha>.partial` temp names: 104 and 93 false failures), and two processes
starting on one stopped embedded-PostgreSQL data directory (one died on postmaster.pid)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.support import LOOKALIKE, REPO_ROOT, clean_env

pytestmark = pytest.mark.slow  # runs concurrent ingests and processes: not in `make test-fast`

PHOTOS_PER_CLASS = 6
CLASSES = ("dress", "hat", "shoes", "pants", "skirt")


def test_two_concurrent_ingests_of_one_folder_report_no_failures(
    create_database: Callable[[], str], clothing_dataset: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"  # outside the media dir: each ingest copies the photos in by hash
    for name in CLASSES:
        (folder / name).mkdir(parents=True)
        for photo in sorted((clothing_dataset / "train" / name).glob("*.jpg"))[:PHOTOS_PER_CLASS]:
            shutil.copyfile(photo, folder / name / photo.name)
    database_url = create_database()
    env = clean_env(
        DATABASE_URL=database_url,
        LOOKALIKE_DATA_DIR=str(tmp_path / "data"),
        LOOKALIKE_CLIP_RANDOM_WEIGHTS="1",
        LOOKALIKE_CLIP_RUNTIME="torch",
        LOOKALIKE_BATCH_SIZE="4",
    )
    upgrade = subprocess.run(
        [*LOOKALIKE, "db", "upgrade"], env=env, cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert upgrade.returncode == 0, upgrade.stderr
    command = [*LOOKALIKE, "ingest", str(folder), "--category-from-folder", "--lanes", "1"]
    runs = [
        subprocess.Popen(
            command, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=600) for run in runs]
    for run, (stdout, stderr) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, stderr
        assert " 0 failed" in stdout, stdout
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT count(*) AS n, count(image_embedding) AS clip, count(fallback_embedding) AS fallback,"
                    " count(embed_error) AS failed FROM products"
                )
            ).one()
    finally:
        engine.dispose()
    total = len(CLASSES) * PHOTOS_PER_CLASS
    assert tuple(row) == (total, total, total, 0)
    uploads = tmp_path / "data" / "media" / "uploads"
    assert len(list(uploads.glob("*.jpg"))) == total and not list(uploads.glob("*.partial"))


STARTER = """
import sys, time
from pathlib import Path
from sqlalchemy import create_engine, text
from api.db.embedded import embedded_database_url
engine = create_engine(embedded_database_url(Path(sys.argv[1])))
with engine.connect() as conn:
    assert conn.execute(text("SELECT 1")).scalar() == 1
time.sleep(0.5)
engine.dispose()
print("ok")
"""


def test_two_processes_starting_on_one_stopped_data_dir_both_succeed(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = clean_env()
    for round_ in ("new data dir", "stopped data dir"):
        starters = [
            subprocess.Popen(
                [sys.executable, "-c", STARTER, str(data_dir)],
                env=env,
                cwd=REPO_ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        for starter in starters:
            stdout, stderr = starter.communicate(timeout=300)
            assert starter.returncode == 0 and stdout.strip() == "ok", (round_, stderr[-2000:])
    assert not (data_dir / "pgdata" / "postmaster.pid").exists()  # the last one out stopped it
