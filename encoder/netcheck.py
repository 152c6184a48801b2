"""A few-second reachability probe, so an offline download fails in seconds, not minutes.

huggingface_hub retries a failed HEAD request five times with backoff (about 45 s per
file, two files per model) before giving up; torch.hub waits on the OS resolver. Asking
"can we even open a TCP connection to that host?" first turns that into a prompt error.
"""

from __future__ import annotations

import os
import socket
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from urllib.parse import urlsplit

_PROBE_TIMEOUT_S = 3.0


def host_reachable(url: str, timeout_s: float = _PROBE_TIMEOUT_S) -> bool:
    """True when a TCP connection to ``url``'s host (or the configured HTTPS proxy) opens in time."""
    target = urlsplit(_proxy_for(url) or url)
    host = target.hostname
    if not host:
        return False
    port = target.port or (443 if target.scheme == "https" else 80)
    # getaddrinfo has no timeout of its own; a thread bounds it.
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        future = pool.submit(_connect, host, port, timeout_s)
        return future.result(timeout=timeout_s + 0.5)
    except (FutureTimeout, OSError):
        return False
    finally:
        pool.shutdown(wait=False)


def _connect(host: str, port: int, timeout_s: float) -> bool:
    with socket.create_connection((host, port), timeout=timeout_s):
        return True


def _proxy_for(url: str) -> str | None:
    scheme = urlsplit(url).scheme
    for name in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY", "all_proxy", "ALL_PROXY"):
        if os.environ.get(name):
            return os.environ[name]
    return None


def hf_offline_forced() -> bool:
    """The user told huggingface_hub never to touch the network."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hf_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")
