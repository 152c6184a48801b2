"""Fetching product and query images by URL without becoming an SSRF proxy.

Every hop is checked: the host must resolve only to public addresses (no loopback, private,
link-local, cloud metadata, multicast or reserved ranges) unless ``allow_private_urls`` is set,
redirects are followed by hand and re-checked, and the body is streamed with a hard size cap.
Relative paths resolve against ``image_root`` (never outside it).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

MAX_REDIRECTS = 5
IMAGE_MAGIC = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",  # TIFF little-endian
    b"MM\x00*",  # TIFF big-endian
)


class FetchError(Exception):
    """A URL that did not give us an image; ``code`` goes into the API's 4xx body."""

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


@dataclass(frozen=True)
class FetchPolicy:
    max_bytes: int
    allow_private: bool = False
    image_root: Path | None = None
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 10.0
    retries: int = 2
    backoff_s: float = 0.3
    trusted_hosts: frozenset[str] = frozenset()
    """``host:port`` pairs exempt from the private-address check (an internal image CDN); redirects
    away from them are checked as usual."""


def looks_like_image(head: bytes) -> bool:
    return head.startswith(IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def check_host(host: str, port: int, allow_private: bool) -> None:
    """Refuse hosts that resolve to any non-public address (all of them are checked)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchError("url_unresolvable", f"cannot resolve host {host!r}: {exc}") from exc
    if allow_private:
        return
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if not address.is_global or address.is_multicast:
            raise FetchError(
                "url_forbidden",
                f"{host} resolves to {address}, a private/loopback/link-local address; refusing to fetch it",
            )


def read_local(path_text: str, policy: FetchPolicy) -> bytes:
    """A relative image path from the catalog, confined to ``image_root``."""
    if policy.image_root is None:
        raise FetchError(
            "url_invalid", f"{path_text!r} is not an http(s) URL and no image root is configured"
        )
    root = policy.image_root.resolve()
    path = (root / path_text).resolve()
    if not path.is_relative_to(root):
        raise FetchError("url_forbidden", f"{path_text!r} points outside the image root")
    if not path.is_file():
        raise FetchError("url_not_found", f"no image file at {path_text!r} under the image root")
    size = path.stat().st_size
    if size > policy.max_bytes:
        raise FetchError(
            "image_too_big", f"{path_text!r} is {size:,} bytes; the limit is {policy.max_bytes:,}"
        )
    return path.read_bytes()


def fetch_image(url: str, policy: FetchPolicy, client: httpx.Client | None = None) -> bytes:
    """Return the image bytes at ``url`` (http/https or a path under image_root), or raise FetchError."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        if scheme:
            raise FetchError("url_invalid", f"unsupported URL scheme {scheme!r}; use http or https")
        return read_local(url, policy)
    own_client = client is None
    client = client or httpx.Client(
        timeout=httpx.Timeout(policy.read_timeout_s, connect=policy.connect_timeout_s),
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": "lookalike-image-fetcher/0.1", "Accept": "image/*"},
    )
    try:
        for attempt in range(policy.retries + 1):
            try:
                return _fetch_once(client, url, policy)
            except FetchError as exc:
                if not exc.retryable or attempt == policy.retries:
                    raise
                time.sleep(policy.backoff_s * 2**attempt)
    finally:
        if own_client:
            client.close()
    raise AssertionError("unreachable")


def _fetch_once(client: httpx.Client, url: str, policy: FetchPolicy) -> bytes:
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(current)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchError("url_invalid", f"{current!r} is not an absolute http(s) URL")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        trusted = f"{parts.hostname}:{port}" in policy.trusted_hosts
        check_host(parts.hostname, port, policy.allow_private or trusted)
        try:
            with client.stream("GET", current) as response:
                if response.is_redirect:
                    location = response.headers.get("location")
                    if not location:
                        raise FetchError("url_bad_response", f"redirect from {current} without a Location")
                    current = urljoin(current, location)
                    continue
                return _read_body(response, current, policy)
        except httpx.TimeoutException as exc:
            raise FetchError("url_timeout", f"timed out fetching {current}", retryable=True) from exc
        except httpx.HTTPError as exc:
            raise FetchError("url_unreachable", f"could not fetch {current}: {exc}", retryable=True) from exc
    raise FetchError("url_redirect_loop", f"more than {MAX_REDIRECTS} redirects starting at {url}")


def _read_body(response: httpx.Response, url: str, policy: FetchPolicy) -> bytes:
    if response.status_code >= 500:
        raise FetchError("url_unreachable", f"{url} answered HTTP {response.status_code}", retryable=True)
    if response.status_code != 200:
        raise FetchError(
            "url_not_found" if response.status_code == 404 else "url_bad_response",
            f"{url} answered HTTP {response.status_code}",
        )
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and not (content_type.startswith("image/") or content_type == "application/octet-stream"):
        raise FetchError("url_not_image", f"{url} is {content_type!r}, not an image")
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > policy.max_bytes:
        raise FetchError(
            "image_too_big", f"{url} is {int(declared):,} bytes; the limit is {policy.max_bytes:,}"
        )
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > policy.max_bytes:
            raise FetchError("image_too_big", f"{url} is larger than the {policy.max_bytes:,} byte limit")
    if not looks_like_image(bytes(body[:16])):
        raise FetchError("url_not_image", f"{url} did not return image bytes")
    return bytes(body)
