"""Shared fixtures: a real embedded PostgreSQL for the whole run, one fresh database per test
that needs isolation, and the real image dataset beside the repository."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from api.db import migrate
from api.db.embedded import embedded_database_url
from api.db.engine import Database, sqlalchemy_url
from api.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]


def dataset_dir() -> Path:
    """The clothing photos live in ../shared beside the repository; never inside it."""
    override = os.environ.get("LOOKALIKE_DATASET_DIR")
    return Path(override) if override else REPO_ROOT.parent / "shared" / "datasets" / "clothing-small"


@pytest.fixture(scope="session")
def clothing_dataset() -> Path:
    path = dataset_dir()
    if not (path / "train").is_dir():
        pytest.skip(f"clothing dataset not found at {path} (set LOOKALIKE_DATASET_DIR)")
    return path


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One embedded PostgreSQL 18 + pgvector server for the test session (or TEST_DATABASE_URL)."""
    external = os.environ.get("TEST_DATABASE_URL")
    if external:
        return sqlalchemy_url(external)
    return embedded_database_url(tmp_path_factory.mktemp("embedded-pg"))


@pytest.fixture(scope="session")
def make_settings(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Settings]:
    """Settings built explicitly, so a developer's LOOKALIKE_* environment cannot leak into tests."""
    data_dir = tmp_path_factory.mktemp("lookalike-data")

    def build(**overrides: object) -> Settings:
        # torch runtime: exact parity between catalog and query vectors keeps rankings of near-ties
        # stable; the ONNX/int8 path has its own parity tests (tests/encoder/test_clip_fast.py).
        values: dict[str, object] = {
            "data_dir": data_dir,
            "clip_random_weights": True,
            "clip_runtime": "torch",
            "_env_file": None,
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return build


@pytest.fixture(scope="session")
def create_database(server_url: str) -> Iterator[Callable[[], str]]:
    """Factory for empty databases on the session server, dropped at the end of the run."""
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    created: list[str] = []

    def create() -> str:
        name = f"test_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return make_url(server_url).set(database=name).render_as_string(hide_password=False)

    yield create
    with admin.connect() as conn:
        for name in created:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def empty_database(
    create_database: Callable[[], str], make_settings: Callable[..., Settings]
) -> Iterator[Database]:
    """A fresh database with nothing in it (not migrated)."""
    database = Database(make_settings(database_url=create_database()))
    yield database
    database.dispose()


@pytest.fixture
def migrated_database(empty_database: Database) -> Database:
    """A fresh database migrated to head, with an empty products table."""
    migrate.upgrade(empty_database)
    return empty_database
