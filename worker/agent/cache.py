"""The search-result cache: shared through Redis by every worker, in-process while Redis is down.

A cache must never make a search slower or fail it, so every Redis error is a miss, and after
one we skip Redis for a short back-off instead of paying its timeout on each search.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from typing import Any

import redis

from worker.agent.base import Passage

log = logging.getLogger(__name__)

REDIS_BACKOFF_SECONDS = 5.0  # after a Redis error, skip it this long instead of timing out again


class SearchCache:
    """Redis first (shared by every worker); a bounded in-process TTL cache while Redis is down."""

    def __init__(self, redis: Any | None, *, ttl: float, maxsize: int, prefix: str) -> None:
        self.redis, self.ttl, self.maxsize, self.prefix = redis, ttl, maxsize, prefix
        self._local: OrderedDict[str, tuple[float, list[Passage]]] = OrderedDict()
        self._lock = threading.Lock()
        self._redis_down_until = 0.0

    def key(self, namespace: str, query: str, limit: int, per_document: int = 1) -> str:
        """Cache key; `namespace` carries the KB version."""
        digest = hashlib.sha1(query.encode(), usedforsecurity=False).hexdigest()
        size = str(limit) if per_document == 1 else f"{limit}x{per_document}"
        return f"{self.prefix}:kbsearch:{namespace}:{size}:{digest}"

    def get(self, key: str) -> list[Passage] | None:
        """Cached passages or None; a Redis failure is a miss, never an error."""
        if self._redis_usable():
            try:
                raw = self.redis.get(key)
                return None if raw is None else [Passage(**p) for p in json.loads(raw)]
            except Exception as exc:  # any Redis/network failure: fall back, don't fail search
                self._redis_failed(exc)
        with self._lock:
            hit = self._local.get(key)
            if hit is None or hit[0] < time.monotonic():
                return None
            self._local.move_to_end(key)
            return hit[1]

    def set(self, key: str, passages: list[Passage]) -> None:
        """Store in Redis with a TTL, or locally when Redis is unusable."""
        if self._redis_usable():
            try:
                payload = json.dumps([p.to_dict() for p in passages])
                self.redis.set(key, payload, ex=max(1, int(self.ttl)))
                return
            except Exception as exc:
                self._redis_failed(exc)
        with self._lock:
            self._local[key] = (time.monotonic() + self.ttl, passages)
            self._local.move_to_end(key)
            while len(self._local) > self.maxsize:
                self._local.popitem(last=False)

    def clear_local(self) -> None:
        """Drop in-process entries (Redis entries die with their version and TTL)."""
        with self._lock:
            self._local.clear()

    def _redis_usable(self) -> bool:
        """Skip Redis for a while after a failure instead of paying its timeout on every search."""
        return self.redis is not None and time.monotonic() >= self._redis_down_until

    def _redis_failed(self, exc: Exception) -> None:
        """Log once per back-off window and fall back to the in-process cache."""
        log.warning("kb search cache: Redis unavailable (%s); using in-process cache", exc)
        self._redis_down_until = time.monotonic() + REDIS_BACKOFF_SECONDS


def redis_from_url(url: str) -> Any:
    """A client with short timeouts: the cache must never make a search slow."""
    return redis.Redis.from_url(
        url, socket_timeout=0.25, socket_connect_timeout=0.25, health_check_interval=30
    )


def redis_for_cache(settings: Any) -> Any:
    """The deployment's Redis (the sentinels' primary when set) with the cache's timeouts."""
    from models.redisconn import client

    return client(
        settings, socket_timeout=0.25, socket_connect_timeout=0.25, health_check_interval=30
    )
