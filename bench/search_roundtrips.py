"""Where an unfiltered search step's time goes besides the index walk (issue 20, item 2 prototype).

``.venv/bin/python bench/search_roundtrips.py --rows 20000 --queries 300``

The API's search step is five round trips on one pooled connection: the pool's pre-ping, psycopg's
``BEGIN``, ``api.db.search._prepare``'s ``SET LOCAL``s, the statement, and the ``ROLLBACK`` that
ends ``Database.read()``. This measures each of them on the embedded server's Unix socket against
a table of clustered random 512-d vectors with an HNSW index, next to the server's own execution
time of the statement (``EXPLAIN ANALYZE``), and two ways to send the settings without a round
trip of their own:

- ``session``: settings applied once per connection (startup ``options``), the statement alone;
- ``set_config``: the settings as a one-time filter of the statement itself
  (``WHERE (SELECT set_config(...)) IS NOT NULL``), evaluated before the index scan's first tuple.

Self-contained (plain psycopg, its own embedded database under ``--data-dir``), so it runs whatever
shape ``api.db.catalog`` has; the round-trip costs do not depend on the catalog size, the walk does.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DIM = 512
SETTINGS = {
    "hnsw.ef_search": "64",
    "hnsw.iterative_scan": "relaxed_order",
    "hnsw.max_scan_tuples": "200000",
}


def clustered(rows: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(64, DIM)).astype(np.float32)
    base = centers[rng.integers(0, 64, rows)] + 0.6 * rng.normal(size=(rows, DIM)).astype(np.float32)
    query = centers[rng.integers(0, 64, queries)] + 0.6 * rng.normal(size=(queries, DIM)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    query /= np.linalg.norm(query, axis=1, keepdims=True)
    return base, query


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/lookalike-bench-roundtrips"))
    parser.add_argument(
        "--engines", action="store_true", help="also FAISS HNSW and qdrant-edge-py, same vectors"
    )
    args = parser.parse_args()

    import psycopg
    from pgvector.psycopg import register_vector

    from api.db.embedded import embedded_database_url

    dsn = embedded_database_url(args.data_dir).replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        exists = conn.execute("SELECT to_regclass('rt_bench') IS NOT NULL").fetchone()
        count = conn.execute("SELECT count(*) FROM rt_bench").fetchone()[0] if exists and exists[0] else 0
    base, queries = clustered(args.rows, args.queries)
    if count != args.rows:
        with psycopg.connect(dsn, autocommit=True) as conn:
            register_vector(conn)
            conn.execute("DROP TABLE IF EXISTS rt_bench")
            conn.execute(
                f"CREATE TABLE rt_bench (id bigint PRIMARY KEY, sku text, name text, category text, "
                f"price numeric(12,2), attributes jsonb, image_embedding vector({DIM}))"
            )
            with conn.cursor().copy(
                "COPY rt_bench (id, sku, image_embedding) FROM STDIN (FORMAT binary)"
            ) as copy:
                copy.set_types(["bigint", "text", "vector"])
                for i, vector in enumerate(base):
                    copy.write_row((i + 1, f"SKU-{i + 1}", vector))
            started = time.perf_counter()
            conn.execute("SET maintenance_work_mem = '512MB'")
            conn.execute("CREATE INDEX ON rt_bench USING hnsw (image_embedding vector_cosine_ops)")
            conn.execute("ANALYZE rt_bench")
            print(f"loaded {args.rows} rows, HNSW built in {time.perf_counter() - started:.1f} s")

    select = (
        "SELECT id, sku, name, category, price, attributes, 1 - (image_embedding <=> %(q)s) AS score "
        "FROM rt_bench WHERE image_embedding IS NOT NULL {extra}ORDER BY image_embedding <=> %(q)s LIMIT 10"
    )
    sets = "; ".join(f"SET LOCAL {k} = {v}" for k, v in SETTINGS.items()) + "; SET LOCAL enable_sort = off"
    set_config = " AND ".join(f"set_config('{k}', '{v}', true) IS NOT NULL" for k, v in SETTINGS.items())
    options = " ".join(f"-c {k}={v}" for k, v in SETTINGS.items())
    results: dict[str, list[float]] = {}

    def timed(name: str, seconds: float) -> None:
        results.setdefault(name, []).append(seconds * 1000)

    with (
        psycopg.connect(dsn) as api,
        psycopg.connect(dsn, options=options) as session,
        psycopg.connect(dsn) as inline,
    ):
        for conn in (api, session, inline):
            register_vector(conn)
        for _warm in range(2):
            for q in queries:
                # The API path, one step at a time.
                t0 = time.perf_counter()
                api.execute("SELECT 1")  # pool pre-ping (autocommit-like: ended below)
                api.rollback()
                t1 = time.perf_counter()
                api.execute(sets)  # psycopg sends BEGIN first: two round trips
                t2 = time.perf_counter()
                rows = api.execute(select.format(extra=""), {"q": q}, binary=True).fetchall()
                t3 = time.perf_counter()
                api.rollback()
                t4 = time.perf_counter()
                assert len(rows) == 10
                if _warm:
                    timed("api: pre-ping", t1 - t0)
                    timed("api: BEGIN + SET LOCALs", t2 - t1)
                    timed("api: statement + rows", t3 - t2)
                    timed("api: ROLLBACK", t4 - t3)
                    timed("api: total", t4 - t0)
                # Settings at connection start; the statement is the only round trip.
                t0 = time.perf_counter()
                rows = session.execute(select.format(extra=""), {"q": q}, binary=True).fetchall()
                session.rollback()
                if _warm:
                    timed("session settings: statement + ROLLBACK", time.perf_counter() - t0)
                # Settings inside the statement.
                t0 = time.perf_counter()
                rows = inline.execute(
                    select.format(extra=f"AND (SELECT {set_config}) "), {"q": q}, binary=True
                ).fetchall()
                inline.rollback()
                assert len(rows) == 10
                if _warm:
                    timed("set_config in statement: statement + ROLLBACK", time.perf_counter() - t0)
        with psycopg.connect(dsn, options=options) as explain:
            register_vector(explain)
            for q in queries:
                plan = explain.execute(
                    "EXPLAIN (ANALYZE, FORMAT JSON) " + select.format(extra=""), {"q": q}, binary=False
                ).fetchone()[0]
                results.setdefault("server: execution time", []).append(plan[0]["Execution Time"])
                results.setdefault("server: planning time", []).append(plan[0]["Planning Time"])
        # The inline settings really reach the scan: ef_search 1 without the iterative scan gives one row.
        probe = select.format(
            extra="AND (SELECT set_config('hnsw.ef_search', '1', true) IS NOT NULL "
            "AND set_config('hnsw.iterative_scan', 'off', true) IS NOT NULL) "
        )
        assert len(inline.execute(probe, {"q": queries[0]}).fetchall()) == 1
        inline.rollback()
        one = inline.execute(
            "EXPLAIN " + select.format(extra=f"AND (SELECT {set_config}) "), {"q": queries[0]}
        ).fetchall()
        print("plan with set_config:", " | ".join(r[0].strip() for r in one))

    if args.engines:
        with psycopg.connect(dsn, options=options) as conn:
            register_vector(conn)
            found = [
                [r[0] - 1 for r in conn.execute(select.format(extra=""), {"q": q}, binary=True).fetchall()]
                for q in queries
            ]
        truth = np.argsort(-(queries @ base.T), axis=1)[:, :10]
        print(
            f"pgvector HNSW (m 16, ef_construction 64, ef_search 64): recall@10 {_recall(found, truth):.4f}"
        )
        engines(base, queries, truth, results, args.data_dir)
    print(f"\n{args.rows} rows, {args.queries} queries, ms per query (p50 / p90 / min)")
    for name, values in results.items():
        print(f"{name:<48} {statistics.median(values):7.3f} {p(values, 90):7.3f} {min(values):7.3f}")


def _recall(found: list[list[int]], truth: np.ndarray) -> float:
    return sum(len(set(f) & set(t.tolist())) for f, t in zip(found, truth, strict=True)) / truth.size


def engines(
    base: np.ndarray, queries: np.ndarray, truth: np.ndarray, results: dict[str, list[float]], folder: Path
) -> None:
    """FAISS HNSW and an embedded Qdrant (qdrant-edge-py) on the same vectors, same graph parameters,
    in this process (no round trip at all: the floor a search step inside PostgreSQL is compared with)."""
    import faiss

    faiss.omp_set_num_threads(1)  # one query at a time, as a search step is
    index = faiss.IndexHNSWFlat(DIM, 16, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 64
    index.add(base)
    index.hnsw.efSearch = 64
    found = []
    for q in queries:
        t0 = time.perf_counter()
        _, ids = index.search(q[None], 10)
        results.setdefault("faiss HNSW (in process)", []).append((time.perf_counter() - t0) * 1000)
        found.append(ids[0].tolist())
    print(f"FAISS HNSW (M 16, efConstruction 64, efSearch 64): recall@10 {_recall(found, truth):.4f}")

    import shutil

    import qdrant_edge as qe

    path = folder / "qdrant-edge"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    shard = qe.EdgeShard.create(
        str(path),
        qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Cosine),
            hnsw_config=qe.HnswIndexConfig(m=16, ef_construct=64, full_scan_threshold=1),
            optimizers=qe.EdgeOptimizersConfig(indexing_threshold=1000),
        ),
    )
    for start in range(0, len(base), 2000):
        points = [qe.Point(i + 1, base[i].tolist()) for i in range(start, min(len(base), start + 2000))]
        shard.update(qe.UpdateOperation.upsert_points(points))
    started = time.perf_counter()
    shard.optimize()
    print(f"qdrant-edge: optimised (HNSW built) in {time.perf_counter() - started:.1f} s")
    found = []
    for q in queries:
        request = qe.QueryRequest(
            limit=10,
            query=qe.Query.Nearest(q.tolist()),
            params=qe.SearchParams(hnsw_ef=64),
            with_payload=False,
        )
        t0 = time.perf_counter()
        hits = shard.query(request)
        results.setdefault("qdrant-edge HNSW (in process)", []).append((time.perf_counter() - t0) * 1000)
        found.append([int(h.id) - 1 for h in hits])
    print(f"qdrant-edge HNSW (m 16, ef_construct 64, hnsw_ef 64): recall@10 {_recall(found, truth):.4f}")
    shard.close()


if __name__ == "__main__":
    main()
