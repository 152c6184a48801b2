"""How soon a product the shop's backend INSERTs is returned by a photo search.

    .venv/bin/python bench/notify_pickup.py [--inserts 50] [--products 60]

Creates a Medusa v2 product schema (tests/api/shops/schemas.py) in a scratch embedded
PostgreSQL, attaches a real ``lookalike serve`` to it with the documented mapping, waits for
the first round of embedding, then 50 times: INSERTs a published product with a new photo
from a plain psycopg connection (the shop's ORM, not our API) and polls a photo search with that
photo every 20 ms until it comes back first. Prints p50 / p95 / max of INSERT -> found.
"""

from __future__ import annotations

import argparse
import atexit
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psycopg

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from api.db.catalog_events import libpq_url  # noqa: E402
from api.db.embedded import embedded_database_url  # noqa: E402
from tests.api.shops.schemas import MEDUSA, photos  # noqa: E402
from tests.support import clean_env, free_port, wait_for_http  # noqa: E402

DATASET = Path(os.environ.get("LOOKALIKE_DATASET_DIR", REPO_ROOT.parent / "shared/datasets/clothing-small"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--inserts", type=int, default=50)
    parser.add_argument("--products", type=int, default=60, help="catalog size before the inserts")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lookalike-bench-pickup-"))
    # Registered before the embedded server's own exit hook, so it runs after the server stopped.
    atexit.register(shutil.rmtree, work, True)
    media = work / "media"
    url = embedded_database_url(work / "pg")
    from sqlalchemy import create_engine

    engine = create_engine(url)
    classes = photos(DATASET)
    catalog_photos = sorted((DATASET / "train").glob("*/*.jpg"))[: args.products]
    new_photos = sorted((DATASET / "test").glob("*/*.jpg"))[::7][: args.inserts]
    with engine.begin() as conn:
        MEDUSA.create(conn, [(p.parent.name, p) for p in catalog_photos] or classes, media)
    engine.dispose()

    port = free_port()
    env = clean_env(
        **MEDUSA.env(),
        DATABASE_URL=url,
        LOOKALIKE_DATA_DIR=str(work / "data"),
        LOOKALIKE_IMAGE_ROOT=str(media),
        LOOKALIKE_CLIP_RANDOM_WEIGHTS="true",
        LOOKALIKE_ADMIN_TOKEN="bench",
    )
    log = (work / "serve.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port)],
        env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/api/v1/health", server, timeout=300)
        with httpx.Client(base_url=base, timeout=30) as client:
            while client.get("/api/v1/stats", headers={"Authorization": "Bearer bench"}).json().get(
                "ingest", {}
            ).get("state") not in ("idle",):
                time.sleep(0.5)
            delays = []
            with psycopg.connect(libpq_url(url), autocommit=True) as shop:
                for photo in new_photos:
                    relative = f"uploads/new/{photo.parent.name}-{photo.name}"
                    (media / relative).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(photo, media / relative)
                    handle = f"new-{uuid.uuid4().hex[:10]}"
                    data = photo.read_bytes()
                    started = time.perf_counter()
                    shop.execute(
                        "INSERT INTO product (id, title, handle, status, thumbnail) VALUES (%s, %s, %s, 'published', %s)",
                        (f"prod_{uuid.uuid4().hex}", "New arrival", handle, relative),
                    )
                    while True:
                        hits = client.post(
                            "/api/v1/search/image",
                            files={"file": ("q.jpg", data, "image/jpeg")},
                            data={"top_k": 1},
                        ).json()["results"]
                        if hits and hits[0]["sku"] == handle:
                            break
                        if time.perf_counter() - started > 60:
                            raise SystemExit(f"{handle} not found after 60 s")
                        time.sleep(0.02)
                    delays.append(time.perf_counter() - started)
        delays.sort()
        p95 = delays[min(len(delays) - 1, int(0.95 * len(delays)))]
        print(
            f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        )
        print(
            f"INSERT -> found by photo search, {len(delays)} inserts into a {args.products}-product Medusa catalog:"
        )
        print(
            f"  p50 {statistics.median(delays) * 1000:.0f} ms  p95 {p95 * 1000:.0f} ms  max {delays[-1] * 1000:.0f} ms  min {delays[0] * 1000:.0f} ms"
        )
    finally:
        server.terminate()
        server.wait(60)


if __name__ == "__main__":
    main()
