"""Shop catalogs: a product-page ``url`` field, accent folding, and mapping-dependent objects.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

Lookalike's own table gains ``url`` (the product's page, for shop front-ends); an attached shop
table gains nothing here (its fields are mapped). ``lookalike_unaccent`` is installed for
accent-insensitive full text (the identity where the server lacks ``unaccent``). The objects
whose SQL follows the mapping (full-text column, queue index, analyst functions, the NOTIFY
trigger) are then kept current on every upgrade by :mod:`api.db.catalog_objects`.
"""

from __future__ import annotations

from alembic import op

from api.db.catalog_objects import install_unaccent
from api.db.migrate import migration_catalog

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    catalog = migration_catalog()
    if not catalog.attached:
        op.execute(f'ALTER TABLE {catalog.qualified} ADD COLUMN IF NOT EXISTS "url" text')
    install_unaccent(op.get_bind(), catalog)


def downgrade() -> None:
    """Drops only what is derived: the trigger and its function. ``url`` may hold data a shop
    entered, so it stays, like every catalog column (see 0001)."""
    catalog = migration_catalog()
    op.execute(f'DROP TRIGGER IF EXISTS "{catalog.index("embed_notify")}" ON {catalog.qualified}')
