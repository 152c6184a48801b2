"""Filtered search without a tail (issue 20, item 1): the cross-category probe at 100k and 1M.

    .venv/bin/python bench/filtered_search.py --rows 100000 [--queries 60] [--out results.json]
    .venv/bin/python bench/filtered_search.py --rows 1000000 --seed-only      # build once, reuse

The catalog's categories are the clothing photos' real classes (../shared/datasets/clothing-small:
dress, hat, longsleeve, ... t-shirt, in their real proportions). Vectors are real model outputs:
MobileNetV2 (ImageNet weights, the product's fallback encoder) pooled features of every train and
validation photo, centred and projected to the CLIP column's 512 dimensions with one fixed random
orthogonal matrix (angles kept up to the projection's distortion), grown to the catalog size by
mixing each photo with another of its class (plus a little noise), so grown rows stay in
their class's region without piling up as near-ties. Pretrained features cluster by class, so a photo
of a dress sits far from every shoe: that is what makes "shoes that go with this dress" walk most
of the graph. (Random-weight CLIP vectors, which other benches use, carry no class structure.)
Price, colour and a draft/active status are drawn independently of the vector.

Queries are the held-out test photos, each run with every filter kind below through the product's
own ``api.db.search.search`` (plan choice included) on a connection inside a transaction, like
``Database.read()``; "step" is the wall time of that call (every statement it sends, rows decoded).
Recall@10 is against exact brute force over the rows the filter keeps (numpy).

Each size has its own embedded server under ``--data-dir`` (default /tmp/lookalike-bench-filtered-<rows>),
built once (COPY, then the HNSW and per-category indexes) and reused by later runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from api.db import hnsw_graphs  # noqa: E402
from api.db import search as search_module  # noqa: E402
from api.db.catalog import Catalog  # noqa: E402
from api.db.category_indexes import CategoryIndexPolicy, sync  # noqa: E402
from api.db.engine import Database  # noqa: E402
from api.db.search import Filters, Page, VectorColumn, VectorQuery, search  # noqa: E402
from api.settings import Settings  # noqa: E402

DATASET = Path(os.environ.get("LOOKALIKE_DATASET_DIR", REPO_ROOT.parent / "shared/datasets/clothing-small"))
CACHE = Path("/tmp/lookalike-bench-filtered-vectors.npz")
DIM = 512
TABLE = "products"
COLORS = ("red", "blue", "black", "white", "green", "striped", "denim", "floral")
ACTIVE_SHARE = 0.85
VISIBLE_WHERE = '"products"."currency" = \'EUR\''
"""The bench's visibility predicate: drafts have currency DRF (a shop's ``status = 'active'``)."""
TOP_K = 10


# --------------------------------------------------------------------------------------------- data


def photo_vectors() -> dict[str, Any]:
    """MobileNetV2 vectors and class labels of the photos (cached: encoding takes minutes here)."""
    if CACHE.exists():
        data = np.load(CACHE)
        return {k: data[k] for k in data.files}
    from PIL import Image

    from encoder.factory import build_mobilenet_encoder

    encoder = build_mobilenet_encoder("cpu", 32)
    out: dict[str, Any] = {}
    for split, names in (("base", ("train", "validation")), ("query", ("test",))):
        paths = sorted(p for name in names for p in (DATASET / name).glob("*/*.jpg"))
        vectors = []
        for start in range(0, len(paths), 64):
            images = [Image.open(p).convert("RGB") for p in paths[start : start + 64]]
            vectors.append(encoder.encode_images(images))
        out[f"{split}_vectors"] = np.concatenate(vectors).astype(np.float32)
        out[f"{split}_labels"] = np.array([p.parent.name for p in paths])
        print(f"encoded {len(paths)} {split} photos", flush=True)
    np.savez(CACHE, **out)
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Data:
    base: np.ndarray
    categories: np.ndarray
    prices: np.ndarray
    colors: np.ndarray
    active: np.ndarray
    queries: np.ndarray
    query_categories: np.ndarray


def build_data(rows: int, seed: int = 0) -> Data:
    raw = photo_vectors()
    mean = raw["base_vectors"].mean(axis=0)
    rng_proj = np.random.default_rng(7)
    projection, _ = np.linalg.qr(rng_proj.normal(size=(raw["base_vectors"].shape[1], DIM)))
    projection = projection.astype(np.float32)
    real = _unit((raw["base_vectors"] - mean) @ projection)
    queries = _unit((raw["query_vectors"] - mean) @ projection)
    rng = np.random.default_rng(seed)
    base = np.empty((rows, DIM), dtype=np.float32)
    source = np.empty(rows, dtype=np.int64)
    n_real = min(rows, len(real))
    base[:n_real] = real[:n_real]
    source[:n_real] = np.arange(n_real)
    labels = raw["base_labels"]
    by_class = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    for start in range(n_real, rows, 100_000):
        stop = min(rows, start + 100_000)
        picked = rng.integers(0, len(real), stop - start)
        # A partner photo of the same class: the copy lies between the two (mixup), so grown rows
        # fill the class's region instead of piling up as near-ties around each photo.
        partner = np.array([rng.choice(by_class[labels[p]]) for p in picked])
        weight = rng.uniform(0, 0.5, size=(stop - start, 1)).astype(np.float32)
        jitter = rng.normal(scale=0.05 / np.sqrt(DIM), size=(stop - start, DIM)).astype(np.float32)
        base[start:stop] = _unit((1 - weight) * real[picked] + weight * real[partner] + jitter)
        source[start:stop] = picked
    return Data(
        base=base,
        categories=raw["base_labels"][source],
        prices=np.round(rng.uniform(5, 500, rows), 2),
        colors=rng.integers(0, len(COLORS), rows),
        active=rng.random(rows) < ACTIVE_SHARE,
        queries=queries,
        query_categories=raw["query_labels"],
    )


def settings_for(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, category_indexes=True, _env_file=None)  # type: ignore[call-arg]


def seed(
    database: Database, data: Data, maintenance_work_mem: str, workers: int, reseed: bool
) -> dict[str, Any]:
    """COPY the rows (binary vectors), build the product's indexes, ANALYZE; returns timings."""
    from api.db import migrate

    migrate.upgrade(database)
    timings: dict[str, Any] = {}
    rows = len(data.base)
    with database.engine.begin() as conn:
        existing = conn.exec_driver_sql(f"SELECT count(*) FROM {TABLE}").scalar() or 0
    if existing == rows and not reseed:
        settings = database.settings
        catalog = Catalog.from_settings(settings)
        report = sync(database, catalog, CategoryIndexPolicy.from_settings(settings))
        print(report.render(), flush=True)  # the policy may have changed since the build
        # So do the graph parameters: rebuilt as the product's upkeep would (none when current).
        print(hnsw_graphs.sync(database, catalog).render(), flush=True)
        return {"reused": True, "category_indexes": report.created + report.kept}
    with database.autocommit() as conn:
        hnsw = conn.exec_driver_sql(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'products' AND indexdef LIKE '%%hnsw%%'"
        ).all()
        for name, _ in hnsw:
            conn.exec_driver_sql(f'DROP INDEX "{name}"')
        conn.exec_driver_sql(f"TRUNCATE {TABLE}")
    started = time.perf_counter()
    from pgvector.psycopg import register_vector
    from psycopg.types.json import Jsonb

    with database.engine.begin() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        register_vector(raw)  # type: ignore[arg-type]
        copy_sql = (
            f"COPY {TABLE} (sku, name, category, price, currency, attributes, image_embedding, image_model) "
            "FROM STDIN (FORMAT binary)"
        )
        with raw.cursor() as cursor, cursor.copy(copy_sql) as copy:
            copy.set_types(["text", "text", "text", "numeric", "text", "jsonb", "vector", "text"])
            for i in range(rows):
                copy.write_row(
                    (
                        f"P{i:07d}",
                        f"{COLORS[data.colors[i]].title()} {data.categories[i]} {i}",
                        str(data.categories[i]),
                        Decimal(f"{data.prices[i]:.2f}"),
                        "EUR" if data.active[i] else "DRF",
                        Jsonb({"color": COLORS[data.colors[i]]}),
                        data.base[i],
                        "bench",
                    )
                )
                if i % 100_000 == 0:
                    print(f"  copied {i}", flush=True)
    timings["copy_s"] = time.perf_counter() - started
    main = [(name, sql) for name, sql in hnsw if "_cat_" not in name]
    with database.autocommit() as conn:
        conn.exec_driver_sql(f"SET maintenance_work_mem = '{maintenance_work_mem}'")
        conn.exec_driver_sql(f"SET max_parallel_maintenance_workers = {workers}")
        for name, sql in main:
            if "image_embedding" not in sql:
                continue  # the fallback column stays empty here: its index is built empty
            started = time.perf_counter()
            conn.exec_driver_sql(sql.replace("%", "%%"))
            timings[f"build_{name}_s"] = time.perf_counter() - started
            print(f"  built {name} in {timings[f'build_{name}_s']:.0f}s", flush=True)
        for _name, sql in main:
            if "image_embedding" not in sql:
                conn.exec_driver_sql(sql.replace("%", "%%"))
        conn.exec_driver_sql(f"ANALYZE {TABLE}")
    started = time.perf_counter()
    settings = database.settings
    report = sync(database, Catalog.from_settings(settings), CategoryIndexPolicy.from_settings(settings))
    timings["category_indexes_s"] = time.perf_counter() - started
    timings["category_indexes"] = report.created + report.kept
    print(report.render(), flush=True)
    with database.autocommit() as conn:
        conn.exec_driver_sql(f"ANALYZE {TABLE}")
    return timings


