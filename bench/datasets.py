"""Benchmark vectors: real Fashion-MNIST images projected to CLIP's 512 dimensions, grown to 100k/1M.

Why this data: Fashion-MNIST (Debian ``dataset-fashion-mnist``) is the standard ann-benchmarks set
and is real clothing imagery, so its neighbourhood structure is real, unlike isotropic random
vectors (a worst case no ANN index is built for). It is 784-d pixels; a fixed random orthogonal
projection to 512-d keeps every inner product and angle between two projected vectors close to
the original (a Johnson-Lindenstrauss map, the same for base and queries), so HNSW sees real
structure at the dimension the catalog column has. The 60k training images are the first 60k
rows, unchanged; rows beyond them are perturbed copies (Gaussian noise of norm ``noise`` added
to a unit vector, renormalised), because no real 1M-image clothing set is available offline.
Queries are held-out test images, never in the base set.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
DIM = 512
CATEGORIES = 20  # one category = a filter keeping 5% of rows


@dataclass(frozen=True)
class Dataset:
    name: str
    base: np.ndarray
    """(n, 512) float32 unit vectors; row i is stored with id i + 1."""
    categories: np.ndarray
    """(n,) int16 category per row, uniform over CATEGORIES and independent of the vector."""
    queries: np.ndarray
    """(q, 512) float32 unit vectors, held out from ``base``."""
    query_categories: np.ndarray
    """(q,) int16: the category each query filters on in the 5%-filter runs."""


def _read_idx_images(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    count = int.from_bytes(data[4:8], "big")
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, 784)


def _unit(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32, copy=False)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def orthogonal_projection(src_dim: int, dst_dim: int, seed: int = 7) -> np.ndarray:
    """A fixed (src_dim, dst_dim) matrix with orthonormal columns (QR of a seeded Gaussian)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(src_dim, dst_dim)))
    return q.astype(np.float32)


def fashion_mnist_512(size: int, n_queries: int, noise: float = 0.25, seed: int = 0) -> Dataset:
    """``size`` base vectors (real projected images first, perturbed copies after) and held-out queries."""
    train = _read_idx_images(FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").astype(np.float32)
    test = _read_idx_images(FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").astype(np.float32)
    projection = orthogonal_projection(784, DIM)
    real = _unit(_unit(train) @ projection)
    rng = np.random.default_rng(seed)
    base = np.empty((size, DIM), dtype=np.float32)
    n_real = min(size, len(real))
    base[:n_real] = real[:n_real]
    chunk = 100_000
    for start in range(n_real, size, chunk):
        stop = min(size, start + chunk)
        source = real[rng.integers(0, len(real), stop - start)]
        jitter = rng.normal(scale=noise / np.sqrt(DIM), size=source.shape).astype(np.float32)
        base[start:stop] = _unit(source + jitter)
    queries = _unit(_unit(test[rng.permutation(len(test))[:n_queries]]) @ projection)
    categories = rng.integers(0, CATEGORIES, size).astype(np.int16)
    query_categories = (np.arange(n_queries) % CATEGORIES).astype(np.int16)
    return Dataset(f"fashion-mnist-512-{size}", base, categories, queries, query_categories)


def exact_top_k(
    base: np.ndarray, queries: np.ndarray, k: int, mask: np.ndarray | None = None, chunk: int = 200_000
) -> np.ndarray:
    """Brute-force cosine top-k (row indices, best first) in chunks, so 1M x 512 fits in memory.

    ``mask`` (bool per base row) restricts the candidates, for the filtered ground truth.
    """
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(queries), k), dtype=np.int64)
    for start in range(0, len(base), chunk):
        block = base[start : start + chunk]
        scores = queries @ block.T
        if mask is not None:
            scores[:, ~mask[start : start + chunk]] = -np.inf
        kk = min(k, scores.shape[1])
        top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        merged_scores = np.concatenate([best_scores, np.take_along_axis(scores, top, axis=1)], axis=1)
        merged_ids = np.concatenate([best_ids, top + start], axis=1)
        order = np.argsort(-merged_scores, axis=1)[:, :k]
        best_scores = np.take_along_axis(merged_scores, order, axis=1)
        best_ids = np.take_along_axis(merged_ids, order, axis=1)
    return best_ids


def filtered_top_k(data: Dataset, k: int) -> np.ndarray:
    """Exact top-k per query among the rows of that query's filter category."""
    result = np.zeros((len(data.queries), k), dtype=np.int64)
    for category in np.unique(data.query_categories):
        rows = np.flatnonzero(data.query_categories == category)
        result[rows] = exact_top_k(data.base, data.queries[rows], k, mask=data.categories == category)
    return result
