"""End-to-end search latency over HTTP on a 100k-product catalog.

    .venv/bin/python bench/http_search.py [--products 100000] [--requests 200] [--concurrency 1 8 32]

Seeds a separate embedded database (``--data-dir``, default /tmp/lookalike-bench-http) with
products whose CLIP vectors are real model outputs for the clothing photos (random-weight
ViT-B-32: same compute as the real weights), perturbed and renormalised to reach the catalog
size; then starts a real ``lookalike serve`` and measures p50/p95/p99 and throughput for
uncached text queries, uncached image uploads (400x533 JPEG) and cached repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
from api.db import migrate  # noqa: E402
from api.db.catalog import Catalog  # noqa: E402
from api.db.category_indexes import CategoryIndexPolicy, sync  # noqa: E402
from api.db.engine import Database  # noqa: E402
from api.services.encoders import EncoderHub  # noqa: E402
from api.settings import Settings  # noqa: E402
from bench.report import print_table, write_results  # noqa: E402

DATASET = Path(os.environ.get("LOOKALIKE_DATASET_DIR", REPO_ROOT.parent / "shared/datasets/clothing-small"))
COLORS = ("red", "blue", "black", "white", "green", "striped", "denim", "floral")


def settings_for(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, clip_random_weights=True, _env_file=None)  # type: ignore[call-arg]


def seed(data_dir: Path, products: int, sources: int) -> None:
    """COPY ``products`` rows built from ``sources`` real photo embeddings (skipped if already there)."""
    settings = settings_for(data_dir)
    database = Database(settings)
    migrate.upgrade(database)
    with database.engine.connect() as conn:
        existing = conn.exec_driver_sql("SELECT count(*) FROM products").scalar() or 0
    if existing >= products:
        print(f"catalog already has {existing} products")
        _category_indexes(database, settings)
        database.dispose()
        return
    hub = EncoderHub(settings)
    hub.load()
    clip = hub.clip()
    photos = sorted((DATASET / "train").glob("*/*.jpg"))[:: max(1, 3068 // sources)][:sources]
    started = time.perf_counter()
    vectors = clip.encode_images([Image.open(p).convert("RGB") for p in photos])
    print(f"encoded {len(photos)} source photos in {time.perf_counter() - started:.1f}s")
    rng = np.random.default_rng(0)
    model_id = hub.clip_model_id
    with database.engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE products")
        raw = conn.connection.dbapi_connection
        assert raw is not None
        copy_sql = "COPY products (sku, name, description, category, price, attributes, image_embedding, image_model) FROM STDIN"
        with raw.cursor() as cursor, cursor.copy(copy_sql) as copy:
            for i in range(products):
                source = i % len(photos)
                vector = vectors[source] + rng.normal(scale=0.03, size=vectors.shape[1]).astype(np.float32)
                vector /= np.linalg.norm(vector)
                label = photos[source].parent.name
                color = COLORS[i % len(COLORS)]
                copy.write_row(
                    (
                        f"P{i:07d}",
                        f"{color.title()} {label} {i}",
                        f"A {color} {label} from the bench catalog",
                        label,
                        5 + (i % 300),
                        json.dumps({"color": color}),
                        "[" + ",".join(f"{x:.6f}" for x in vector) + "]",
                        model_id,
                    )
                )
    started = time.perf_counter()
    with database.engine.begin() as conn:
        conn.exec_driver_sql("REINDEX INDEX products_image_embedding_hnsw")
        conn.exec_driver_sql("ANALYZE products")
    print(f"seeded {products} products; HNSW rebuilt in {time.perf_counter() - started:.1f}s")
    _category_indexes(database, settings)
    hub.close()
    database.dispose()


def _category_indexes(database: Database, settings: Settings) -> None:
    """Build what the server's worker would build at start, so no index build runs during the timing."""
    started = time.perf_counter()
    report = sync(database, Catalog.from_settings(settings), CategoryIndexPolicy.from_settings(settings))
    print(f"{report.render()} ({time.perf_counter() - started:.1f}s)")


