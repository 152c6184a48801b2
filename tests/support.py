"""Helpers for tests that run real processes: free ports, waiting for HTTP, running the CLI."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

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


class ImageServer:
    """A real HTTP server on 127.0.0.1 serving the cases image fetching must survive."""

    def __init__(self, image: bytes) -> None:
        import http.server
        import threading

        self.image = image
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.requests += 1
                path = self.path.split("?")[0]
                if path == "/good.jpg" or (path == "/missing.jpg" and server.missing_exists):
                    self._send(200, "image/jpeg", server.image)
                elif path == "/corrupt.jpg":
                    self._send(200, "image/jpeg", b"\xff\xd8\xff\xe0" + b"garbage" * 50)
                elif path == "/slow.jpg":
                    time.sleep(server.slow_s)
                    self._send(200, "image/jpeg", server.image)
                elif path in ("/page.html", "/page.jpg"):
                    self._send(200, "text/html", b"<html><body>not an image</body></html>")
                elif path == "/huge.jpg":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.end_headers()
                    chunk = b"\xff\xd8\xff" + b"\0" * (1 << 20)
                    try:
                        for _ in range(64):  # 64 MiB, no Content-Length: the reader must stop on its own
                            self.wfile.write(chunk)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                elif path in ("/loop", "/loop.jpg"):
                    self._redirect(path)
                elif path in ("/to-private", "/metadata.jpg"):
                    self._redirect("http://169.254.169.254/latest/meta-data/")
                elif path == "/lan.jpg":
                    self._redirect("http://10.0.0.1/a.jpg")
                elif path == "/redirect-good":
                    self._redirect("/good.jpg")
                else:
                    self._send(404, "text/plain", b"not found")

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

            def _redirect(self, location: str) -> None:
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.requests = 0
        self.slow_s = 5.0
        self.missing_exists = False
        """Flip to make /missing.jpg appear (a fixed source that should be retried)."""
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class EncoderServiceProcess:
    """``lookalike encoder serve`` (random-weight CLIP on torch, no MobileNetV2) on a fixed port,
    startable again after a kill: the real encoder service for client and pool tests."""

    def __init__(self, port: int, log: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str, timeout_s: float = 300.0) -> None:
        command = [
            *LOOKALIKE, "encoder", "serve", "--host", "127.0.0.1", "--port", str(self.port),
            "--random-weights", "--no-mobilenet", "--device", "cpu", "--batch-size", "8",
            "--clip-runtime", "torch", "--log-level", "warning", *extra,
        ]  # fmt: skip
        with self.log.open("ab") as sink:
            self.proc = subprocess.Popen(
                command, cwd=REPO_ROOT, stdout=sink, stderr=subprocess.STDOUT, env=os.environ
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"encoder service exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        pytest.fail(f"encoder service did not start within {timeout_s}s:\n{self.log.read_text()}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None
