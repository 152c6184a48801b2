"""Fetching product and query images by URL without becoming an SSRF proxy.

Every hop is checked: the host must resolve only to public addresses (no loopback, private,
link-local, cloud metadata, multicast, reserved, or IPv4-embedded-in-IPv6 ranges that hide one)
unless ``allow_private_urls`` is set, redirects are followed by hand and re-checked, and the body
is streamed with a hard size cap. Relative paths resolve against ``image_root`` (never outside it).

Checking a name and then letting the HTTP library resolve it again is not enough: a DNS server
can answer a public address to the check and 127.0.0.1 to the connect (DNS rebinding). So the
addresses that passed the check are *pinned*: the client's transport (:class:`PinnedBackend`)
connects only to them, never resolves a name itself, and verifies the connected peer. TLS still
sends the URL's host name (SNI) and verifies the certificate against it.

A download has a total deadline (``FetchPolicy.deadline_s``) that covers resolving the name,
connecting, every read, redirects and retries, so a server trickling one byte at a time cannot
hold a request (and a worker thread) for longer than that. The system resolver cannot be
interrupted, so a name is resolved on a small pool of its own threads and the fetch stops waiting
for it at the deadline: a slow or dead DNS server costs a caller its deadline, never more, and
never a worker thread other routes need.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import httpcore
import httpx

from api.input_checks import relative_path_problem

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
USER_AGENT = "lookalike-image-fetcher/0.1"

Resolver = Callable[[str, int], list[str]]
"""``(host, port) -> addresses``; injectable so tests can play a rebinding DNS server."""


class FetchError(Exception):
    """A URL that did not give us an image; ``code`` goes into the API's 4xx body."""

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host`` (A and AAAA)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


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
    deadline_s: float | None = 30.0
    """Total time for one download: connects, reads, redirects, retries and back-off together."""
    resolver: Resolver = system_resolver
    base_url: str | None = None
    """Where relative image paths are fetched from, for shops whose media are served over HTTP
    (``LOOKALIKE_IMAGE_BASE_URL``); unset, they are files under ``image_root``."""


# --- the address policy ------------------------------------------------------------------------

_V4_COMPAT = ipaddress.ip_network("::/96")
_V4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
_TEREDO = ipaddress.ip_network("2001::/32")


def refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why ``address`` must not be fetched from, or None when it is a plain public address.

    IPv6 forms that carry an IPv4 address (mapped, compatible, NAT64, 6to4, Teredo) are judged
    by the IPv4 address inside, or refused outright where a relay decides where they lead.
    """
    if isinstance(address, ipaddress.IPv6Address):
        if address in _V4_MAPPED or address in _NAT64:
            inner = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
            reason = refusal(inner)
            return f"it embeds {inner}, and {reason}" if reason else None
        if address in _V4_COMPAT:
            return "it is an IPv4-compatible IPv6 address (deprecated; it embeds an IPv4 address)"
        if address in _NAT64_LOCAL:
            return "it is a local-use NAT64 address (it leads wherever the local translator says)"
        if address in _TEREDO:
            return "it is a Teredo address (it embeds an obfuscated IPv4 address)"
        if address in _SIX_TO_FOUR:
            inner = ipaddress.IPv4Address((int(address) >> 80) & 0xFFFFFFFF)
            reason = refusal(inner)
            return f"it is 6to4 for {inner}, and {reason}" if reason else None
    if not address.is_global or address.is_multicast:
        return "it is a private/loopback/link-local/reserved address"
    return None


RESOLVER_THREADS = 16
"""Names resolved at once. A lookup that never answers keeps its thread until the system
resolver gives up (its own timeouts, seconds), so this bounds what a dead DNS server can hold;
callers beyond it wait in line, within their own deadline."""

_resolvers = ThreadPoolExecutor(max_workers=RESOLVER_THREADS, thread_name_prefix="lookalike-resolve")


def _resolve(resolver: Resolver, host: str, port: int, deadline: float | None) -> list[str]:
    """``resolver(host, port)``, given up on at ``deadline`` (the lookup itself runs on)."""
    if deadline is None:
        return resolver(host, port)
    left = deadline - time.monotonic()
    if left <= 0:
        raise FetchError("url_timeout", f"no time left to resolve {host!r} within the download deadline")
    lookup = _resolvers.submit(resolver, host, port)
    try:
        return lookup.result(timeout=left)
    except FutureTimeout as exc:
        lookup.cancel()  # still queued behind other lookups: it never starts
        raise FetchError(
            "url_timeout", f"resolving {host!r} did not finish within the download deadline"
        ) from exc


def check_host(
    host: str,
    port: int,
    allow_private: bool,
    resolver: Resolver = system_resolver,
    deadline: float | None = None,
) -> list[str]:
    """Resolve ``host`` once (by ``deadline``, a ``time.monotonic()`` value) and return its
    addresses, refusing hosts with any non-public one.

    The returned addresses are the only ones a pinned client may then connect to.
    """
    try:
        addresses = _resolve(resolver, host, port, deadline)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError("url_unresolvable", f"cannot resolve host {host!r}: {exc}") from exc
    if not addresses:
        raise FetchError("url_unresolvable", f"cannot resolve host {host!r}: no addresses")
    parsed = []
    for text in addresses:
        try:
            parsed.append(ipaddress.ip_address(text.split("%", 1)[0]))
        except ValueError as exc:
            raise FetchError("url_unresolvable", f"{host!r} resolved to {text!r}, not an address") from exc
    if not allow_private:
        for address in parsed:
            reason = refusal(address)
            if reason:
                raise FetchError(
                    "url_forbidden", f"{host} resolves to {address}: {reason}; refusing to fetch it"
                )
    # IPv4-mapped answers are connected to as the IPv4 address they are.
    return [str(getattr(address, "ipv4_mapped", None) or address) for address in parsed]


# --- the pinned transport ----------------------------------------------------------------------


class _CallState(threading.local):
    """What the fetch running on this thread allowed: pinned addresses and its deadline.

    Thread-local because one client serves the ingest worker's fetch threads at once.
    """

    def __init__(self) -> None:
        self.pins: dict[tuple[str, int], list[str]] = {}
        self.deadline: float | None = None


def _remaining(state: _CallState, timeout: float | None, error: type[Exception]) -> float | None:
    if state.deadline is None:
        return timeout
    left = state.deadline - time.monotonic()
    if left <= 0:
        raise error("the download's total deadline has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write waits at most until the current fetch's deadline."""

    def __init__(self, inner: httpcore.NetworkStream, state: _CallState) -> None:
        self._inner = inner
        self._state = state

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _remaining(self._state, timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _remaining(self._state, timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(
            ssl_context, server_hostname, _remaining(self._state, timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(inner, self._state)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class PinnedBackend(httpcore.SyncBackend):
    """Connects only to addresses a policy check pinned for this host and port, on this thread.

    A host nobody pinned is refused rather than resolved: the transport never does its own DNS.
    """

    def __init__(self) -> None:
        self.state = _CallState()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self.state.pins.get((host.strip("[]").lower(), port))
        if not addresses:
            raise httpcore.ConnectError(f"{host}:{port} was not checked by the fetch policy")
        last: Exception | None = None
        for address in addresses:
            bounded = _remaining(self.state, timeout, httpcore.ConnectTimeout)
            try:
                stream = super().connect_tcp(address, port, bounded, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
                continue
            peer = stream.get_extra_info("server_addr")
            if peer is None or ipaddress.ip_address(peer[0]) != ipaddress.ip_address(address):
                stream.close()
                raise httpcore.ConnectError(f"connected to {peer}, not the checked address {address}")
            return _DeadlineStream(stream, self.state)
        assert last is not None
        raise last


class PinnedClient(httpx.Client):
    """An httpx client whose connections go only to addresses :func:`fetch_image` checked."""

    def __init__(self, policy: FetchPolicy) -> None:
        self.backend = PinnedBackend()
        transport = httpx.HTTPTransport(trust_env=False)
        # httpx does not expose httpcore's network_backend; the pool is rebuilt with ours (no proxy).
        transport._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=100,
            max_keepalive_connections=20,
            network_backend=self.backend,
        )
        super().__init__(
            transport=transport,
            timeout=httpx.Timeout(policy.read_timeout_s, connect=policy.connect_timeout_s),
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": USER_AGENT, "Accept": "image/*"},
        )

    @contextmanager
    def call(self, deadline: float | None) -> Iterator[None]:
        """Scope pins and the deadline to one fetch on the calling thread."""
        state = self.backend.state
        state.pins, state.deadline = {}, deadline
        try:
            yield
        finally:
            state.pins, state.deadline = {}, None

    def pin(self, host: str, port: int, addresses: list[str]) -> None:
        self.backend.state.pins[(host.strip("[]").lower(), port)] = addresses


def fetch_client(policy: FetchPolicy) -> PinnedClient:
    """A client to reuse across many fetches (keep-alive); safe to share between threads."""
    return PinnedClient(policy)


# --- fetching --------------------------------------------------------------------------------


def looks_like_image(head: bytes) -> bool:
    return head.startswith(IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def read_local(path_text: str, policy: FetchPolicy) -> bytes:
    """A relative image path from the catalog, confined to ``image_root``."""
    if policy.image_root is None:
        raise FetchError(
            "url_invalid", f"{path_text!r} is not an http(s) URL and no image root is configured"
        )
    problem = relative_path_problem(path_text)
    if problem is not None:  # NUL, or a name over NAME_MAX: ValueError/ENAMETOOLONG below (a 500)
        raise FetchError("url_invalid", f"the image path {problem}")
    root = policy.image_root.resolve()
    path = (root / path_text).resolve()
    if not path.is_relative_to(root):
        raise FetchError("url_forbidden", f"{path_text!r} points outside the image root")
    try:
        is_file = path.is_file()
    except OSError:  # ELOOP, EACCES...: nothing readable there either
        is_file = False
    if not is_file:
        raise FetchError("url_not_found", f"no image file at {path_text!r} under the image root")
    size = path.stat().st_size
    if size > policy.max_bytes:
        raise FetchError(
            "image_too_big", f"{path_text!r} is {size:,} bytes; the limit is {policy.max_bytes:,}"
        )
    return path.read_bytes()


def fetch_image(url: str, policy: FetchPolicy, client: PinnedClient | None = None) -> bytes:
    """Return the image bytes at ``url`` (http/https or a path under image_root), or raise FetchError."""
    scheme = urlsplit(url).scheme.lower()
    if not scheme and policy.base_url is not None:
        problem = relative_path_problem(url)
        if problem is not None:
            raise FetchError("url_invalid", f"the image path {problem}")
        url = policy.base_url.rstrip("/") + "/" + quote(url.lstrip("/"), safe="/")
        scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        if scheme:
            raise FetchError("url_invalid", f"unsupported URL scheme {scheme!r}; use http or https")
        return read_local(url, policy)
    if client is not None and not isinstance(client, PinnedClient):
        raise TypeError("fetch_image needs a client from fetch_client(), which pins checked addresses")
    own_client = client is None
    pinned = client or PinnedClient(policy)
    deadline = None if policy.deadline_s is None else time.monotonic() + policy.deadline_s
    try:
        with pinned.call(deadline):
            for attempt in range(policy.retries + 1):
                try:
                    return _fetch_once(pinned, url, policy, deadline)
                except FetchError as exc:
                    if not exc.retryable or attempt == policy.retries:
                        raise
                    pause = policy.backoff_s * 2**attempt
                    if deadline is not None and time.monotonic() + pause >= deadline:
                        raise _past_deadline(url, policy) from exc
                    time.sleep(pause)
    finally:
        if own_client:
            pinned.close()
    raise AssertionError("unreachable")


def _past_deadline(url: str, policy: FetchPolicy) -> FetchError:
    return FetchError("url_timeout", f"gave up on {url} after the {policy.deadline_s:g} s download deadline")


def _fetch_once(client: PinnedClient, url: str, policy: FetchPolicy, deadline: float | None) -> bytes:
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        if deadline is not None and time.monotonic() >= deadline:
            raise _past_deadline(url, policy)
        parts = urlsplit(current)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchError("url_invalid", f"{current!r} is not an absolute http(s) URL")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            # The name as the transport will see it (IDNA-encoded, no brackets): what gets pinned.
            host = httpx.URL(current).raw_host.decode("ascii")
        except (ValueError, httpx.InvalidURL) as exc:
            raise FetchError("url_invalid", f"{current!r} is not a valid URL: {exc}") from exc
        trusted = f"{parts.hostname}:{port}" in policy.trusted_hosts
        addresses = check_host(host, port, policy.allow_private or trusted, policy.resolver, deadline)
        client.pin(host, port, addresses)
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
            if deadline is not None and time.monotonic() >= deadline:
                raise _past_deadline(url, policy) from exc
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
