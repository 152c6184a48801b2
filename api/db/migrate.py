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

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
"""The Alembic scripts, shipped inside the package so an installed wheel can migrate. In a checkout
``api/db/migrations`` is a link to the repository's ``migrations/`` (the layout ``alembic.ini`` and
the ``alembic`` CLI use); a wheel carries the files themselves (package data, pyproject.toml)."""
VERSION_TABLE = "lookalike_alembic_version"
MIGRATION_LOCK_KEY = 0x4C4F4F4B  # "LOOK"
"""The advisory lock every schema change holds: several processes starting at once take turns
(migrations/env.py), and a CLIP model switch never runs its DDL beside a migration."""

log = logging.getLogger(__name__)


def migration_catalog() -> Catalog:
    """The catalog the running migration script works on (migrations/env.py puts it in the config)."""
    from alembic import context  # only meaningful inside a migration run

    catalog: Catalog = context.config.attributes["catalog"]
    return catalog


def _config() -> Config:
    """The same configuration ``alembic.ini`` gives the CLI, without needing the file (a wheel has none)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    return config


def alembic_config(database: Database) -> Config:
    config = _config()
    config.attributes["settings"] = database.settings
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def upgrade(database: Database, revision: str = "head") -> None:
    """Migrate; at head, also rebuild what follows the catalog mapping (api.db.catalog_objects)
    and build the vector indexes a bulk load that died left out."""
    _run(database, command.upgrade, revision, sync_catalog_objects=revision == "head")
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


def _run(
    database: Database,
    action: Callable[[Config, str], None],
    revision: str,
    *,
    sync_catalog_objects: bool = False,
) -> None:
    config = alembic_config(database)
    config.attributes["sync_catalog_objects"] = sync_catalog_objects
    with database.connect() as conn:
        config.attributes["connection"] = conn
        action(config, revision)
        conn.commit()
