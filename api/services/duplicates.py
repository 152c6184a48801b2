"""The duplicate finder: clusters of products whose photos are near-identical.

Shops re-upload the same photo under several SKUs, or the same photo resized, recompressed or
lightly cropped; each is a row that shoppers see twice and that search ranks side by side.
Stored image vectors already measure that: copies of one photo lie far closer together than
any two different photos do. So every product asks the vector index for its nearest neighbours
within a distance (:mod:`api.db.duplicates`), and the pairs found are joined into clusters with
union-find -- a copy of a copy belongs to the same cluster even when k-NN reported only one of
the two links.

Which vectors: MobileNetV2's by default. They are always there (the fallback encoder has real
weights on every install), and the default threshold was measured on them (see
``DEFAULT_THRESHOLDS``). CLIP's vectors work too (``vectors="clip"``); their threshold follows
Immich's duplicate detection, which uses the same cosine distance on CLIP ViT-B-32 vectors.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from api.db.catalog import Catalog, plain_key
from api.db.duplicates import (
    Neighbour,
    VectorKind,
    batch_keys,
    count_vectors,
    listings,
    neighbours_within,
)
from api.db.engine import Database
from api.errors import LookalikeError
from api.settings import Settings
from encoder.registry import MOBILENET_MODEL_ID

DEFAULT_THRESHOLDS: dict[VectorKind, float] = {"mobilenet": 0.1, "clip": 0.01}
"""Cosine distance under which two photos count as the same photo.

