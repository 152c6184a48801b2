"""HNSW inside PostgreSQL vs exact search vs FAISS: ``.venv/bin/python bench/vector_search.py --sizes 100000 1000000``.

Why it exists: the search target (issue 7) is recall@10 >= 0.98 at p50 <= 5 ms on 1M x 512 without a
filter and >= 0.95 with a 5% filter, always a full page. This measures exactly the statement the API
runs (``api.db.search._prepare`` + ``vector_statement`` over psycopg on the embedded server's Unix
socket), its server-side execution time (``EXPLAIN (ANALYZE, BUFFERS)``) so client overhead shows,
``vector`` vs a ``halfvec`` expression index, index build time and size, and FAISS HNSW with the same
graph parameters on the same vectors, so the cost of "inside PostgreSQL" is visible.

Resumable: each size gets its own table in a separate embedded database (``--data-dir``, never the
user's), and every finished step is saved in ``<data-dir>/results.json``; a rerun skips loaded tables,
built indexes and measured steps. ``--report`` prints the markdown tables from that file.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.db import search as search_module
from api.db.catalog import Catalog
from api.db.category_indexes import CategoryIndexPolicy, sync
from api.db.engine import Database
from api.db.search import Filters, Page, VectorColumn, VectorQuery
from api.settings import Settings
from bench.datasets import DIM, Dataset, exact_top_k, fashion_mnist_512, filtered_top_k

K = 10
M = 16
EF_CONSTRUCTION = 64
FAISS_EF = (10, 16, 24, 32, 40, 48, 64, 80, 100, 128, 200, 300)


# --------------------------------------------------------------------------------------------- results


class Results:
    """A JSON file of finished steps, so an interrupted 1M run resumes where it stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def put(self, key: str, value: Any) -> None:
        self.data[key] = value
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
        tmp.replace(self.path)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


# --------------------------------------------------------------------------------------------- loading


def table_name(size: int) -> str:
    return f"bench_{size}"


def catalog_for(size: int) -> Catalog:
    return Catalog(table=table_name(size), schema="public", clip_dim=DIM, fallback_dim=DIM)


def _copy_binary(data: Dataset, start: int, stop: int) -> bytes:
    """PostgreSQL binary COPY tuples for (id, category, image_embedding), built with numpy.

    Text COPY of 512 floats per row costs minutes of Python formatting at 1M rows; the binary
    layout (big-endian, pgvector's ``vector_recv``: int16 dim, int16 unused, float4[dim]) is one
    structured-array conversion per chunk.
    """
    row = np.dtype(
        [
            ("nfields", ">i2"),
            ("id_len", ">i4"),
            ("id", ">i8"),
            ("cat_len", ">i4"),
            ("cat", "S3"),
            ("vec_len", ">i4"),
            ("dim", ">i2"),
            ("unused", ">i2"),
            ("vec", ">f4", (DIM,)),
        ]
    )
    rows = np.zeros(stop - start, dtype=row)
    rows["nfields"] = 3
    rows["id_len"] = 8
    rows["id"] = np.arange(start + 1, stop + 1)
    rows["cat_len"] = 3
    rows["cat"] = np.char.mod("c%02d", data.categories[start:stop]).astype("S3")
    rows["vec_len"] = 4 + 4 * DIM
    rows["dim"] = DIM
    rows["vec"] = data.base[start:stop]
    return rows.tobytes()


def load_table(conn: Connection, data: Dataset, size: int) -> float:
    """Create the bench table with the catalog's read columns and COPY the vectors in; returns seconds."""
    table = table_name(size)
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    conn.exec_driver_sql(
        f"""CREATE TABLE {table} (
            id bigint PRIMARY KEY, sku text, name text, description text, category text,
            price numeric(12,2), currency text, attributes jsonb, image_url text,
            image_embedding vector({DIM}))"""
    )
    start = time.perf_counter()
    raw = conn.connection.dbapi_connection
    assert raw is not None
    with (
        raw.cursor() as cursor,
        cursor.copy(f"COPY {table} (id, category, image_embedding) FROM STDIN (FORMAT binary)") as copy,
    ):
        copy.write(b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8)
        for chunk in range(0, size, 50_000):
            copy.write(_copy_binary(data, chunk, min(size, chunk + 50_000)))
        copy.write(b"\xff\xff")
    conn.exec_driver_sql(f"CREATE INDEX {table}_category_idx ON {table} (category)")
    conn.exec_driver_sql(f"ANALYZE {table}")
    return time.perf_counter() - start


