"""The duplicate finder on a 100k-product catalog: ``.venv/bin/python bench/duplicates.py``.

    .venv/bin/python bench/duplicates.py [--products 100000] [--planted 1000] [--lanes 2 1]

Vectors are MobileNetV2's (the finder's default), built from real photos: the 3,068 clothing
train photos are encoded as the product encodes them (cached in ``--cache``), and the catalog
is grown to ``--products`` with perturbed copies of them. Two kinds of copy:

- "other products": a real vector plus Gaussian noise of norm 1.0, renormalised (cosine
  distance ~0.3 from its source and ~0.5 from its siblings: far beyond any duplicate threshold,
  but in the same region of the space, as another product of the same kind would be);
- ``--planted`` "duplicates": a real vector plus noise of norm 0.15 (distance ~0.01 from its
  source), one per distinct source photo, so the finder should report exactly that many pairs.

The catalog is COPYed with its HNSW index dropped and built once (like a first import), then
the finder's first stage (candidates from the vector index, ``verify=False``: synthetic rows have
no photos to compare) runs with each ``--lanes`` value in turn, and the pairs are checked. The
second stage, reading and comparing the candidates' photos, costs per photo and is measured on
real photos by ``tests/api/services/test_duplicates.py``.
Uses its own embedded database under ``--data-dir`` (kept between runs: seeding is skipped when
the catalog is already there).
"""

from __future__ import annotations

# First, before torch loads: the package sets the OpenMP spin policy libgomp reads at load.
import encoder  # noqa: F401

# isort: split
import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from api.db import migrate  # noqa: E402
from api.db.catalog import Catalog  # noqa: E402
from api.db.engine import Database  # noqa: E402
from api.db.vector_indexes import hnsw_indexes, index_ddl  # noqa: E402
from api.services.duplicates import DuplicateQuery, find_duplicates  # noqa: E402
from api.settings import Settings  # noqa: E402
from encoder.registry import MOBILENET_MODEL_ID  # noqa: E402

OTHER_NOISE = 1.0
DUPLICATE_NOISE = 0.15


def real_vectors(cache: Path) -> tuple[np.ndarray, list[str]]:
    """MobileNetV2 vectors of the clothing train split, encoded once and cached."""
    if cache.is_file():
        data = np.load(cache)
        return data["vectors"], [str(c) for c in data["categories"]]
    from encoder.images import decode_image
    from encoder.mobilenet import load_mobilenet_encoder

    root = Path(os.environ.get("LOOKALIKE_DATASET_DIR", REPO_ROOT.parent / "shared/datasets/clothing-small"))
    paths = sorted((root / "train").glob("*/*.jpg"))
    mobilenet = load_mobilenet_encoder(device="cpu")
    parts = []
    for start in range(0, len(paths), 32):
        images = [
            decode_image(p.read_bytes(), max_pixels=40_000_000, target_size=mobilenet.decode_size)
            for p in paths[start : start + 32]
        ]
        parts.append(mobilenet.encode_images(images))
    vectors = np.concatenate(parts).astype(np.float32)
    categories = [p.parent.name for p in paths]
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, vectors=vectors, categories=np.array(categories))
    return vectors, categories


