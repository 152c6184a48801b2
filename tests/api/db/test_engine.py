"""Connecting: the embedded server's lifecycle, and one clear error for each bad database."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from api.db import migrate
from tests.support import REPO_ROOT, clean_env, free_port, run_cli

pytestmark = pytest.mark.slow  # starts embedded PostgreSQL servers: not in `make test-fast`

DEBIAN_PG_BIN = Path("/usr/lib/postgresql/15/bin")


def test_bad_database_url_is_one_clear_line(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    result = run_cli(
        "db", "upgrade", env=clean_env(DATABASE_URL=f"postgresql://shop:secret@127.0.0.1:{port}/shop")
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("lookalike: error:")]
    assert len(error) == 1
    assert f"cannot connect to PostgreSQL at postgresql+psycopg://shop:***@127.0.0.1:{port}/shop" in error[0]
    assert "secret" not in result.stderr  # the password is never echoed


def test_unparseable_database_url_is_one_clear_line() -> None:
    result = run_cli("db", "current", env=clean_env(DATABASE_URL="not a url"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "DATABASE_URL is not a usable PostgreSQL URL" in result.stderr


@pytest.fixture(scope="module")
def postgres_without_pgvector() -> Iterator[str]:
    """Debian's PostgreSQL 15, which ships no pgvector: the 'existing server' a shop might point us at."""
    if not (DEBIAN_PG_BIN / "postgres").exists():
        pytest.skip("Debian postgresql-15 is not installed (scripts/system-deps.sh installs it)")
    # Not under pytest's tmp dir: that one is private to root, and PostgreSQL refuses to run as root.
    base = Path(tempfile.mkdtemp(prefix="lookalike-pg15-"))
    pgdata = base / "data"
    run_as: list[str] = []
    if os.geteuid() == 0:
        run_as = ["runuser", "-u", "postgres", "--"]
        shutil.chown(base, "postgres")
    port = free_port()
    subprocess.run(
        [*run_as, str(DEBIAN_PG_BIN / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {pgdata} -h 127.0.0.1"
    subprocess.run(
        [
            *run_as,
            str(DEBIAN_PG_BIN / "pg_ctl"),
            "-D",
            str(pgdata),
            "-o",
            options,
            "-w",
            "-l",
            str(pgdata / "log"),
            "start",
        ],
        check=True,
        capture_output=True,
    )
    yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    subprocess.run(
        [*run_as, str(DEBIAN_PG_BIN / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "stop"], capture_output=True
    )
    shutil.rmtree(base, ignore_errors=True)


def test_server_without_pgvector_says_what_to_install(postgres_without_pgvector: str) -> None:
    result = run_cli("db", "upgrade", env=clean_env(DATABASE_URL=postgres_without_pgvector))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "does not have pgvector" in result.stderr
    assert "Install pgvector >= 0.8" in result.stderr
    assert "postgresql-<major>-pgvector" in result.stderr


def test_embedded_database_persists_across_restarts(tmp_path: Path) -> None:
    """Two separate processes on the same data dir: the second sees what the first stored."""
    env = clean_env(LOOKALIKE_DATA_DIR=str(tmp_path / "data"))
    first = run_cli("db", "upgrade", env=env)
    assert first.returncode == 0, first.stderr
    script = (
        "import sys; from sqlalchemy import text; from api.settings import Settings; "
        "from api.db.engine import Database; db = Database(Settings()); "
        "c = db.engine.connect(); "
        "c.execute(text(sys.argv[1])); c.commit(); "
        "print(c.execute(text('SELECT count(*) FROM products')).scalar())"
    )
    insert = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            "INSERT INTO products (sku, name) VALUES ('kept', 'survives restart')",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert insert.stdout.strip() == "1"
    # the embedded server stopped with its last process; this one starts it again on the same files
    again = subprocess.run(
        [sys.executable, "-c", script, "SELECT 1"], env=env, capture_output=True, text=True, check=True
    )
    assert again.stdout.strip() == "1"
    current = run_cli("db", "current", env=env)
    assert f"revision {migrate.head_revision()}" in current.stdout and "pgvector 0.8" in current.stdout
    assert not postgres_processes_for(tmp_path / "data"), "the embedded server outlived its last user"


def test_a_killed_user_does_not_keep_the_embedded_server_running(tmp_path: Path) -> None:
    user, env = _embedded_user(tmp_path, "time.sleep(600)")
    user.kill()  # SIGKILL: its exit hook never takes it off pgserver's list of users
    user.wait()
    assert postgres_processes_for(tmp_path / "data", expect_none=False), (
        "the server should outlive a killed user"
    )
    current = run_cli("db", "current", env=env)  # the next user forgets the dead one, and is the last
    assert current.returncode == 0, current.stderr
    assert not postgres_processes_for(tmp_path / "data"), "a killed user kept the embedded server running"


def test_sigterm_ends_a_command_through_its_exit_hooks(tmp_path: Path) -> None:
    """`kill <pid>` on a long-running command (here `db current`, made to hang) lets it clean up."""
    hang = (
        "cli._db_current = lambda args, settings: (print('running', flush=True), time.sleep(600)); "
        "cli.main(['db', 'current'])"
    )
    command, _ = _embedded_user(tmp_path, hang)
    assert command.stdout is not None and command.stdout.readline().strip() == "running"  # handler in place
    command.terminate()
    assert command.wait(30) == 128 + 15
    assert not postgres_processes_for(tmp_path / "data"), "the embedded server outlived its only user"


def _embedded_user(tmp_path: Path, then: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """A process that has joined the embedded server of a migrated data dir, then runs ``then``."""
    env = clean_env(LOOKALIKE_DATA_DIR=str(tmp_path / "data"))
    assert run_cli("db", "upgrade", env=env).returncode == 0
    script = (
        "import time, api.cli as cli; from api.settings import Settings; from api.db.engine import Database; "
        f"Database(Settings()).engine.connect().close(); print('connected', flush=True); {then}"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "connected"
    return process, env


def postgres_processes_for(data_dir: Path, expect_none: bool = True) -> list[psutil.Process]:
    deadline = time.monotonic() + 10
    while True:
        found = [
            p
            for p in psutil.process_iter(["name", "cmdline"])
            if p.info["name"] == "postgres" and str(data_dir) in " ".join(p.info["cmdline"] or [])
        ]
        if bool(found) != expect_none or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_embedded_server_is_sized_for_vector_search(server_url: str) -> None:
    """The default 128 MB of shared buffers cannot hold a catalog's HNSW index."""
    if os.environ.get("TEST_DATABASE_URL"):
        pytest.skip("an external server keeps its own configuration")
    from sqlalchemy import create_engine, text

    from api.db.embedded import shared_buffers_mb

    engine = create_engine(server_url)
    with engine.connect() as conn:
        shared_buffers = conn.execute(
            text("SELECT setting::bigint * 8 / 1024 FROM pg_settings WHERE name = 'shared_buffers'")
        ).scalar()
        maintenance = conn.execute(text("SHOW maintenance_work_mem")).scalar()
    engine.dispose()
    assert shared_buffers == shared_buffers_mb() > 128
    assert maintenance == "1GB"
