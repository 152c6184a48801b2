"""Cross-origin access for shop front-ends: the public read endpoints only, for exact origins.

A shop's own pages (``https://shop.example``) call Lookalike from the browser through the
search widget (``/ui/widget.js``). Browsers allow that only when the API answers with CORS
headers, so this middleware adds them, and only where it is safe:

- **Public reads** (searches, "more like this", browse, product reads, categories, images):
  ``Access-Control-Allow-Origin: <origin>`` for an origin listed in ``LOOKALIKE_CORS_ORIGINS``,
  exactly as the browser sends it. Never ``*`` and never credentials: these reads need neither
  cookies nor tokens, and a list of exact origins is what an operator can reason about.
- **Admin and write endpoints** (product writes, stats, anything else) never answer
  cross-origin: no CORS header on their responses, and their preflights are refused. A token
  pasted into a shop page therefore cannot be used from it, even by a listed origin.
- **The widget's own files** (``/ui/*.js``, ``*.css``, ``*.svg``) carry
  ``Access-Control-Allow-Origin: *``: module scripts are fetched in CORS mode, the files are
  public code, and loading them grants nothing; the API calls the widget then makes are the
  ones the origin list governs.

It is a plain ASGI middleware (no route changes) so the rule lives in one table, below.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# (methods, path pattern) of the endpoints a listed origin may call. A route missing here is
# admin or write: it never answers cross-origin.
PUBLIC_ROUTES: tuple[tuple[frozenset[str], re.Pattern[str]], ...] = (
    (frozenset({"POST"}), re.compile(r"/api/v1/search(/image)?")),
    (frozenset({"POST"}), re.compile(r"/api/image-search/find-similar")),
    (frozenset({"GET", "HEAD"}), re.compile(r"/api/v1/products(/.+)?")),
    (frozenset({"GET", "HEAD"}), re.compile(r"/api/v1/categories")),
    (frozenset({"GET", "HEAD"}), re.compile(r"/api/v1/images/.+")),
    (frozenset({"GET", "HEAD"}), re.compile(r"/ui/config\.json")),
)
STATIC_ASSET = re.compile(r"/ui/.+\.(js|css|svg)")
# Request headers a listed origin may send: what the widget sends, nothing that carries authority.
ALLOWED_HEADERS = frozenset({"accept", "accept-language", "content-language", "content-type"})
EXPOSED_HEADERS = "Retry-After, X-Request-ID"
PREFLIGHT_MAX_AGE_S = 600
DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_origin(value: str) -> str:
    """``https://Shop.example:443/`` -> ``https://shop.example``: the form browsers send in
    ``Origin``, so the comparison can be exact. Anything that is not a bare origin is refused
    with a message that says what to write instead."""
    text = value.strip()
    if text == "*":
        raise ValueError("'*' is not accepted: list the shop's exact origins, e.g. https://shop.example")
    parts = urlsplit(text)
    if parts.scheme.lower() not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"{text!r} is not an origin: write scheme://host[:port], e.g. https://shop.example")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{text!r} is not an origin: no path, query or user part, e.g. https://shop.example")
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{text!r} has an invalid port") from exc
    host = parts.hostname
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{scheme}://{host}" if port in (None, DEFAULT_PORTS[scheme]) else f"{scheme}://{host}:{port}"


def parse_origins(value: object) -> tuple[str, ...]:
    """``LOOKALIKE_CORS_ORIGINS``: comma-separated (or a list); blank means none."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)  # type: ignore[call-overload]
    origins = [normalize_origin(str(item)) for item in items if str(item).strip()]
    return tuple(dict.fromkeys(origins))


def public_methods(path: str) -> frozenset[str] | None:
    """The methods a listed origin may use on this path, or None for admin/write-only paths."""
    for methods, pattern in PUBLIC_ROUTES:
        if pattern.fullmatch(path):
            return methods
    return None


class CorsMiddleware:
    """Adds CORS headers to public reads for the listed origins and answers their preflights."""

    def __init__(self, app: ASGIApp, origins: Iterable[str] = ()) -> None:
        self.app = app
        self.origins = frozenset(origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        method: str = scope["method"]
        path: str = scope["path"]
        if method == "OPTIONS" and origin is not None and "access-control-request-method" in headers:
            await self._preflight(origin, path, headers, send)
            return
        if STATIC_ASSET.fullmatch(path) and method in ("GET", "HEAD"):
            await self.app(scope, receive, self._with_headers(send, {"Access-Control-Allow-Origin": "*"}))
            return
        methods = public_methods(path)
        if methods is None or method not in methods or not self.origins:
            await self.app(scope, receive, send)
            return
        # A listed origin's answer differs from everyone else's: shared caches must key on Origin.
        extra = {"Vary": "Origin"}
        if origin in self.origins:
            extra["Access-Control-Allow-Origin"] = origin
            extra["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        await self.app(scope, receive, self._with_headers(send, extra))

    @staticmethod
    def _with_headers(send: Send, extra: dict[str, str]) -> Send:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                for name, value in extra.items():
                    if name == "Vary":
                        response_headers.add_vary_header(value)
                    else:
                        response_headers[name] = value
            await send(message)

        return send_with_headers

    async def _preflight(self, origin: str, path: str, headers: Headers, send: Send) -> None:
        """Allowed: 204 with the allow headers. Refused: 403 with a JSON error and no allow
        headers, so the browser blocks the call and a person with curl reads why."""
        requested_method = headers["access-control-request-method"].strip().upper()
        requested_headers = [
            h.strip().lower()
            for h in headers.get("access-control-request-headers", "").split(",")
            if h.strip()
        ]
        methods = public_methods(path)
        reason = None
        if origin not in self.origins:
            reason = f"origin {origin!r} is not in LOOKALIKE_CORS_ORIGINS"
        elif methods is None or requested_method not in methods:
            reason = f"{requested_method} {path} is not available cross-origin (admin and write endpoints never are)"
        elif not set(requested_headers) <= ALLOWED_HEADERS:
            refused = ", ".join(sorted(set(requested_headers) - ALLOWED_HEADERS))
            reason = f"request headers not allowed cross-origin: {refused}"
        vary = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
        if reason is not None:
            body = json.dumps({"error": {"code": "cors_not_allowed", "message": reason}}).encode()
            response_headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"vary", vary.encode()),
            ]
            await send({"type": "http.response.start", "status": 403, "headers": response_headers})
            await send({"type": "http.response.body", "body": body})
            return
        assert methods is not None
        allow = {
            "access-control-allow-origin": origin,
            "access-control-allow-methods": ", ".join(sorted(methods)),
            "access-control-max-age": str(PREFLIGHT_MAX_AGE_S),
            "vary": vary,
        }
        if requested_headers:
            allow["access-control-allow-headers"] = ", ".join(requested_headers)
        await send(
            {
                "type": "http.response.start",
                "status": 204,
                "headers": [(k.encode(), v.encode()) for k, v in allow.items()],
            }
        )
        await send({"type": "http.response.body", "body": b""})
