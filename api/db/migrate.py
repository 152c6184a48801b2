"""Run the alembic migrations programmatically, against a :class:`Database` we already hold."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from api.db.catalog import Catalog
from api.db.engine import Database
from api.db.vector_indexes import restore_missing

REPO_ROOT = Path(__file__).resolve().parents[2]
VERSION_TABLE = "lookalike_alembic_version"

log = logging.getLogger(__name__)


def alembic_config(database: Database) -> Config:
    config = Config(str(REPO_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    config.attributes["settings"] = database.settings
    return config


def head_revision() -> str:
    config = Config(str(REPO_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def upgrade(database: Database, revision: str = "head") -> None:
    """Migrate; at head, also build the vector indexes a bulk load that died left out."""
    _run(database, command.upgrade, revision)
    if revision == "head":
        built = restore_missing(database, Catalog.from_settings(database.settings))
        if built:
            log.warning("built HNSW indexes %s: a bulk load ended before it could", ", ".join(built))


def downgrade(database: Database, revision: str) -> None:
    _run(database, command.downgrade, revision)


def current_revision(database: Database) -> str | None:
    with database.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"version_table": VERSION_TABLE, "version_table_schema": database.settings.db_schema}
        )
        return context.get_current_revision()


def _run(database: Database, action: Callable[[Config, str], None], revision: str) -> None:
    config = alembic_config(database)
    with database.connect() as conn:
        config.attributes["connection"] = conn
        action(config, revision)
        conn.commit()