# --------------------------------------------------------------------------------------------- index build


INDEXES = {
    "vector": ("hnsw_vector", "USING hnsw (image_embedding vector_cosine_ops)"),
    "halfvec": ("hnsw_halfvec", f"USING hnsw ((image_embedding::halfvec({DIM})) halfvec_cosine_ops)"),
}


def _watch_progress(database: Database, stop: threading.Event, progress: dict[str, Any]) -> None:
    """Poll pg_stat_progress_create_index so a build cut off by the time bound still reports its rate."""
    with database.engine.connect() as conn:
        while not stop.wait(15):
            row = conn.execute(
                text(
                    "SELECT phase, tuples_done, tuples_total, blocks_done, blocks_total "
                    "FROM pg_stat_progress_create_index"
                )
            ).first()
            conn.rollback()
            if row is not None:
                progress.update(dict(row._mapping), at=time.perf_counter())
                log(f"  build progress: {dict(row._mapping)}")


def build_index(
    database: Database, size: int, kind: str, maintenance_work_mem: str, workers: int, timeout_min: float
) -> dict[str, Any]:
    table = table_name(size)
    name, using = INDEXES[kind]
    progress: dict[str, Any] = {}
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_progress, args=(database, stop, progress), daemon=True)
    with database.engine.connect() as conn:
        conn.exec_driver_sql(f"DROP INDEX IF EXISTS {table}_{name}")
        conn.exec_driver_sql(f"SET maintenance_work_mem = '{maintenance_work_mem}'")
        conn.exec_driver_sql(f"SET max_parallel_maintenance_workers = {workers}")
        conn.exec_driver_sql(f"SET statement_timeout = '{int(timeout_min * 60)}s'")
        conn.commit()
        watcher.start()
        start = time.perf_counter()
        try:
            conn.exec_driver_sql(
                f"CREATE INDEX {table}_{name} ON {table} {using} WITH (m = {M}, ef_construction = {EF_CONSTRUCTION})"
            )
            conn.commit()
            elapsed = time.perf_counter() - start
            result: dict[str, Any] = {"seconds": elapsed, "complete": True}
        except Exception as exc:  # statement_timeout: report the measured rate instead
            conn.rollback()
            elapsed = time.perf_counter() - start
            # pgvector leaves tuples_total at 0; the heap blocks scanned give the fraction done.
            done, total = progress.get("blocks_done") or 0, progress.get("blocks_total") or 0
            rate = done / max(1e-9, progress.get("at", start) - start)
            result = {
                "seconds": elapsed,
                "complete": False,
                "error": str(exc).splitlines()[0],
                "progress": {k: v for k, v in progress.items() if k != "at"},
                "extrapolated_seconds": total / rate if rate else None,
            }
        finally:
            stop.set()
            watcher.join()
        conn.exec_driver_sql("RESET statement_timeout")
        if result["complete"]:
            result["index_bytes"] = conn.exec_driver_sql(
                f"SELECT pg_relation_size('{table}_{name}')"
            ).scalar()
        conn.commit()
    result.update(maintenance_work_mem=maintenance_work_mem, parallel_workers=workers)
    return result


# --------------------------------------------------------------------------------------------- queries


ITERATIVE_SCAN: str | None = None  # None: what api.db.search sets; --iterative-scan overrides it


