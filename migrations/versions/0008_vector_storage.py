"""CLIP column storage: ``vector`` or ``halfvec`` as ``LOOKALIKE_VECTOR_STORAGE`` says.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

Upgrading converts ``image_embedding`` and its HNSW indexes to the configured storage in place
(vectors kept). After this revision every upgrade to head and every start keeps the column in
line with the setting (:func:`api.db.clip_column.sync_storage`, from
:mod:`api.db.catalog_objects`), so flipping the setting either way is one ``lookalike db
upgrade``. Downgrading returns the column to ``vector``, the only storage 0007 knows, and
rewrites the analyst functions for it.
"""

from __future__ import annotations

import dataclasses

from alembic import op

from api.db.catalog_objects import sync
from api.db.clip_column import sync_storage
from api.db.migrate import migration_catalog

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    catalog = migration_catalog()
    sync_storage(op.get_bind(), catalog)


def downgrade() -> None:
    catalog = migration_catalog()
    # The column back to vector, then the analyst functions rewritten for it.
    sync(op.get_bind(), dataclasses.replace(catalog, vector_storage="vector"))
