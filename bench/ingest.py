"""Ingestion throughput end to end: read, decode, encode with CLIP and MobileNetV2, write.

    .venv/bin/python bench/ingest.py [--images 512] [--runtime auto|torch|onnx|onnx-int8]
                                     [--defer-indexes auto|always|never] [--lanes N]
                                     [--device auto|cpu|cuda] [--catalog DATA_DIR]

Runs the real pipeline (``lookalike ingest`` on a folder: upsert rows, claim batches with
SKIP LOCKED, fetch, decode, encode both models, executemany the vectors) into a fresh embedded
database, and prints images/s. CLIP uses random weights: the same compute as the real checkpoint.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from sqlalchemy import text  # noqa: E402

from api.db import migrate  # noqa: E402
from api.db.engine import Database  # noqa: E402
from api.services.encoders import EncoderHub  # noqa: E402
from api.services.ingest.bulk import timed_ingest  # noqa: E402
from api.services.ingest.lanes import ingest_lanes  # noqa: E402
from api.services.ingest.sources import folder_items  # noqa: E402
from api.services.ingest.worker import EmbeddingWorker  # noqa: E402
from api.settings import Settings  # noqa: E402

DATASET = Path(os.environ.get("LOOKALIKE_DATASET_DIR", REPO_ROOT.parent / "shared/datasets/clothing-small"))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--runtime", default="auto", choices=["auto", "torch", "onnx", "onnx-int8"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--defer-indexes", default="auto", choices=["auto", "always", "never"])
    parser.add_argument("--lanes", type=int, default=0, help="batches at once (0: the CLI's default)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument(
        "--catalog",
        type=Path,
        help="data dir of an existing embedded catalog (e.g. bench/vector_writes.py's) to add the "
        "photos to, instead of a fresh one; they are deleted again afterwards",
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lookalike-bench-ingest-"))
    media = work / "media"
    photos = sorted((DATASET / "train").glob("*/*.jpg"))[: args.images]
    for photo in photos:  # inside the media dir, so ingest stores relative paths and copies nothing
        target = media / photo.parent.name / photo.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(photo, target)
    settings = Settings(  # type: ignore[call-arg]
        data_dir=args.catalog or work / "data",
        image_root=media,
        clip_random_weights=True,
        clip_runtime=args.runtime,
        batch_size=args.batch_size,
        device=args.device,
        embed_lanes=args.lanes or None,
        _env_file=None,
    )
    lanes = ingest_lanes(settings)
    database = Database(settings)
    migrate.upgrade(database)
    hub = EncoderHub(settings)
    hub.load()
    worker = EmbeddingWorker(settings, database, hub, lanes=lanes)
    try:
        tally, elapsed = timed_ingest(
            worker,
            folder_items(media, category_from_folder=True),
            show_progress=False,
            defer_indexes=args.defer_indexes,
        )
    finally:
        if args.catalog is not None:
            skus = [f"{photo.parent.name}/{photo.name}" for photo in photos]
            with database.engine.begin() as conn:
                conn.execute(text("DELETE FROM products WHERE sku = ANY(:skus)"), {"skus": skus})
        worker.close()
        hub.close()
        database.dispose()
        shutil.rmtree(work, ignore_errors=True)
    clip = hub.health()["clip"]
    print(
        f"{tally.embedded} images embedded (CLIP {clip.get('model')} on {clip.get('device')}, "
        f"runtime {args.runtime}, batch {args.batch_size}, {lanes} lanes, indexes {args.defer_indexes}) "
        "+ MobileNetV2 "
        f"in {elapsed:.1f} s: "
        f"{tally.embedded / elapsed:.1f} images/s end to end; {tally.failed} failed"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
