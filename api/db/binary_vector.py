"""Vectors go to PostgreSQL in pgvector's binary format, not as text: queries and stores alike.

pgvector's SQLAlchemy type sends a vector as the text ``'[0.0123, ...]'``: formatting the
floats in Python and parsing them again in the server was a visible part of a search and most
of a write (docs/benchmarks.md, "Writing vectors into a populated catalog"). The binary
form is the float32 array byte-swapped behind a 4-byte header, sent with no type oid and cast
in SQL (``CAST(:q AS vector(512))``), so the server types the parameter from the cast and reads
it with ``vector_recv``; no per-connection type lookup, and it works on any connection, before
or after migrations.

A ``halfvec`` column (``LOOKALIKE_VECTOR_STORAGE=halfvec``) is sent the same float32 bytes, cast
twice: ``CAST(CAST(:q AS vector(512)) AS halfvec(512))``. The inner cast makes the server read
the bytes with ``vector_recv`` (``halfvec_recv`` expects 16-bit floats); the outer one gives the
comparison the column's type, which is what lets the planner use the column's HNSW index.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import psycopg
from pgvector.sqlalchemy import HALFVEC, VECTOR
from psycopg.adapt import Dumper
from psycopg.pq import Format
from sqlalchemy import BindParameter, ColumnElement, bindparam, cast, literal, null
from sqlalchemy.types import TypeEngine, UserDefinedType


class BinaryVector:
    """A float32 vector marked for binary transfer."""

    __slots__ = ("values",)

    def __init__(self, values: np.ndarray) -> None:
        self.values = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)

    def to_binary(self) -> bytes:
        """pgvector's ``vector_recv`` layout: int16 dim, int16 unused, dim x float4, big-endian."""
        return struct.pack(">HH", self.values.size, 0) + self.values.astype(">f4").tobytes()


class _BinaryVectorDumper(Dumper):
    format = Format.BINARY
    # oid stays 0 ("unknown"): the server takes the type from the CAST around the parameter.

    def dump(self, obj: BinaryVector) -> bytes:
        return obj.to_binary()


psycopg.adapters.register_dumper(BinaryVector, _BinaryVectorDumper)


class _PassThrough(UserDefinedType[BinaryVector]):
    """Binds a :class:`BinaryVector` as is: the psycopg dumper above does the encoding."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "bytea"

    def bind_processor(self, dialect: Any) -> None:
        return None


def as_column_type(value: ColumnElement[Any], column_type: TypeEngine[Any]) -> ColumnElement[Any]:
    """A binary float32 vector cast to the column's type (through ``vector`` for a ``halfvec``)."""
    if isinstance(column_type, HALFVEC):
        return cast(cast(value, VECTOR(column_type.dim)), column_type)
    return cast(value, column_type)


def query_vector_param(column_type: TypeEngine[Any], name: str = "query_vector") -> ColumnElement[Any]:
    """``CAST(:name AS <column type>)``; the value comes later, ``.params(name=BinaryVector(v))``."""
    param: BindParameter[BinaryVector] = bindparam(name, type_=_PassThrough())
    return as_column_type(param, column_type)


def vector_value(values: np.ndarray | None, column_type: TypeEngine[Any]) -> ColumnElement[Any]:
    """A vector to store, as ``CAST(<binary> AS <column type>)``; None stores NULL."""
    if values is None:
        return null()
    return as_column_type(literal(BinaryVector(values), type_=_PassThrough()), column_type)


def binary_or_none(values: np.ndarray | None) -> BinaryVector | None:
    """For ``text()`` statements that spell the CAST themselves (``CAST(:v AS vector(n))``)."""
    return None if values is None else BinaryVector(values)