# --------------------------------------------------------------------------------------------- queries


@dataclasses.dataclass(frozen=True)
class Probe:
    kind: str
    query: int
    categories: tuple[str, ...] = ()
    price: tuple[float, float] | None = None
    color: str | None = None
    visible_only: bool = False

    def filters(self) -> Filters:
        return Filters(
            categories=self.categories,
            price_min=Decimal(str(self.price[0])) if self.price else None,
            price_max=Decimal(str(self.price[1])) if self.price else None,
            attributes={"color": self.color} if self.color else {},
        )

    def mask(self, data: Data) -> np.ndarray:
        keep = np.ones(len(data.base), dtype=bool)
        if self.categories:
            keep &= np.isin(data.categories, self.categories)
        if self.price:
            keep &= (data.prices >= self.price[0]) & (data.prices <= self.price[1])
        if self.color:
            keep &= data.colors == COLORS.index(self.color)
        if self.visible_only:
            keep &= data.active
        return keep


KINDS = (
    "none",
    "own_category",
    "other_category",
    "several_categories",
    "price_narrow",
    "price_wide",
    "attributes",
    "visibility",
    "combined",
)


def probes(data: Data, n_queries: int, kinds: tuple[str, ...]) -> list[Probe]:
    classes = sorted(set(data.categories.tolist()))
    picked = np.random.default_rng(1).permutation(len(data.queries))[:n_queries]
    out: list[Probe] = []
    for j, q in enumerate(picked.tolist()):
        own = str(data.query_categories[q])
        others = [c for c in classes if c != own]
        other, second = others[j % len(others)], others[(j + 4) % len(others)]
        color = COLORS[j % len(COLORS)]
        specs = {
            "none": Probe("none", q),
            "own_category": Probe("own_category", q, categories=(own,)),
            "other_category": Probe("other_category", q, categories=(other,)),
            "several_categories": Probe("several_categories", q, categories=(other, second)),
            "price_narrow": Probe("price_narrow", q, price=(100.0, 110.0)),
            "price_wide": Probe("price_wide", q, price=(50.0, 250.0)),
            "attributes": Probe("attributes", q, color=color),
            "visibility": Probe("visibility", q, visible_only=True),
            "combined": Probe(
                "combined", q, categories=(other,), price=(50.0, 250.0), color=color, visible_only=True
            ),
        }
        out += [specs[k] for k in kinds]
    return out