MobileNetV2 (measured, ``tests/api/services/test_duplicates.py`` on the clothing set): JPEG q=70
re-encodes, half-size copies and 5%-cropped copies of 50 photos lie at most 0.0xx from their
original, while the closest two different photos of the 3,068 train photos are 0.xx apart.
CLIP: Immich's default ``maxDistance`` for its CLIP-based duplicate detection (0.01).
"""
MAX_THRESHOLD = 0.5
"""Beyond this the "duplicates" are merely similar products, and clusters swallow whole categories."""
DEFAULT_NEIGHBOURS = 10
DEFAULT_BATCH = 256
DEFAULT_LANES = 2
RANDOM_SUFFIX = "@random"
"""As :data:`api.services.encoders.RANDOM_SUFFIX` (not imported: that module loads torch)."""


def stored_model_id(kind: VectorKind, settings: Settings) -> str:
    """The model id that current vectors of this kind carry in the catalog."""
    if kind == "mobilenet":
        return MOBILENET_MODEL_ID
    return settings.clip_model + (RANDOM_SUFFIX if settings.clip_random_weights else "")


@dataclass(frozen=True)
class DuplicateQuery:
    threshold: float | None = None
    """Cosine distance cut; None: the default for the vectors used."""
    category: str | None = None
    vectors: VectorKind = "mobilenet"
    neighbours: int = DEFAULT_NEIGHBOURS
    batch: int = DEFAULT_BATCH
    lanes: int = DEFAULT_LANES
    """Batches searched at once, each on its own connection."""

    @property
    def cut(self) -> float:
        return DEFAULT_THRESHOLDS[self.vectors] if self.threshold is None else self.threshold

    def check(self) -> None:
        """Operator-facing validation, shared by the CLI and the HTTP route."""
        if self.vectors not in DEFAULT_THRESHOLDS:
            raise LookalikeError(f"vectors must be one of {sorted(DEFAULT_THRESHOLDS)}, not {self.vectors!r}")
        if not 0 <= self.cut <= MAX_THRESHOLD:
            raise LookalikeError(
                f"threshold must be a cosine distance from 0 to {MAX_THRESHOLD}, not {self.cut}"
            )
        if not 1 <= self.neighbours <= 100:
            raise LookalikeError(f"neighbours must be from 1 to 100, not {self.neighbours}")
        if not 1 <= self.lanes <= 16:
            raise LookalikeError(f"lanes must be from 1 to 16, not {self.lanes}")


@dataclass
class Member:
    key: int | str
    sku: str | None
    name: str | None
    category: str | None
    image_url: str | None
    url: str | None
    nearest: float
    """Distance to the closest other member of its cluster."""


@dataclass
class Cluster:
    members: list[Member]

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def max_nearest(self) -> float:
        return max(m.nearest for m in self.members)


@dataclass
class DuplicateReport:
    vectors: VectorKind
    model: str
    threshold: float
    category: str | None
    products_checked: int
    clusters: list[Cluster] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def duplicate_products(self) -> int:
        return sum(c.size for c in self.clusters)

    def as_dict(self) -> dict[str, Any]:
        return {
            "vectors": self.vectors,
            "model": self.model,
            "threshold": self.threshold,
            "category": self.category,
            "products_checked": self.products_checked,
            "clusters_found": len(self.clusters),
            "duplicate_products": self.duplicate_products,
            "elapsed_s": round(self.elapsed_s, 3),
            "clusters": [
                {
                    "size": c.size,
                    "max_distance": round(c.max_nearest, 6),
                    "products": [{**vars(m), "nearest": round(m.nearest, 6)} for m in c.members],
                }
                for c in self.clusters
            ],
        }

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["cluster", "size", "id", "sku", "name", "category", "image_url", "url", "nearest"])
        for number, cluster in enumerate(self.clusters, start=1):
            for m in cluster.members:
                writer.writerow(
                    [
                        number,
                        cluster.size,
                        m.key,
                        m.sku,
                        m.name,
                        m.category,
                        m.image_url,
                        m.url,
                        f"{m.nearest:.6f}",
                    ]
                )
        return out.getvalue()


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[Any, Any] = {}

    def find(self, x: Any) -> Any:
        parent = self.parent.setdefault(x, x)
        while parent != x:  # path halving keeps the trees flat without recursion
            self.parent[x] = self.parent.setdefault(parent, parent)
            x, parent = parent, self.parent[parent]
        return x

    def union(self, a: Any, b: Any) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb, key=repr)] = min(ra, rb, key=repr)


def find_duplicates(
    database: Database,
    catalog: Catalog,
    settings: Settings,
    query: DuplicateQuery,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> DuplicateReport:
    """Walk the catalog in key order; ``progress(done, total)`` after each batch."""
    query.check()
    started = time.perf_counter()
    model = stored_model_id(query.vectors, settings)
    cut = query.cut
    with database.engine.connect() as conn:
        total = count_vectors(conn, catalog, query.vectors, model, query.category)
        batches: list[list[Any]] = []
        after: Any = None
        while keys := batch_keys(
            conn, catalog, query.vectors, model, after=after, size=query.batch, category=query.category
        ):
            batches.append(keys)
            after = keys[-1]
        conn.commit()
    if progress is not None:
        progress(0, total)

    def search(keys: list[Any]) -> tuple[int, list[Neighbour]]:
        with database.engine.connect() as conn:
            found = neighbours_within(
                conn,
                catalog,
                query.vectors,
                model,
                first=keys[0],
                last=keys[-1],
                k=query.neighbours,
                max_distance=cut,
                category=query.category,
                ef_search=max(40, 4 * query.neighbours),
            )
        return len(keys), found

    links = _UnionFind()
    nearest: dict[Any, float] = {}
    done = 0
    # Lanes: PostgreSQL runs one k-NN batch per connection on one core; a second lane keeps the
    # other core busy (as ingest lanes do). Batches are independent, the union-find is not shared.
    with ThreadPoolExecutor(max_workers=max(1, query.lanes)) as pool:
        for count, found in pool.map(search, batches):
            for pair in found:
                links.union(pair.a, pair.b)
                for key in (pair.a, pair.b):
                    nearest[key] = min(nearest.get(key, pair.distance), pair.distance)
            done += count
            if progress is not None:
                progress(done, total)
    with database.engine.connect() as conn:
        groups: dict[Any, list[Any]] = {}
        for key in nearest:
            groups.setdefault(links.find(key), []).append(key)
        shown = listings(conn, catalog, [key for keys in groups.values() for key in keys])
    clusters = []
    for keys in groups.values():
        members = []
        for key in sorted(keys, key=lambda k: (str(type(k)), k)):
            row = shown.get(key, {})
            members.append(
                Member(
                    key=plain_key(key),
                    sku=row.get("sku"),
                    name=row.get("name"),
                    category=row.get("category"),
                    image_url=row.get("image_url"),
                    url=row.get("url"),
                    nearest=nearest[key],
                )
            )
        clusters.append(Cluster(members))
    # Biggest first, then the most certain (smallest spread): what a person should look at first.
    clusters.sort(key=lambda c: (-c.size, c.max_nearest))
    return DuplicateReport(
        vectors=query.vectors,
        model=model,
        threshold=cut,
        category=query.category,
        products_checked=total,
        clusters=clusters,
        elapsed_s=time.perf_counter() - started,
    )