def _set_ef(conn: Connection, ef: int) -> None:
    extra = "" if ITERATIVE_SCAN is None else f"; SET LOCAL hnsw.iterative_scan = {ITERATIVE_SCAN}"
    conn.exec_driver_sql(f"SET LOCAL hnsw.ef_search = {ef}{extra}")


def _vector_statement(
    conn: Connection, catalog: Catalog, q: np.ndarray, category: str | None, ef: int
) -> Any:
    """The API's statement and SET LOCALs (``_prepare``), with ef_search overridden for the sweep."""
    filters = Filters(categories=(category,)) if category else Filters()
    stmt = search_module._prepare(conn, catalog, VectorQuery(VectorColumn.CLIP, q), filters, Page(top_k=K))
    _set_ef(conn, ef)
    return stmt


def _halfvec_sql(catalog: Catalog, category: str | None) -> str:
    """``vector_statement`` with the ordering on the halfvec expression, so the halfvec index serves it."""
    distance = f"(image_embedding::halfvec({DIM}) <=> %(q)s::halfvec({DIM}))"
    where = "image_embedding IS NOT NULL" + (" AND category IN (%(cat)s)" if category else "")
    return (
        "SELECT id, sku, name, description, category, price, currency, "
        "coalesce(attributes, '{}'::jsonb) AS attributes, image_url, "
        f"1 - {distance} AS score FROM {catalog.qualified} WHERE {where} "
        f"ORDER BY {distance} LIMIT {K} OFFSET 0"
    )


def _vec_text(q: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in q) + "]"


def run_query(
    conn: Connection, catalog: Catalog, kind: str, q: np.ndarray, category: str | None, ef: int
) -> list[int]:
    """One search exactly as a request pays it: transaction, SET LOCALs, statement, rows."""
    if kind == "vector":
        stmt = _vector_statement(conn, catalog, q, category, ef)
        return [row.id for row in conn.execute(stmt)]
    search_module._prepare(conn, catalog, VectorQuery(VectorColumn.CLIP, q), Filters(), Page(top_k=K))
    _set_ef(conn, ef)
    rows = conn.exec_driver_sql(_halfvec_sql(catalog, category), {"q": _vec_text(q), "cat": category})
    return [row.id for row in rows]