def exact_truth(data: Data, batch: list[Probe], k: int = TOP_K) -> list[list[int]]:
    """Brute-force top-k row indices per probe among the rows its filter keeps."""
    queries = data.queries[[p.query for p in batch]]
    masks = np.stack([p.mask(data) for p in batch])
    best_s = np.full((len(batch), k), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(batch), k), dtype=np.int64)
    for start in range(0, len(data.base), 100_000):
        scores = queries @ data.base[start : start + 100_000].T
        scores[~masks[:, start : start + 100_000]] = -np.inf
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        s = np.concatenate([best_s, np.take_along_axis(scores, top, axis=1)], axis=1)
        i = np.concatenate([best_i, top + start], axis=1)
        order = np.argsort(-s, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(s, order, axis=1), np.take_along_axis(i, order, axis=1)
    return [
        [int(x) for x, s in zip(row, srow, strict=True) if np.isfinite(s)]
        for row, srow in zip(best_i, best_s, strict=True)
    ]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def measure(database: Database, data: Data, batch: list[Probe], passes: int) -> dict[str, Any]:
    catalog = Catalog.from_settings(database.settings)
    visible_catalog = dataclasses.replace(catalog, visible_where=VISIBLE_WHERE)
    truth = exact_truth(data, batch)
    page = Page(top_k=TOP_K)
    times: dict[str, list[float]] = {}
    found: dict[int, list[int]] = {}
    plans: dict[str, Counter[str]] = {}
    with database.engine.connect() as conn:
        for run in range(passes + 1):  # the first pass warms caches and is not timed
            for n, probe in enumerate(batch):
                cat = visible_catalog if probe.visible_only else catalog
                query = VectorQuery(VectorColumn.CLIP, data.queries[probe.query])
                with conn.begin() as tx:
                    started = time.perf_counter()
                    hits = search(conn, cat, query, probe.filters(), page)
                    elapsed = time.perf_counter() - started
                    if run == passes:
                        plan = search_module.choose_plan(conn, cat, query, probe.filters(), page)
                        plans.setdefault(probe.kind, Counter())[plan.value] += 1
                    tx.rollback()
                if run > 0:
                    times.setdefault(probe.kind, []).append(elapsed * 1000)
                found[n] = [int(h.sku[1:]) for h in hits]
    out: dict[str, Any] = {}
    for kind in dict.fromkeys(p.kind for p in batch):
        idx = [n for n, p in enumerate(batch) if p.kind == kind]
        ms = times[kind]
        recall = [len(set(found[n]) & set(truth[n])) / max(1, len(truth[n])) for n in idx]
        full = [len(found[n]) == min(TOP_K, len(truth[n])) for n in idx]
        ordered = []
        for n in idx:
            d = [float(data.queries[batch[n].query] @ data.base[i]) for i in found[n]]
            ordered.append(all(a >= b - 1e-5 for a, b in itertools.pairwise(d)))
        out[kind] = {
            "queries": len(idx),
            "timed": len(ms),
            "p50_ms": round(statistics.median(ms), 3),
            "p95_ms": round(pct(ms, 95), 3),
            "p99_ms": round(pct(ms, 99), 3),
            "max_ms": round(max(ms), 3),
            "recall_at_10": round(float(np.mean(recall)), 4),
            "full_pages": round(100 * float(np.mean(full)), 1),
            "ordered": round(100 * float(np.mean(ordered)), 1),
            "kept_rows_median": int(np.median([int(batch[n].mask(data).sum()) for n in idx])),
            "plans": dict(plans.get(kind, {})),
        }
        print(kind, json.dumps(out[kind]), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=60, help="test photos; each runs every filter kind")
    parser.add_argument("--passes", type=int, default=1, help="timed passes after the warm-up pass")
    parser.add_argument("--kinds", nargs="*", default=list(KINDS))
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--maintenance-work-mem", default="4GB")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed-only", action="store_true")
    parser.add_argument("--reseed", action="store_true", help="load the rows again even if the count matches")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    data_dir = args.data_dir or Path(f"/tmp/lookalike-bench-filtered-{args.rows}")
    database = Database(settings_for(data_dir))
    data = build_data(args.rows)
    result: dict[str, Any] = {
        "rows": args.rows,
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "load_before": os.getloadavg(),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, python {platform.python_version()}",
        "category_rows": dict(Counter(data.categories.tolist()).most_common()),
    }
    result["seed"] = seed(database, data, args.maintenance_work_mem, args.workers, args.reseed)
    print(json.dumps(result, default=str), flush=True)
    if not args.seed_only:
        batch = probes(data, args.queries, tuple(args.kinds))
        result["kinds"] = measure(database, data, batch, args.passes)
        result["load_after"] = os.getloadavg()
        result["settings"] = {
            "MAX_SCAN_TUPLES": search_module.MAX_SCAN_TUPLES,
            "EXACT_MAX_ROWS": getattr(search_module, "EXACT_MAX_ROWS", None),
        }
    if args.out:
        args.out.write_text(json.dumps(result, indent=1, default=str))
    database.dispose()


if __name__ == "__main__":
    main()
