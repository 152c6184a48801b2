"""The fetch policy built from the settings, and the process-wide bound on API image downloads."""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

from api.middleware.admission import Gate
from api.services.fetch import FetchPolicy, fetch_image
from api.settings import Settings


def fetch_policy(settings: Settings) -> FetchPolicy:
    return FetchPolicy(
        max_bytes=settings.max_upload_bytes,
        allow_private=settings.allow_private_urls,
        image_root=settings.media_dir,
        connect_timeout_s=min(3.0, settings.fetch_timeout_s / 3),
        read_timeout_s=settings.fetch_timeout_s,
        retries=settings.fetch_retries,
        deadline_s=settings.fetch_deadline_s,
        base_url=settings.image_base_url,
        # The operator named this media server, so it may sit on the shop's private network.
        trusted_hosts=frozenset({_host_port(settings.image_base_url)})
        if settings.image_base_url
        else frozenset(),
    )


def _host_port(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


_download_gates: dict[int, Gate] = {}
_download_gates_lock = threading.Lock()


def download_gate(settings: Settings) -> Gate:
    """The process's bound on API image downloads (one gate per configured size).

    Routes run downloads on the server's worker threads; 48 slow image servers used to take all
    of them, so health and text searches waited too. At most ``fetch_concurrency`` downloads run
    at once (each ends by ``fetch_deadline_s``); more are refused at once with 503 ``overloaded``.
    """
    with _download_gates_lock:
        gate = _download_gates.get(settings.fetch_concurrency)
        if gate is None:
            gate = _download_gates[settings.fetch_concurrency] = Gate(
                "image downloads", settings.fetch_concurrency
            )
        return gate


def image_from_url(url: str, settings: Settings) -> bytes:
    """Download a query or product image, within the download bound and the total deadline."""
    policy = fetch_policy(settings)
    if not url.lower().startswith(("http://", "https://")):
        return fetch_image(url, policy)  # a local file under the image root: nothing to wait for
    with download_gate(settings).admit():
        return fetch_image(url, policy)