def explain_query(
    conn: Connection, catalog: Catalog, kind: str, q: np.ndarray, category: str | None, ef: int
) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the same statement under the same settings (server-side time)."""
    if kind == "vector":
        sql, params = search_module.driver_sql(conn, _vector_statement(conn, catalog, q, category, ef))
    else:
        search_module._prepare(conn, catalog, VectorQuery(VectorColumn.CLIP, q), Filters(), Page(top_k=K))
        _set_ef(conn, ef)
        sql, params = _halfvec_sql(catalog, category), {"q": _vec_text(q), "cat": category}
    rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + sql, params).all()
    return "\n".join(row[0] for row in rows)


def recall_at_k(found: list[list[int]], truth: np.ndarray) -> float:
    hits = [len(set(f) & {int(t) + 1 for t in row}) for f, row in zip(found, truth, strict=True)]
    return sum(hits) / (K * len(found))


def measure(
    database: Database,
    catalog: Catalog,
    kind: str,
    data: Dataset,
    truth: np.ndarray,
    filtered: bool,
    ef: int,
    repeats: int,
    explain_n: int,
) -> dict[str, Any]:
    """Recall, page fullness, client p50/p95 (median over repeats) and server execution time."""
    categories = [f"c{c:02d}" if filtered else None for c in data.query_categories]
    p50s, p95s, found = [], [], []
    with database.engine.connect() as conn:
        for repeat in range(repeats + 1):  # pass 0 warms the caches and is not timed
            times, found = [], []
            for q, cat in zip(data.queries, categories, strict=True):
                start = time.perf_counter()
                with conn.begin():
                    ids = run_query(conn, catalog, kind, q, cat, ef)
                times.append((time.perf_counter() - start) * 1000)
                found.append(ids)
            if repeat:
                p50s.append(percentile(times, 50))
                p95s.append(percentile(times, 95))
        server, plan = [], ""
        for q, cat in list(zip(data.queries, categories, strict=True))[:explain_n]:
            with conn.begin():
                plan = explain_query(conn, catalog, kind, q, cat, ef)
            server.append(float(re.search(r"Execution Time: ([\d.]+) ms", plan).group(1)))  # type: ignore[union-attr]
    return {
        "recall": recall_at_k(found, truth),
        "full_pages": sum(len(f) == K for f in found) / len(found),
        "client_p50_ms": statistics.median(p50s),
        "client_p95_ms": statistics.median(p95s),
        "client_p50_runs": p50s,
        "server_p50_ms": percentile(server, 50),
        "server_p95_ms": percentile(server, 95),
        "explained": len(server),
        "queries": len(found),
        "sample_plan": re.sub(r"'\[[^']*\]'", "'[...]'", plan),
    }


# --------------------------------------------------------------------------------------------- faiss


def bench_faiss(data: Dataset, truth: np.ndarray, ftruth: np.ndarray, threads: int) -> dict[str, Any]:
    """FAISS IndexHNSWFlat (inner product on unit vectors = cosine), same M/efConstruction as pgvector."""
    import faiss

    faiss.omp_set_num_threads(threads)
    index = faiss.IndexHNSWFlat(DIM, M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = EF_CONSTRUCTION
    start = time.perf_counter()
    index.add(data.base)
    result: dict[str, Any] = {"build_seconds": time.perf_counter() - start, "build_threads": threads}
    masks = {
        int(c): faiss.IDSelectorBitmap(np.packbits(data.categories == c, bitorder="little"))
        for c in np.unique(data.query_categories)
    }
    sweep = []
    for ef in FAISS_EF:
        row: dict[str, Any] = {"ef": ef}
        for filtered in (False, True):
            faiss.omp_set_num_threads(1)
            times, found = [], []
            for q, cat in zip(data.queries, data.query_categories, strict=True):
                params = faiss.SearchParametersHNSW(efSearch=ef)
                if filtered:
                    params.sel = masks[int(cat)]
                start = time.perf_counter()
                _, ids = index.search(q[None, :], K, params=params)
                times.append((time.perf_counter() - start) * 1000)
                found.append([int(i) + 1 for i in ids[0] if i >= 0])
            prefix = "filtered_" if filtered else ""
            row[prefix + "recall"] = recall_at_k(found, ftruth if filtered else truth)
            row[prefix + "p50_ms"] = percentile(times, 50)
            row[prefix + "p95_ms"] = percentile(times, 95)
            row[prefix + "full_pages"] = sum(len(f) == K for f in found) / len(found)
        for t in (1, 2):  # batch throughput: FAISS parallelises across queries, not within one
            faiss.omp_set_num_threads(t)
            index.hnsw.efSearch = ef
            start = time.perf_counter()
            index.search(data.queries, K)
            row[f"batch_qps_{t}t"] = len(data.queries) / (time.perf_counter() - start)
        log(f"  faiss ef={ef}: {row}")
        sweep.append(row)
    result["sweep"] = sweep
    return result


def bench_overhead(database: Database, data: Dataset, size: int) -> dict[str, Any]:
    """Where the client-side milliseconds go: vector-to-text, the SET LOCAL round trip, and the same
    query sent by bare psycopg with a binary vector parameter (the floor for this socket)."""
    from pgvector import Vector
    from pgvector.psycopg import register_vector

    catalog = catalog_for(size)
    queries = data.queries[:300]
    out: dict[str, Any] = {}
    start = time.perf_counter()
    for q in queries:
        Vector._to_db(q)
    out["vector_to_text_ms"] = (time.perf_counter() - start) * 1000 / len(queries)
    with database.engine.connect() as conn:
        times = []
        for q in queries:
            start = time.perf_counter()
            with conn.begin():
                search_module._prepare(
                    conn, catalog, VectorQuery(VectorColumn.CLIP, q), Filters(), Page(top_k=K)
                )
                conn.exec_driver_sql("SELECT 1").all()
            times.append((time.perf_counter() - start) * 1000)
        out["txn_sets_select1_p50_ms"] = percentile(times, 50)
        for _repeat in range(2):
            times = []
            for q in queries:
                start = time.perf_counter()
                with conn.begin():
                    run_query(conn, catalog, "vector", q, None, 40)
                times.append((time.perf_counter() - start) * 1000)
        out["api_path_ef40_p50_ms"] = percentile(times, 50)
        raw = conn.connection.dbapi_connection
        assert raw is not None
        register_vector(raw)
        sql = (
            "SELECT id, sku, name, description, category, price, currency, coalesce(attributes, '{}'::jsonb), "
            f"image_url, 1 - (image_embedding <=> %(q)s) FROM {table_name(size)} "
            "WHERE image_embedding IS NOT NULL ORDER BY image_embedding <=> %(q)s LIMIT 10"
        )
        for _repeat in range(2):
            times = []
            for q in queries:
                start = time.perf_counter()
                with raw.cursor() as cur:
                    cur.execute("SET LOCAL hnsw.ef_search = 40")
                    cur.execute(sql, {"q": q}, binary=True)
                    cur.fetchall()
                raw.commit()
                times.append((time.perf_counter() - start) * 1000)
        out["bare_psycopg_binary_ef40_p50_ms"] = percentile(times, 50)
    return out


# --------------------------------------------------------------------------------------------- main


@contextmanager
def step(results: Results, key: str, force: bool = False) -> Iterator[Callable[[Any], None]]:
    """Run a block only if ``key`` has no saved result; the block hands its result to ``save``."""
    if results.get(key) is not None and not force:
        log(f"skip {key} (done)")
        yield lambda value: None
        return
    log(f"run {key}")
    yield lambda value: results.put(key, value)


def run_size(args: argparse.Namespace, database: Database, results: Results, size: int) -> None:
    n_queries = args.queries
    data = fashion_mnist_512(size, n_queries)
    cache = args.data_dir / f"truth_{size}_{n_queries}.npz"
    if cache.exists():
        saved = np.load(cache)
        truth, ftruth = saved["truth"], saved["ftruth"]
    else:
        start = time.perf_counter()
        truth = exact_top_k(data.base, data.queries, K)
        ftruth = filtered_top_k(data, K)
        np.savez(cache, truth=truth, ftruth=ftruth)
        log(f"ground truth for {size}: {time.perf_counter() - start:.1f}s")
    catalog = catalog_for(size)

    with step(results, f"{size}/load") as save, database.engine.begin() as conn:
        if results.get(f"{size}/load") is None:
            seconds = load_table(conn, data, size)
            save({"seconds": seconds})
    with database.engine.connect() as conn:
        results.put(
            f"{size}/table_bytes",
            conn.exec_driver_sql(f"SELECT pg_table_size('{table_name(size)}')").scalar(),
        )

    if args.category_indexes:
        # What the server's background worker does: one partial HNSW index per qualifying category.
        policy = CategoryIndexPolicy(min_rows=1000, max_share=0.3, max_indexes=64)
        started = time.perf_counter()
        built = sync(database, catalog, policy)
        log(f"category indexes for {size}: {built.render()} in {time.perf_counter() - started:.0f}s")
        results.put(
            f"{size}/category_indexes{args.label}",
            {"seconds": time.perf_counter() - started, "created": len(built.created)},
        )

    # Priority order, so a run cut short still has the target numbers: vector, FAISS, then halfvec.
    if args.only:
        run_kind(args, database, results, catalog, data, truth, ftruth, size, args.only)
        return
    run_kind(args, database, results, catalog, data, truth, ftruth, size, "vector")
    if not args.skip_faiss:
        with step(results, f"{size}/faiss") as save:
            if results.get(f"{size}/faiss") is None:
                save(bench_faiss(data, truth, ftruth, threads=2))
    if not args.skip_halfvec:
        run_kind(args, database, results, catalog, data, truth, ftruth, size, "halfvec")


def run_kind(
    args: argparse.Namespace,
    database: Database,
    results: Results,
    catalog: Catalog,
    data: Dataset,
    truth: np.ndarray,
    ftruth: np.ndarray,
    size: int,
    kind: str,
) -> None:
    key = f"{size}/build/{kind}"
    if results.get(key) is None or not results.get(key).get("complete"):
        log(f"build {key}")
        built = build_index(
            database, size, kind, args.maintenance_work_mem, args.workers, args.build_timeout_min
        )
        results.put(key, built)
        log(f"  {key}: {built}")
    if not results.get(key).get("complete"):
        return
    for filtered in (False, True):
        for ef in args.ef:
            mkey = f"{size}/query{args.label}/{kind}/{'filter5' if filtered else 'nofilter'}/ef{ef}"
            with step(results, mkey) as save:
                if results.get(mkey) is None:
                    m = measure(
                        database,
                        catalog,
                        kind,
                        data,
                        ftruth if filtered else truth,
                        filtered,
                        ef,
                        args.repeats,
                        args.explain_queries,
                    )
                    save(m)
                    log(
                        f"  {mkey}: recall={m['recall']:.4f} full={m['full_pages']:.3f} "
                        f"client p50={m['client_p50_ms']:.2f} server p50={m['server_p50_ms']:.2f}"
                    )


def report(results: Results) -> str:
    """Markdown tables of everything in results.json."""
    out = []
    sizes = sorted({int(k.split("/")[0]) for k in results.data if k.split("/")[0].isdigit()})
    out.append("| rows | load (COPY) | index | build | index size | table (heap+TOAST, no indexes) |")
    out.append("|---|---|---|---|---|---|")
    for size in sizes:
        for kind in ("vector", "halfvec"):
            b = results.get(f"{size}/build/{kind}")
            if not b:
                continue
            build = (
                f"{b['seconds']:.0f} s"
                if b["complete"]
                else (
                    f"stopped at {b['seconds']:.0f} s, {b.get('progress', {}).get('tuples_done')} tuples; "
                    f"extrapolated {b.get('extrapolated_seconds') or 0:.0f} s"
                )
            )
            size_mb = f"{b['index_bytes'] / 2**20:.0f} MiB" if b.get("index_bytes") else "-"
            load = results.get(f"{size}/load") or {}
            table = results.get(f"{size}/table_bytes") or 0
            out.append(
                f"| {size:,} | {load.get('seconds', 0):.0f} s | {kind} | {build} | {size_mb} | {table / 2**20:.0f} MiB |"
            )
    out.append("")
    out.append(
        "| rows | storage | filter | ef_search | recall@10 | full pages | client p50 | client p95 | server p50 | server p95 |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    labels = sorted({k.split("/")[1][len("query") :] for k in results.data if "/query" in k})
    for label, size, kind, filt in itertools.product(
        labels, sizes, ("vector", "halfvec"), ("nofilter", "filter5")
    ):
        keys = [k for k in results.data if k.startswith(f"{size}/query{label}/{kind}/{filt}/")]
        for key in sorted(keys, key=lambda k: int(k.rsplit("ef", 1)[1])):
            m = results.get(key)
            out.append(
                f"| {size:,} | {kind}{label} | {'5%' if filt == 'filter5' else 'none'} | {key.rsplit('ef', 1)[1]} | "
                f"{m['recall']:.4f} | {m['full_pages'] * 100:.1f}% | {m['client_p50_ms']:.2f} ms | "
                f"{m['client_p95_ms']:.2f} ms | {m['server_p50_ms']:.2f} ms | {m['server_p95_ms']:.2f} ms |"
            )
    for size in sizes:
        f = results.get(f"{size}/faiss")
        if not f:
            continue
        out.append("")
        out.append(
            f"FAISS IndexHNSWFlat, {size:,} rows, M={M}, efConstruction={EF_CONSTRUCTION}: "
            f"build {f['build_seconds']:.0f} s on {f['build_threads']} threads."
        )
        out.append("")
        out.append(
            "| efSearch | recall@10 | p50 (1 thread, 1 query) | p95 | batch QPS 1 thread | batch QPS 2 threads "
            "| 5% filter recall | filter p50 | filter full pages |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|")
        for r in f["sweep"]:
            out.append(
                f"| {r['ef']} | {r['recall']:.4f} | {r['p50_ms']:.3f} ms | {r['p95_ms']:.3f} ms | "
                f"{r['batch_qps_1t']:.0f} | {r['batch_qps_2t']:.0f} | {r['filtered_recall']:.4f} | "
                f"{r['filtered_p50_ms']:.3f} ms | {r['filtered_full_pages'] * 100:.1f}% |"
            )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/lookalike-bench"))
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--ef", type=int, nargs="+", default=[40, 100, 200])
    parser.add_argument("--repeats", type=int, default=2, help="timed passes per config (median reported)")
    parser.add_argument("--explain-queries", type=int, default=200)
    parser.add_argument("--maintenance-work-mem", default="8GB")
    parser.add_argument("--workers", type=int, default=1, help="max_parallel_maintenance_workers (+ leader)")
    parser.add_argument("--build-timeout-min", type=float, default=40)
    parser.add_argument("--skip-halfvec", action="store_true")
    parser.add_argument("--skip-faiss", action="store_true")
    parser.add_argument(
        "--label",
        default="",
        help="suffix for query results, e.g. --label=-sb4GB for a rerun under other server settings",
    )
    parser.add_argument(
        "--shared-buffers",
        help="ALTER SYSTEM SET shared_buffers to this and exit; the next run starts with it",
    )
    parser.add_argument("--only", choices=["vector", "halfvec"], help="measure only this storage (no FAISS)")
    parser.add_argument(
        "--iterative-scan",
        choices=["strict_order", "relaxed_order"],
        help="experiment: override api.db.search's relaxed_order (label the run)",
    )
    parser.add_argument("--overhead", action="store_true", help="only the client-overhead breakdown")
    parser.add_argument(
        "--category-indexes",
        action="store_true",
        help="build the per-category partial indexes the server builds (api.db.category_indexes) first",
    )
    parser.add_argument("--report", action="store_true", help="print markdown tables from results.json")
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    global ITERATIVE_SCAN
    ITERATIVE_SCAN = args.iterative_scan
    results = Results(args.data_dir / "results.json")
    if args.report:
        print(report(results))
        return
    os.environ.pop("DATABASE_URL", None)
    database = Database(Settings(data_dir=args.data_dir, database_url=None, db_pool_size=2))
    with database.engine.begin() as conn:
        conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS vector")
        settings = {
            name: conn.exec_driver_sql(f"SHOW {name}").scalar()
            for name in ("server_version", "shared_buffers", "effective_cache_size", "work_mem")
        }
        settings["pgvector"] = conn.exec_driver_sql(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        ).scalar()
    if args.shared_buffers:
        # ALTER SYSTEM refuses to run inside a transaction block.
        with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f"ALTER SYSTEM SET shared_buffers = '{args.shared_buffers}'")
        log(
            f"shared_buffers set to {args.shared_buffers} from the next server start (now {settings['shared_buffers']})"
        )
        database.dispose()
        return
    results.put("server" + args.label, settings)
    log(f"server: {settings}")
    for size in args.sizes:
        if args.overhead:
            overhead = bench_overhead(database, fashion_mnist_512(size, 300), size)
            results.put(f"{size}/overhead{args.label}", overhead)
            log(f"overhead {size}: {overhead}")
            continue
        run_size(args, database, results, size)
    print(report(results))
    database.dispose()


if __name__ == "__main__":
    main()
