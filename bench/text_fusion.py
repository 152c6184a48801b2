"""Text queries in CLIP mode over HTTP, by kind of query (issue 16 item 3: text fusion).

    .venv/bin/python bench/text_fusion.py [--products 20000] [--requests 60] [--rounds 2]
        [--server-root A --server-root B ...]

Seeds the bench catalog of bench/http_search.py (random-weight CLIP vectors of real photos,
names like "Red dress 123", SKUs like P0000123), then for each round starts a real ``lookalike
serve`` from each ``--server-root`` in turn (a source tree, e.g. ``git archive`` of the commit
before fusion and of the commit with it: alternated, so both see the same machine load) and
times, one request at a time over a bare keep-alive connection, four kinds of text query:
words that match no product, common words (hundreds of full-text matches), an exact SKU and an
exact name. The result cache is off (TTL 0) so every request encodes and searches.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
from bench.http_search import COLORS, seed  # noqa: E402
from bench.report import write_results  # noqa: E402

LABELS = ("dress", "shirt", "shoes", "hat", "pants")


def queries(kind: str, count: int, products: int) -> list[str]:
    step = max(1, products // count)
    if kind == "no word match":
        return [f"{COLORS[i % len(COLORS)]} summer outfit" for i in range(count)]
    if kind == "common words":
        return [f"{COLORS[i % len(COLORS)]} {LABELS[i % len(LABELS)]}" for i in range(count)]
    if kind == "exact sku":
        return [f"P{(i * step) % products:07d}" for i in range(count)]
    return [f"__name__{(i * step) % products}" for i in range(count)]  # resolved against the catalog


def names(data_dir: Path, ids: list[int]) -> dict[int, str]:
    from api.db.engine import Database
    from bench.http_search import settings_for

    database = Database(settings_for(data_dir))
    with database.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT sku, name FROM products WHERE sku = ANY(%(skus)s)", {"skus": [f"P{i:07d}" for i in ids]}
        ).all()
    database.dispose()
    return {int(sku[1:]): name for sku, name in rows}


def start(root: Path, data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    with socket.socket() as probe:  # another server on the port would answer in ours' place
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            raise SystemExit(f"port {port} is taken: pass --port")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKALIKE_") and k != "DATABASE_URL"}
    env.update(
        LOOKALIKE_DATA_DIR=str(data_dir),
        LOOKALIKE_CLIP_RANDOM_WEIGHTS="1",
        LOOKALIKE_CACHE_TTL_S="0",
        # One request at a time: admission control (sized for 2 cores) must not shed the warm-up.
        LOOKALIKE_MAX_INFLIGHT="16",
        LOOKALIKE_ADMISSION_WAIT_MS="60000",
        PYTHONPATH=str(root),
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port)],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/api/v1/health")
            if connection.getresponse().status == 200 and server.poll() is None:
                time.sleep(5)  # the HNSW prewarm runs searches right after start-up
                return server
        except OSError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            raise SystemExit(f"server from {root} did not come up")
        time.sleep(0.5)


def measure(port: int, texts: list[str]) -> dict[str, object]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    latencies: list[float] = []
    modes: dict[str, int] = {}
    for text in [texts[0], *texts]:  # the first call warms the connection
        body = json.dumps({"text": text, "top_k": 12}).encode()
        started = time.perf_counter()
        for _attempt in range(20):
            connection.request(
                "POST", "/api/v1/search", body=body, headers={"Content-Type": "application/json"}
            )
            response = connection.getresponse()
            payload = json.loads(response.read())
            if response.status != 503:
                break
            time.sleep(0.5)  # shed by admission control (start-up work): not a timing of ours
        latencies.append((time.perf_counter() - started) * 1000)
        assert response.status == 200, payload
        modes[payload["mode"]] = modes.get(payload["mode"], 0) + 1
    connection.close()
    q = np.percentile(latencies[1:], [50, 95])
    return {"p50_ms": round(float(q[0]), 1), "p95_ms": round(float(q[1]), 1), "modes": modes}


def statements(data_dir: Path, repeats: int) -> dict[str, float]:
    """The SQL alone, in this process: the plain CLIP page vs the fused one for each kind of
    words, interleaved ``repeats`` times on one connection pool (median ms per statement)."""
    from api.db.catalog import Catalog
    from api.db.engine import Database
    from api.db.search import Filters, FusedQuery, Page, VectorColumn, VectorQuery, fused_search, search
    from bench.http_search import settings_for

    settings = settings_for(data_dir)
    database = Database(settings)
    catalog = Catalog.from_settings(settings)
    with database.engine.connect() as conn:
        model, text = conn.exec_driver_sql(
            "SELECT image_model, image_embedding::text FROM products WHERE sku = 'P0000123'"
        ).one()
    vector = VectorQuery(VectorColumn.CLIP, np.asarray(json.loads(text), dtype=np.float32), model)
    name = names(data_dir, [3812])[3812]
    cases = {
        "plain CLIP page": None,
        "fused, no word match": "red summer outfit",
        "fused, 'red dress'": "red dress",
        "fused, 'dress'": "dress",
        "fused, exact sku": "P0001234",
        f"fused, exact name '{name}'": name,
    }
    times: dict[str, list[float]] = {kind: [] for kind in cases}
    for _ in range(repeats):
        for kind, words in cases.items():
            with database.engine.begin() as conn:
                started = time.perf_counter()
                if words is None:
                    search(conn, catalog, vector, Filters(), Page(top_k=12))
                else:
                    fused_search(conn, catalog, FusedQuery(vector, words), Filters(), Page(top_k=12))
                times[kind].append((time.perf_counter() - started) * 1000)
    database.dispose()
    return {kind: round(float(np.median(ms)), 2) for kind, ms in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--products", type=int, default=20_000)
    parser.add_argument("--sources", type=int, default=200)
    parser.add_argument("--requests", type=int, default=60, help="per query kind, round and server")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--server-root", type=Path, action="append", help="source tree to serve from (repeat)"
    )
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/lookalike-bench-fusion"))
    parser.add_argument("--port", type=int, default=18766)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench/results/text_fusion.json")
    parser.add_argument(
        "--statements", type=int, default=0, help="also time the SQL alone, this many interleaved rounds"
    )
    args = parser.parse_args()
    roots = args.server_root or [REPO_ROOT]

    args.data_dir.mkdir(parents=True, exist_ok=True)
    seed(args.data_dir, args.products, args.sources)
    kinds = ("no word match", "common words", "exact sku", "exact name")
    texts = {kind: queries(kind, args.requests, args.products) for kind in kinds}
    ids = [int(t.removeprefix("__name__")) for t in texts["exact name"]]
    by_id = names(args.data_dir, ids)
    texts["exact name"] = [by_id[i] for i in ids]

    rows: list[dict[str, object]] = []
    if args.statements:
        load = os.getloadavg()[0]
        row = {"statements": statements(args.data_dir, args.statements), "load1": round(load, 2)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    for round_no in range(1, args.rounds + 1):
        for root in roots:
            server = start(root, args.data_dir, args.port)
            try:
                measure(args.port, texts["no word match"][:10])  # warm CLIP and the pools
                for kind in kinds:
                    load = os.getloadavg()[0]
                    result = measure(args.port, texts[kind])
                    row = {
                        "round": round_no,
                        "server": str(root),
                        "query": kind,
                        "load1": round(load, 2),
                        **result,
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
            finally:
                server.terminate()
                server.wait(30)
    write_results(args.out, rows, products=args.products, requests=args.requests)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
