"""Vectors reach PostgreSQL in binary, bit-exact, on a connection that never registered pgvector."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pgvector.sqlalchemy import Vector
from sqlalchemy import Select, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DataError

from api.db.binary_vector import BinaryVector, query_vector_param
from api.db.catalog import Catalog
from api.db.embedding_queue import Embedded, write_embedded
from api.db.engine import Database
from api.db.products import Embeddings


def _select(vector: np.ndarray) -> Select[Any]:
    return select(query_vector_param(Vector(512))).params(query_vector=BinaryVector(vector))


def test_binary_vectors_arrive_bit_exact(migrated_database: Database) -> None:
    vector = np.random.default_rng(7).normal(size=512).astype(np.float32)
    vector[:3] = [1e-38, -3.4e38, 0.1]  # extremes and a value text would round
    with migrated_database.engine.connect() as conn:
        stored = conn.execute(_select(vector)).scalar_one()
    assert np.array_equal(np.asarray(stored, dtype=np.float32), vector)


def test_a_wrong_dimension_is_the_servers_error_not_a_silent_cast(migrated_database: Database) -> None:
    with (
        migrated_database.engine.connect() as conn,
        pytest.raises(DataError, match="expected 512 dimensions"),
    ):
        conn.execute(_select(np.ones(3, dtype=np.float32))).scalar_one()


def test_the_statement_carries_a_cast_parameter_not_a_text_vector() -> None:
    statement = _select(np.ones(512, dtype=np.float32))
    assert "CAST(%(query_vector)s AS VECTOR(512))" in str(statement.compile(dialect=postgresql.dialect()))


def test_stored_vectors_arrive_bit_exact_from_both_writers(migrated_database: Database) -> None:
    """The worker's batch write and the API's product write both send binary, and lose nothing."""
    catalog = Catalog.from_settings(migrated_database.settings)
    rng = np.random.default_rng(11)
    clip, fallback = rng.normal(size=512).astype(np.float32), rng.random(1280).astype(np.float32)
    clip[:2] = [1e-38, -3.4e38]
    with migrated_database.engine.begin() as conn:
        ids = (
            conn.execute(text("INSERT INTO products (sku, name) VALUES ('a', 'a'), ('b', 'b') RETURNING id"))
            .scalars()
            .all()
        )
        write_embedded(
            conn, catalog, [Embedded(ids[0], "a.jpg", Embeddings("0" * 64, clip, "clip", fallback, "fb"))]
        )
        write_embedded(
            conn,
            catalog,
            [Embedded(ids[1], None, Embeddings("1" * 64, clip[::-1].copy(), "clip", fallback, "fb"))],
        )
        stored = conn.execute(
            text("SELECT image_embedding::real[], fallback_embedding::real[] FROM products ORDER BY sku")
        ).all()
    assert np.array_equal(np.asarray(stored[0][0], dtype=np.float32), clip)
    assert np.array_equal(np.asarray(stored[0][1], dtype=np.float32), fallback)
    assert np.array_equal(np.asarray(stored[1][0], dtype=np.float32), clip[::-1])
    assert np.array_equal(np.asarray(stored[1][1], dtype=np.float32), fallback)
