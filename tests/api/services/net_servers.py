"""Small real TCP servers on 127.0.0.1 for fetch tests: one that counts connections and serves an
image, one that trickles its body a byte at a time."""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class LoopbackServer:
    """Accepts connections, counts them, records the Host header, answers with ``body``.

    ``trickle_s``: send the body one byte per interval (a server that never quite times out).
    """

    def __init__(
        self,
        body: bytes,
        *,
        trickle_s: float | None = None,
        status: str = "200 OK",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.body = body
        self.trickle_s = trickle_s
        self.status = status
        self.headers = headers or {"Content-Type": "image/jpeg"}
        self.connections = 0
        self.hosts: list[str] = []
        self.durations: list[float] = []
        """Seconds each connection lasted, until the client went away or the body was sent."""
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def url(self, path: str = "/image.jpg", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        start = time.monotonic()
        try:
            self._answer(conn)
        finally:
            self.durations.append(time.monotonic() - start)

    def _answer(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(5)
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                request += chunk
            for line in request.decode("latin-1").split("\r\n")[1:]:
                if line.lower().startswith("host:"):
                    self.hosts.append(line.split(":", 1)[1].strip())
            head = [f"HTTP/1.1 {self.status}", f"Content-Length: {len(self.body)}", "Connection: close"]
            head += [f"{k}: {v}" for k, v in self.headers.items()]
            conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
            if self.trickle_s is None:
                conn.sendall(self.body)
                return
            for byte in self.body:
                if self._closed.wait(self.trickle_s):
                    return
                conn.sendall(bytes([byte]))

    def close(self) -> None:
        self._closed.set()
        self.sock.close()
        self._thread.join(timeout=2)


def wait_until(predicate: object, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False
