"""``lookalike serve`` as a user runs it, and the health endpoint it answers."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from api.main import build_state, create_app
from api.settings import Settings
from tests.support import LOOKALIKE, REPO_ROOT, clean_env, free_port, wait_for_http

pytestmark = pytest.mark.slow  # starts `lookalike serve`: not in `make test-fast`


def test_serve_answers_health_with_database_and_pgvector_versions(create_database: Callable[[], str]) -> None:
    port = free_port()
    env = clean_env(DATABASE_URL=create_database())
    process = subprocess.Popen(
        [*LOOKALIKE, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        response = wait_for_http(f"http://127.0.0.1:{port}/api/v1/health", process)
        assert response.status_code == 200
        database = response.json()["components"]["database"]
        assert database["status"] == "ok"
        assert database["postgres_version"].split(".")[0].isdigit()
        assert tuple(int(x) for x in database["pgvector_version"].split(".")[:2]) >= (0, 8)
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=30)[0].decode()
    assert process.returncode == 0, output
    assert "Traceback" not in output


def test_health_is_503_when_the_database_is_gone(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(database_url=f"postgresql://nobody@127.0.0.1:{free_port()}/none")
    state = build_state(settings, migrate_database=False, load_models=False)
    with TestClient(create_app(settings, state)) as client:
        response = client.get("/api/v1/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    assert "cannot connect to PostgreSQL" in body["components"]["database"]["reason"]
