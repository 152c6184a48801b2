"""The duplicate finder: clusters of products whose photos are the same photo.

Shops re-upload the same photo under several SKUs, or the same photo resized, recompressed or
lightly cropped; each is a row that shoppers see twice and that search ranks side by side.

Two stages. **Candidates** come from the stored image vectors: every product asks the vector
index for its nearest neighbours within a cosine distance (:mod:`api.db.duplicates`), a k-NN
query per product instead of an all-pairs scan. **Verification** then compares the candidate
photos' pixels (:mod:`api.services.duplicate_pixels`): vectors alone cannot tell a copy of a
photo from a second photo of the same product (measured on the clothing set, a half-size copy
lies farther from its original than two different shots of one hat do), pixels can. Verified
pairs are joined into clusters with union-find, so a copy of a copy belongs to the same cluster
even when only one of the two links was reported.

Which vectors: MobileNetV2's by default. They are always there (the fallback encoder has real
weights on every install), and the default candidate distance was measured on them (see
``DEFAULT_THRESHOLDS``). CLIP's vectors work too (``vectors="clip"``).
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
from api.services.duplicate_pixels import MIN_SIMILARITY, PixelCheck
from api.services.images.download import fetch_policy
from api.settings import Settings
from encoder.registry import MOBILENET_MODEL_ID

DEFAULT_THRESHOLDS: dict[VectorKind, float] = {"mobilenet": 0.12, "clip": 0.05}
"""Cosine distance under which a pair becomes a candidate (then verified on its pixels).

MobileNetV2 (measured, ``tests/api/services/test_duplicates.py`` on the clothing set): JPEG q=70
re-encodes of 50 photos lie at most 0.0004 from their original, 5%-cropped copies 0.044 and
half-size copies 0.085; 0.12 leaves a margin. Different photos come as close as 0.047, which is
why pairs are verified. CLIP: not measured (no CLIP weights on the test machine); 0.05 is a
starting point, five times Immich's cut for its CLIP duplicate detection: raise it if known copies
are missed -- the pixel check keeps a loose cut from reporting similar products.
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
    verify: bool = True
    """Compare the candidates' pixels; False reports every candidate pair (vectors only)."""
    min_similarity: float = MIN_SIMILARITY
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
        if not 0 < self.min_similarity <= 1:
            raise LookalikeError(f"min_similarity must be above 0 and at most 1, not {self.min_similarity}")


