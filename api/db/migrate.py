"""Run the alembic migrations programmatically, against a :class:`Database` we already hold."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from api.db.engine import Database

REPO_ROOT = Path(__file__).resolve().parents[2]
VERSION_TABLE = "lookalike_alembic_version"


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
    _run(database, command.upgrade, revision)


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
