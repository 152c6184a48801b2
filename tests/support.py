"""Helpers for tests that run real processes: free ports, waiting for HTTP, running the CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
LOOKALIKE = [sys.executable, "-m", "api.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**overrides: str) -> dict[str, str]:
    """The current environment minus any LOOKALIKE_/DATABASE_URL/REDIS_URL settings, plus overrides."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LOOKALIKE_") and k not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update(overrides)
    return env


def run_cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LOOKALIKE, *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout
    )


def wait_for_http(
    url: str, process: subprocess.Popen[bytes] | None = None, timeout: float = 120
) -> httpx.Response:
    """Poll until the URL answers (any status); fail early if the process died."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            return httpx.get(url, timeout=5)
        except httpx.HTTPError as exc:
            last_error = exc
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last_error}")
