"""Catalog rows for the search tests: embedding-like vectors, COPYed straight into the table."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from sqlalchemy import text

from api.db.engine import Database


def clustered_unit_vectors(rng: np.random.Generator, count: int, dim: int = 512) -> np.ndarray:
    """Unit vectors near a 16-dimensional subspace, like real embeddings (isotropic 512-d noise
    would be a worst case no ANN index is built for)."""
    basis = rng.normal(size=(16, dim)).astype(np.float32)
    vectors = rng.normal(size=(count, 16)).astype(np.float32) @ basis
    vectors += rng.normal(scale=0.05, size=vectors.shape).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def vector_text(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.6f}" for x in vector) + "]"


def copy_products(database: Database, columns: str, rows: Iterable[tuple[object, ...]]) -> None:
    """``COPY products (<columns>)`` the rows, then ANALYZE so the planner sees the real sizes."""
    with database.engine.begin() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        with raw.cursor() as cursor, cursor.copy(f"COPY products ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.execute(text("ANALYZE products"))


def copy_dresses_and_hats(database: Database, seed: int) -> np.ndarray:
    """300 products with CLIP vectors, S0-S199 "dress" and S200-S299 "hat"; returns the vectors."""
    vectors = clustered_unit_vectors(np.random.default_rng(seed), 300)
    copy_products(
        database,
        "sku, name, category, image_embedding",
        (
            (f"S{i}", f"item {i}", "dress" if i < 200 else "hat", vector_text(v))
            for i, v in enumerate(vectors)
        ),
    )
    return vectors