@dataclass
class Member:
    key: int | str
    sku: str | None
    name: str | None
    category: str | None
    image_url: str | None
    url: str | None
    nearest: float
    """Vector distance to the closest other member of its cluster."""
    similarity: float | None
    """Best pixel similarity to another member (None: not verified)."""


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
    verified: bool = True
    min_similarity: float | None = None
    candidate_pairs: int = 0
    rejected_pairs: int = 0
    """Candidates whose pixels differ: similar products, not copies."""
    unreadable: dict[str, str] = field(default_factory=dict)
    """Products whose photo could not be read for verification: key -> reason (their pairs are left out)."""
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
            "verified": self.verified,
            "min_similarity": self.min_similarity,
            "candidate_pairs": self.candidate_pairs,
            "rejected_pairs": self.rejected_pairs,
            "unreadable": self.unreadable,
            "clusters_found": len(self.clusters),
            "duplicate_products": self.duplicate_products,
            "elapsed_s": round(self.elapsed_s, 3),
            "clusters": [
                {
                    "size": c.size,
                    "max_distance": round(c.max_nearest, 6),
                    "products": [
                        {
                            **vars(m),
                            "nearest": round(m.nearest, 6),
                            "similarity": None if m.similarity is None else round(m.similarity, 6),
                        }
                        for m in c.members
                    ],
                }
                for c in self.clusters
            ],
        }

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(
            ["cluster", "size", "id", "sku", "name", "category", "image_url", "url", "nearest", "similarity"]
        )
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
                        "" if m.similarity is None else f"{m.similarity:.6f}",
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


Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: stage ``"vectors"`` per batch of products, ``"pixels"`` per photo."""


def find_duplicates(
    database: Database,
    catalog: Catalog,
    settings: Settings,
    query: DuplicateQuery,
    *,
    progress: Progress | None = None,
) -> DuplicateReport:
    """Candidates from the vector index (in key-ordered batches), verified on pixels, clustered."""
    query.check()
    started = time.perf_counter()
    model = stored_model_id(query.vectors, settings)
    report = DuplicateReport(
        vectors=query.vectors,
        model=model,
        threshold=query.cut,
        category=query.category,
        products_checked=0,
        verified=query.verify,
        min_similarity=query.min_similarity if query.verify else None,
    )
    candidates = _candidates(database, catalog, model, query, report, progress)
    report.candidate_pairs = len(candidates)
    keys = sorted({key for pair in candidates for key in pair}, key=_order)
    with database.connect() as conn:
        shown = listings(conn, catalog, keys)
    similar: dict[tuple[Any, Any], float | None] = dict.fromkeys(candidates)
    if query.verify and candidates:
        check = PixelCheck(fetch_policy(settings), max_pixels=settings.max_image_pixels)
        done = 0

        def loaded(count: int) -> None:
            nonlocal done
            done += count
            if progress is not None:
                progress("pixels", done, len(keys))

        if progress is not None:
            progress("pixels", 0, len(keys))
        check.load({key: shown.get(key, {}).get("image_url") for key in keys}, progress=loaded)
        similar = check.similarities(candidates)
        report.unreadable = {str(plain_key(k)): why for k, why in check.failures.items()}
        kept = {
            pair: distance
            for pair, distance in candidates.items()
            if (found := similar[pair]) is not None and found >= query.min_similarity
        }
        report.rejected_pairs = sum(1 for pair in candidates if similar[pair] is not None) - len(kept)
    else:
        kept = dict(candidates)

    links = _UnionFind()
    nearest: dict[Any, float] = {}
    best: dict[Any, float] = {}
    for (a, b), distance in kept.items():
        links.union(a, b)
        for key in (a, b):
            nearest[key] = min(nearest.get(key, distance), distance)
            if (found := similar.get((a, b))) is not None:
                best[key] = max(best.get(key, found), found)
    groups: dict[Any, list[Any]] = {}
    for key in nearest:
        groups.setdefault(links.find(key), []).append(key)
    for members in groups.values():
        cluster = []
        for key in sorted(members, key=_order):
            row = shown.get(key, {})
            cluster.append(
                Member(
                    key=plain_key(key),
                    sku=row.get("sku"),
                    name=row.get("name"),
                    category=row.get("category"),
                    image_url=row.get("image_url"),
                    url=row.get("url"),
                    nearest=nearest[key],
                    similarity=best.get(key),
                )
            )
        report.clusters.append(Cluster(cluster))
    # Biggest first, then the most certain (smallest spread): what a person should look at first.
    report.clusters.sort(key=lambda c: (-c.size, c.max_nearest))
    report.elapsed_s = time.perf_counter() - started
    return report


def _order(key: Any) -> tuple[str, Any]:
    """Keys of one catalog share a type; the type name only keeps mixed test data sortable."""
    return (type(key).__name__, key)


def _candidates(
    database: Database,
    catalog: Catalog,
    model: str,
    query: DuplicateQuery,
    report: DuplicateReport,
    progress: Progress | None,
) -> dict[tuple[Any, Any], float]:
    """Every pair within the distance, once (smaller key first), from per-product k-NN queries."""
    with database.connect() as conn:
        report.products_checked = count_vectors(conn, catalog, query.vectors, model, query.category)
        batches: list[list[Any]] = []
        after: Any = None
        while keys := batch_keys(
            conn, catalog, query.vectors, model, after=after, size=query.batch, category=query.category
        ):
            batches.append(keys)
            after = keys[-1]
        conn.commit()
    total = report.products_checked
    if progress is not None:
        progress("vectors", 0, total)

    def search(keys: list[Any]) -> tuple[int, list[Neighbour]]:
        with database.connect() as conn:
            found = neighbours_within(
                conn,
                catalog,
                query.vectors,
                model,
                first=keys[0],
                last=keys[-1],
                k=query.neighbours,
                max_distance=query.cut,
                category=query.category,
                ef_search=max(40, 4 * query.neighbours),
            )
        return len(keys), found

    pairs: dict[tuple[Any, Any], float] = {}
    done = 0
    # Lanes: PostgreSQL runs one k-NN batch per connection on one core; a second lane keeps the
    # other core busy (as ingest lanes do). Batches are independent; results merge here.
    with ThreadPoolExecutor(max_workers=max(1, query.lanes)) as pool:
        for count, found in pool.map(search, batches):
            for n in found:
                pair = (n.a, n.b) if _order(n.a) <= _order(n.b) else (n.b, n.a)
                pairs[pair] = min(pairs.get(pair, n.distance), n.distance)
            done += count
            if progress is not None:
                progress("vectors", done, total)
    return pairs
