"""Writing vectors into a populated catalog: with the HNSW indexes in place, and set aside.

    .venv/bin/python bench/vector_writes.py [--products 100000] [--rows 2048]

The write stage of ingestion, on its own: ``write_embedded`` (the worker's batched UPDATE of
both vectors) on ``--rows`` random products of a ``--products`` catalog that already has CLIP
and MobileNetV2 vectors, its two HNSW indexes and its per-category indexes. Timed twice: with
the indexes (every row is one insert into three HNSW graphs) and inside
``api.db.vector_indexes.deferred`` (indexes dropped, then built again; the build is timed too).
Vectors are synthetic (clustered unit vectors, like embeddings); the index work depends on
their shape, not on what they mean. Uses its own embedded database under ``--data-dir``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from api.db import migrate  # noqa: E402
from api.db.catalog import Catalog  # noqa: E402
from api.db.category_indexes import CategoryIndexPolicy, sync  # noqa: E402
from api.db.embedding_queue import Embedded, write_embedded  # noqa: E402
from api.db.engine import Database  # noqa: E402
from api.db.products import Embeddings  # noqa: E402
from api.db.vector_indexes import deferred, hnsw_indexes, index_ddl  # noqa: E402
from api.settings import Settings  # noqa: E402

CATEGORIES = (
    "dress",
    "hat",
    "longsleeve",
    "outwear",
    "pants",
    "shirt",
    "shoes",
    "shorts",
    "skirt",
    "t-shirt",
)
BATCH = 256


def clustered(rng: np.random.Generator, count: int, dim: int, positive: bool = False) -> np.ndarray:
    """Unit vectors near a 16-d subspace (MobileNetV2 features are post-ReLU: ``positive``)."""
    basis = rng.normal(size=(16, dim)).astype(np.float32)
    vectors = rng.normal(size=(count, 16)).astype(np.float32) @ basis
    vectors += rng.normal(scale=0.05, size=vectors.shape).astype(np.float32)
    if positive:
        vectors = np.abs(vectors)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def seed(database: Database, settings: Settings, catalog: Catalog, products: int) -> dict[str, float]:
    """COPY the catalog with both vectors, then build its indexes the way a first install would."""
    with database.engine.connect() as conn:
        if (conn.exec_driver_sql(f"SELECT count(*) FROM {catalog.qualified}").scalar() or 0) >= products:
            print(f"catalog already has {products} products")
            return {}
    from pgvector.psycopg import register_vector

    rng = np.random.default_rng(0)
    timings: dict[str, float] = {}
    with database.autocommit() as conn:
        for name in hnsw_indexes(conn, catalog):
            conn.exec_driver_sql(f'DROP INDEX "{catalog.schema}"."{name}"')
        conn.exec_driver_sql(f"TRUNCATE {catalog.qualified}")
        raw = conn.connection.dbapi_connection
        assert raw is not None
        register_vector(raw)
        started = time.perf_counter()
        columns = "sku, name, category, image_embedding, image_model, fallback_embedding, fallback_model"
        statement = f"COPY {catalog.qualified} ({columns}) FROM STDIN (FORMAT BINARY)"
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            copy.set_types(["text", "text", "text", "vector", "text", "vector", "text"])
            for start in range(0, products, 10_000):
                n = min(10_000, products - start)
                clip, fallback = clustered(rng, n, 512), clustered(rng, n, 1280, positive=True)
                for i in range(n):
                    row = start + i
                    category = CATEGORIES[row % len(CATEGORIES)]
                    copy.write_row(
                        (
                            f"W{row:07d}",
                            f"{category} {row}",
                            category,
                            clip[i],
                            "clip",
                            fallback[i],
                            "mobilenet",
                        )
                    )
        timings["copy_s"] = time.perf_counter() - started
        for column in ("image_embedding", "fallback_embedding"):
            started = time.perf_counter()
            conn.exec_driver_sql(index_ddl(catalog, column))
            timings[f"build_{column}_s"] = time.perf_counter() - started
        conn.exec_driver_sql(f"VACUUM ANALYZE {catalog.qualified}")
    started = time.perf_counter()
    report = sync(database, catalog, CategoryIndexPolicy.from_settings(settings))
    timings["build_category_s"] = time.perf_counter() - started
    print(f"seeded {products} products: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    print(report.render())
    return timings


def batches(database: Database, catalog: Catalog, rows: int, seed_: int) -> list[list[Embedded]]:
    rng = np.random.default_rng(seed_)
    with database.engine.connect() as conn:
        ids = [
            i
            for (i,) in conn.exec_driver_sql(
                f"SELECT id FROM {catalog.qualified} ORDER BY random() LIMIT {rows}"
            )
        ]
    clip, fallback = clustered(rng, len(ids), 512), clustered(rng, len(ids), 1280, positive=True)
    items = [
        Embedded(id=i, source=f"file:///bench/{i}.jpg",
                 embeddings=Embeddings(f"{i:064x}", clip[k], "clip", fallback[k], "mobilenet"))
        for k, i in enumerate(ids)
    ]  # fmt: skip
    return [items[k : k + BATCH] for k in range(0, len(items), BATCH)]


def write_all(database: Database, catalog: Catalog, work: list[list[Embedded]]) -> float:
    started = time.perf_counter()
    for batch in work:
        with database.engine.begin() as conn:
            write_embedded(conn, catalog, batch)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--rows", type=int, default=2048, help="rows written in each mode")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/lookalike-bench-writes"))
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench/results/vector_writes.json")
    args = parser.parse_args()

    settings = Settings(data_dir=args.data_dir, _env_file=None)  # type: ignore[call-arg]
    database = Database(settings)
    migrate.upgrade(database)
    catalog = Catalog.from_settings(settings)
    result: dict[str, object] = {
        "products": args.products,
        "rows": args.rows,
        "seed": seed(database, settings, catalog, args.products),
    }

    with_indexes = write_all(database, catalog, batches(database, catalog, args.rows, 1))
    with deferred(database, catalog) as deferral:
        without = write_all(database, catalog, batches(database, catalog, args.rows, 2))
    started = time.perf_counter()
    report = sync(database, catalog, CategoryIndexPolicy.from_settings(settings))
    category_s = time.perf_counter() - started
    rebuild_s = deferral.build_s + category_s
    result.update(
        with_indexes_rows_per_s=args.rows / with_indexes,
        deferred_rows_per_s=args.rows / without,
        rebuild_main_s=deferral.build_s,
        rebuild_category_s=category_s,
        category_indexes=len(report.created),
        break_even_share=rebuild_s / (with_indexes / args.rows - without / args.rows) / args.products,
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    )
    print(
        f"{args.rows} rows written into a {args.products}-product catalog:\n"
        f"  with HNSW indexes (main, fallback, category): {args.rows / with_indexes:8.0f} rows/s\n"
        f"  indexes set aside:                            {args.rows / without:8.0f} rows/s\n"
        f"  building them again: main + fallback {deferral.build_s:.1f} s, {len(report.created)} category "
        f"indexes {category_s:.1f} s\n"
        f"  setting them aside pays off once a load writes more than "
        f"{result['break_even_share']:.0%} of the catalog"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    database.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
