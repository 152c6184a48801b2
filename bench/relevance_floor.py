"""Where does a search's list end? Measures the match floor (api.services.relevance) on real photos.

Builds a catalog from the clothing dataset's train split with the real MobileNetV2 (CLIP without
weights, i.e. the fallback mode this machine can measure), then searches with test-split photos
and follows next_offset until the list ends. Per query: how long the list is, how many of its
products are of the query's category (precision), how many of that category's products it found
(recall), and the precision of the 24 products right after the end (what "Load more" used to add).
Also times the background query each vector search now adds.

    .venv/bin/python bench/relevance_floor.py --per-class 40 --queries 5
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from api.db.search import Filters, Page, VectorColumn, VectorQuery, search
from api.main import build_state, create_app
from api.services import relevance
from api.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=Path("/work/shared/datasets/clothing-small"))
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--queries", type=int, default=5, help="test photos per class")
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_HOME"] = tempfile.mkdtemp()
    settings = Settings(
        database_url=args.database_url,
        clip_random_weights=False,
        admin_token="bench",
        data_dir=Path(tempfile.mkdtemp()),
        category_indexes=False,
        prewarm=False,
    )
    state = build_state(settings)
    classes = sorted(p.name for p in (args.dataset / "train").iterdir() if p.is_dir())
    sizes: dict[str, int] = {}
    started = time.perf_counter()
    for category in classes:
        photos = sorted((args.dataset / "train" / category).glob("*.jpg"))[: args.per_class]
        sizes[category] = len(photos)
        for i, photo in enumerate(photos):
            state.products.upsert(
                f"{category}-{i}", {"name": f"{category} {i}", "category": category}, photo.read_bytes()
            )
    print(f"catalog: {sum(sizes.values())} products in {time.perf_counter() - started:.0f}s")
    lengths, precisions, recalls, tails, matches_at_end = [], [], [], [], []
    with TestClient(create_app(settings, state)) as client:
        for category in classes:
            for photo in sorted((args.dataset / "test" / category).glob("*.jpg"))[: args.queries]:
                image = base64.b64encode(photo.read_bytes()).decode()
                hits, offset = [], 0
                while offset is not None:
                    body = client.post(
                        "/api/v1/search", json={"image": image, "top_k": 24, "offset": offset}
                    ).json()
                    assert body["mode"] == "mobilenet_fallback", body.get("mode")
                    hits += body["results"]
                    offset = body["next_offset"]
                same = sum(h["category"] == category for h in hits)
                lengths.append(len(hits))
                precisions.append(same / len(hits) if hits else 0.0)
                recalls.append(same / sizes[category])
                matches_at_end.append(hits[-1]["match"] if hits else 0.0)
                # What the old unbounded paging showed next: the 24 products after the end.
                with state.database.read() as conn:
                    vector = state.search._image_vector(
                        state.hub.mobilenet(),
                        state.hub.mobilenet_model_id,
                        _query_image(state, photo),
                        _Timer(),
                    )
                    query = VectorQuery(VectorColumn.FALLBACK, vector, state.hub.mobilenet_model_id)
                    deep = search(conn, state.catalog, query, Filters(), Page(len(hits) + 24, 0))
                    tail = deep[len(hits) :]
                    tails.append(sum(h.category == category for h in tail) / len(tail) if tail else 0.0)
                    t0 = time.perf_counter()
                    for _ in range(20):
                        relevance.background(conn, state.catalog, query)
                    background_ms = (time.perf_counter() - t0) / 20 * 1000
    state.close()
    total = sum(sizes.values())
    print(f"queries: {len(lengths)}; catalog {total}, {args.per_class} per class ({len(classes)} classes)")
    print(f"list length: median {statistics.median(lengths):.0f}, min {min(lengths)}, max {max(lengths)}")
    print(f"precision (same category) in the list: mean {statistics.mean(precisions):.3f}")
    print(f"recall of the query's category: mean {statistics.mean(recalls):.3f}")
    print(f"precision of the 24 products after the end: mean {statistics.mean(tails):.3f}")
    print(f"match of the last listed product: median {statistics.median(matches_at_end):.3f}")
    print(f"background query: {background_ms:.2f} ms (last query, mean of 20)")


class _Timer:
    def stage(self, _name: str):
        import contextlib

        return contextlib.nullcontext()


def _query_image(state, photo: Path):
    from api.services.search import QueryImage

    return QueryImage(photo.read_bytes(), state.settings.max_image_pixels, state.hub.decode_size, _Timer())


if __name__ == "__main__":
    main()
