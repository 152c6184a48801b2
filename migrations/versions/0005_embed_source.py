"""Remember which image source each embedding (or embedding error) came from.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23

``embed_source`` holds the ``image_url`` value that was last embedded (or failed). When a shop
changes a product's ``image_url`` the two differ, and the background worker knows that row needs
work without re-downloading every image in the catalog. Derived data: downgrade drops it.
The CLIP column's dimension is deliberately not touched here (``lookalike reembed`` owns it).
"""

from __future__ import annotations

from alembic import op

from api.db.migrate import migration_catalog

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    catalog = migration_catalog()
    op.execute(f'ALTER TABLE {catalog.qualified} ADD COLUMN IF NOT EXISTS "embed_source" text')


def downgrade() -> None:
    catalog = migration_catalog()
    op.execute(f'ALTER TABLE {catalog.qualified} DROP COLUMN IF EXISTS "embed_source"')
