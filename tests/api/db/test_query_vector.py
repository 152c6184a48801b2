"""Query vectors reach PostgreSQL in binary, bit-exact, on a connection that never registered pgvector."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pgvector.sqlalchemy import Vector
from sqlalchemy import Select, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DataError

from api.db.engine import Database
from api.db.query_vector import BinaryVector, query_vector_param


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