def perturbed(rng: np.random.Generator, source: np.ndarray, noise: float) -> np.ndarray:
    jitter = rng.normal(scale=noise / np.sqrt(source.shape[1]), size=source.shape).astype(np.float32)
    out = source / np.linalg.norm(source, axis=1, keepdims=True) + jitter
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def seed(
    database: Database, catalog: Catalog, products: int, planted: int, cache: Path
) -> set[frozenset[str]]:
    """COPY the catalog (index dropped), build the fallback HNSW index; return the planted pairs."""
    from pgvector.psycopg import register_vector

    real, categories = real_vectors(cache)
    rng = np.random.default_rng(0)
    n_real = len(real)
    dup_sources = rng.choice(n_real, size=planted, replace=False)
    n_other = products - n_real - planted
    expected = {frozenset({f"R{int(i):06d}", f"D{j:06d}"}) for j, i in enumerate(dup_sources)}
    with database.engine.connect() as conn:
        have = conn.exec_driver_sql(f"SELECT count(*) FROM {catalog.qualified}").scalar() or 0
    if have == products:
        print(f"catalog already has {products} products")
        return expected
    with database.autocommit() as conn:
        for name in hnsw_indexes(conn, catalog):
            conn.exec_driver_sql(f'DROP INDEX "{catalog.schema}"."{name}"')
        conn.exec_driver_sql(f"TRUNCATE {catalog.qualified}")
        raw = conn.connection.dbapi_connection
        assert raw is not None
        register_vector(raw)
        started = time.perf_counter()
        statement = (
            f"COPY {catalog.qualified} (sku, name, category, fallback_embedding, fallback_model) "
            "FROM STDIN (FORMAT BINARY)"
        )
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            copy.set_types(["text", "text", "text", "vector", "text"])
            for i, vector in enumerate(real / np.linalg.norm(real, axis=1, keepdims=True)):
                copy.write_row((f"R{i:06d}", f"real {i}", categories[i], vector, MOBILENET_MODEL_ID))
            duplicates = perturbed(rng, real[dup_sources], DUPLICATE_NOISE)
            for j, vector in enumerate(duplicates):
                category = categories[int(dup_sources[j])]
                copy.write_row((f"D{j:06d}", f"duplicate {j}", category, vector, MOBILENET_MODEL_ID))
            for start in range(0, n_other, 10_000):
                sources = rng.integers(0, n_real, min(10_000, n_other - start))
                for k, vector in enumerate(perturbed(rng, real[sources], OTHER_NOISE)):
                    row = start + k
                    category = categories[int(sources[k])]
                    copy.write_row((f"O{row:07d}", f"other {row}", category, vector, MOBILENET_MODEL_ID))
        print(f"copied {products} rows in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        conn.exec_driver_sql(index_ddl(catalog, "fallback_embedding"))
        print(f"built the fallback HNSW index in {time.perf_counter() - started:.1f} s")
        conn.exec_driver_sql(f"VACUUM ANALYZE {catalog.qualified}")
    return expected


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--planted", type=int, default=1000)
    parser.add_argument("--lanes", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/lookalike-bench-duplicates"))
    parser.add_argument(
        "--cache", type=Path, default=Path("/tmp/lookalike-bench-duplicates/train-mobilenet.npz")
    )
    args = parser.parse_args()

    settings = Settings(data_dir=args.data_dir, category_indexes=False, _env_file=None)  # type: ignore[call-arg]
    database = Database(settings)
    migrate.upgrade(database)
    catalog = Catalog.from_settings(settings)
    expected = seed(database, catalog, args.products, args.planted, args.cache)
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores")
    for lanes in args.lanes:
        report = find_duplicates(database, catalog, settings, DuplicateQuery(lanes=lanes, verify=False))
        cluster_of = {str(m.sku): n for n, c in enumerate(report.clusters) for m in c.members}
        together = sum(
            1 for a, b in map(sorted, expected) if a in cluster_of and cluster_of[a] == cluster_of.get(b)
        )
        found = {frozenset(str(m.sku) for m in c.members) for c in report.clusters}
        print(
            f"lanes {lanes}: {report.products_checked} products in {report.elapsed_s:.1f} s "
            f"({report.products_checked / report.elapsed_s:.0f} products/s); {report.candidate_pairs} candidate "
            f"pairs, {len(report.clusters)} clusters, "
            f"planted pairs in one cluster {together}/{len(expected)} ({len(expected & found)} alone, the others "
            f"joined by real photos closer than the threshold: not verified here), other clusters "
            f"{len(found - expected)}"
        )
    database.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
