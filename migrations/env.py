"""Alembic environment: same settings and database as the service, one migrator at a time.

Callers may pass ``settings`` and ``connection`` through ``config.attributes`` (that is what
``lookalike db upgrade`` and the tests do); plain ``alembic upgrade head`` reads the environment.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from api.db.catalog import Catalog
from api.db.catalog_check import check_catalog
from api.db.catalog_objects import sync
from api.db.engine import Database, ensure_pgvector
from api.db.migrate import MIGRATION_LOCK_KEY, VERSION_TABLE
from api.settings import Settings, get_settings

config = context.config


def run(connection: Connection, settings: Settings) -> None:
    catalog = Catalog.from_settings(settings)
    config.attributes["catalog"] = catalog
    ensure_pgvector(connection, "the configured database")
    # A mapping that does not fit the live table stops here, before any DDL, in one line.
    check_catalog(connection, catalog)
    connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
    try:
        context.configure(
            connection=connection,
            version_table=VERSION_TABLE,
            version_table_schema=settings.db_schema,
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        if config.attributes.get("sync_catalog_objects", context.get_revision_argument() == "head"):
            # Still under the migration lock: two processes starting at once rebuild nothing twice.
            sync(connection, catalog)
            connection.commit()
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
        connection.commit()


def main() -> None:
    if context.is_offline_mode():
        raise SystemExit("offline (--sql) migrations are not supported: run them against a database")
    settings: Settings = config.attributes.get("settings") or get_settings()
    connection: Connection | None = config.attributes.get("connection")
    if connection is not None:
        run(connection, settings)
        return
    database = Database(settings)
    try:
        with database.connect() as conn:
            run(conn, settings)
    finally:
        database.dispose()


main()