def query_images(count: int) -> list[bytes]:
    """Distinct 400x533 JPEGs (distinct bytes defeat every cache), like a phone photo after resize."""
    photos = sorted((DATASET / "test").glob("*/*.jpg"))
    out = []
    for i in range(count):
        image = Image.open(photos[i % len(photos)]).convert("RGB").resize((400, 533))
        image.putpixel((i % 400, (i // 400) % 533), (i % 256, 0, 0))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=88)
        out.append(buffer.getvalue())
    return out


async def run_load(base: str, make_request, total: int, concurrency: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    latencies: list[float] = []
    modes: dict[str, int] = {}
    counter = iter(range(total))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:

        async def worker() -> None:
            for i in counter:
                started = time.perf_counter()
                response = await make_request(client, i)
                latencies.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.text
                mode = response.json()["mode"] + (" cached" if response.json()["cached"] else "")
                modes[mode] = modes.get(mode, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    q = np.percentile(latencies, [50, 95, 99])
    return {
        "p50_ms": round(float(q[0]), 1),
        "p95_ms": round(float(q[1]), 1),
        "p99_ms": round(float(q[2]), 1),
        "throughput_rps": round(total / wall, 1),
        "requests": total,
        "modes": modes,
    }


def _multipart(image: bytes, boundary: str = "lookalike-bench-boundary") -> tuple[bytes, str]:
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="q.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def lean_sequential(port: int, requests: int, images: list[bytes]) -> list[dict[str, object]]:
    """Concurrency 1 through a bare keep-alive ``http.client`` connection with prebuilt bodies.

    The asyncio httpx client above costs ~1 ms of Python per request on the same two cores as
    the server; this shows how much of the end-to-end time is the service's own.
    """
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port)
    cached_image = images[-1]
    cases = {
        "text": lambda i: (
            json.dumps({"text": f"{COLORS[i % len(COLORS)]} lean client query no {i}"}).encode(),
            "application/json",
            "/api/v1/search",
        ),
        "image": lambda i: (*_multipart(images[i]), "/api/v1/search/image"),
        "cached image": lambda i: (*_multipart(cached_image), "/api/v1/search/image"),
    }
    rows: list[dict[str, object]] = []
    for name, build in cases.items():
        latencies = []
        modes: dict[str, int] = {}
        bodies = [build(i) for i in range(requests)]
        for body, content_type, path in [bodies[0], *bodies]:  # the first call warms the cache/connection
            started = time.perf_counter()
            connection.request("POST", path, body=body, headers={"Content-Type": content_type})
            response = connection.getresponse()
            payload = response.read()
            latencies.append((time.perf_counter() - started) * 1000)
            assert response.status == 200, payload
            data = json.loads(payload)
            mode = data["mode"] + (" cached" if data["cached"] else "")
            modes[mode] = modes.get(mode, 0) + 1
        latencies = latencies[1:]
        q = np.percentile(latencies, [50, 95, 99])
        row = {
            "query": f"{name} (http.client)",
            "concurrency": 1,
            "p50_ms": round(float(q[0]), 1),
            "p95_ms": round(float(q[1]), 1),
            "p99_ms": round(float(q[2]), 1),
            "throughput_rps": round(1000 / float(np.mean(latencies)), 1),
            "requests": requests,
            "modes": modes,
        }
        rows.append(row)
        print(f"{row['query']:>26} c=1   {row}", flush=True)
    connection.close()
    return rows


async def benchmark(base: str, requests: int, concurrencies: list[int]) -> list[dict[str, object]]:
    images = query_images(requests * len(concurrencies) + 1)
    cached_image = images[-1]
    rows: list[dict[str, object]] = []
    offset = 0

    for concurrency in concurrencies:
        start = offset

        async def text_query(client: httpx.AsyncClient, i: int, start: int = start) -> httpx.Response:
            word = COLORS[i % len(COLORS)]
            return await client.post("/api/v1/search", json={"text": f"{word} summer outfit no {start + i}"})

        async def image_query(client: httpx.AsyncClient, i: int, start: int = start) -> httpx.Response:
            files = {"file": ("q.jpg", images[start + i], "image/jpeg")}
            return await client.post("/api/v1/search/image", files=files)

        async def cached_query(client: httpx.AsyncClient, i: int) -> httpx.Response:
            files = {"file": ("q.jpg", cached_image, "image/jpeg")}
            return await client.post("/api/v1/search/image", files=files)

        async with httpx.AsyncClient(base_url=base, timeout=60) as warm:
            await cached_query(warm, 0)
        for name, make in (("text", text_query), ("image", image_query), ("cached image", cached_query)):
            result = await run_load(base, make, requests, concurrency)
            rows.append({"query": name, "concurrency": concurrency, **result})
            print(f"{name:>12} c={concurrency:<3} {result}", flush=True)
        offset += requests
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--sources", type=int, default=600, help="real photos the vectors derive from")
    parser.add_argument("--requests", type=int, default=200, help="per query kind and concurrency")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/lookalike-bench-http"))
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench/results/http_search.json")
    parser.add_argument(
        "--lean-client", action="store_true", help="also time c=1 through a bare http.client connection"
    )
    args = parser.parse_args()

    args.data_dir.mkdir(parents=True, exist_ok=True)
    seed(args.data_dir, args.products, args.sources)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKALIKE_") and k != "DATABASE_URL"}
    env.update(LOOKALIKE_DATA_DIR=str(args.data_dir), LOOKALIKE_CLIP_RANDOM_WEIGHTS="1")
    if "LOOKALIKE_CLIP_RUNTIME" in os.environ:  # the one setting a run may compare (docs/benchmarks.md)
        env["LOOKALIKE_CLIP_RUNTIME"] = os.environ["LOOKALIKE_CLIP_RUNTIME"]
    server = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(args.port)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{args.port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(base + "/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("server did not come up")
            time.sleep(0.5)
        rows = asyncio.run(benchmark(base, args.requests, args.concurrency))
        if args.lean_client:
            # Fresh images: the async pass above already cached its own.
            fresh = query_images(args.requests * (len(args.concurrency) + 2) + 1)[-args.requests - 1 :]
            rows += lean_sequential(args.port, args.requests, fresh)
    finally:
        server.terminate()
        server.wait(30)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_results(args.out, rows, products=args.products)
    keys = ("query", "concurrency", "p50_ms", "p95_ms", "p99_ms", "throughput_rps")
    print_table(
        "| query | concurrency | p50 ms | p95 ms | p99 ms | req/s |", [[row[k] for k in keys] for row in rows]
    )
    print(f"\n(raw: {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
