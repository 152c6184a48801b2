"""Result and query-embedding cache: Redis when ``REDIS_URL`` is set, in-process TTL LRU otherwise.

A cache failure never fails a search: Redis errors count as misses, are reported by health as
``degraded``, and Redis is retried after a short back-off instead of on every request.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

import redis
from cachetools import LRUCache

log = logging.getLogger(__name__)


class Cache(Protocol):
    hits: int
    misses: int

    def get(self, key: str) -> bytes | None: ...
    def set(self, key: str, value: bytes, ttl_s: int) -> None: ...
    def health(self) -> dict[str, Any]: ...


class MemoryCache:
    """A bounded LRU for one process, each entry with its own lifetime; enough for a single API
    instance. cachetools keeps the recency order and the bound; an expired entry is dropped when
    it is read (or pushed out by newer ones), so expiry costs nothing on the write path."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._items: LRUCache[str, tuple[float, bytes]] = LRUCache(maxsize=max_entries)
        self._lock = threading.Lock()  # cachetools' caches are not thread-safe

    def get(self, key: str) -> bytes | None:
        now = time.monotonic()
        with self._lock:
            item = self._items.get(key)  # a hit moves the key to the recent end
            if item is None or item[0] < now:
                if item is not None:
                    del self._items[key]
                self.misses += 1
                return None
            self.hits += 1
            return item[1]

    def set(self, key: str, value: bytes, ttl_s: int) -> None:
        with self._lock:
            self._items[key] = (time.monotonic() + ttl_s, value)  # evicts the least recently used

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "backend": "memory", "entries": len(self._items)}


class RedisCache:
    """Redis with short socket timeouts: a slow or dead Redis costs milliseconds, not seconds."""

    RETRY_AFTER_S = 5.0

    def __init__(self, url: str, timeout_s: float = 0.25) -> None:
        self.url = url
        self.hits = 0
        self.misses = 0
        self._client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._down_since: float | None = None
        self._last_error: str | None = None

    def _available(self) -> bool:
        return self._down_since is None or time.monotonic() - self._down_since > self.RETRY_AFTER_S

    def _failed(self, exc: Exception) -> None:
        if self._down_since is None:
            log.warning("redis cache unavailable (%s); serving uncached", exc)
        self._down_since = time.monotonic()
        self._last_error = str(exc)

    def _recovered(self) -> None:
        if self._down_since is not None:
            log.info("redis cache is back")
        self._down_since = None
        self._last_error = None

    def get(self, key: str) -> bytes | None:
        if not self._available():
            self.misses += 1
            return None
        try:
            value = self._client.get(key)
        except redis.RedisError as exc:
            self._failed(exc)
            self.misses += 1
            return None
        self._recovered()
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        return bytes(value)  # type: ignore[arg-type]

    def set(self, key: str, value: bytes, ttl_s: int) -> None:
        if not self._available():
            return
        try:
            self._client.set(key, value, ex=ttl_s)
        except redis.RedisError as exc:
            self._failed(exc)
        else:
            self._recovered()

    def health(self) -> dict[str, Any]:
        try:
            self._client.ping()
        except redis.RedisError as exc:
            self._failed(exc)
            return {"status": "degraded", "backend": "redis", "reason": f"redis unreachable: {exc}"}
        self._recovered()
        return {"status": "ok", "backend": "redis"}


def build_cache(redis_url: str | None) -> Cache:
    return RedisCache(redis_url) if redis_url else MemoryCache()
