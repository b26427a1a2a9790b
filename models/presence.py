"""Which agents are online: console sockets check in to a Redis sorted set with an expiry.

Any web process holding a console socket refreshes its entry; any process (the worker when it
tells a customer whether someone can answer now) counts the entries that have not expired. A
crashed web process's agents drop out by themselves after `TTL` seconds.
"""

from __future__ import annotations

import logging
import time

import redis

from models.events import redis_client
from models.settings import get_settings

log = logging.getLogger(__name__)

TTL = 60.0  # seconds an agent stays "online" after its socket last checked in


def _key() -> str:
    return f"{get_settings().event_channel_prefix}:agents-online"


def _seen_key() -> str:
    return f"{get_settings().event_channel_prefix}:agents-seen"


def check_in(client_id: str, name: str) -> None:
    """Mark this console socket as online for another TTL (called on connect and on a timer)."""
    try:
        pipe = redis_client().pipeline(transaction=False)
        pipe.zadd(_key(), {f"{client_id}|{name}": time.time() + TTL})
        pipe.hset(_seen_key(), name, time.time())
        pipe.execute()
    except redis.RedisError as exc:
        # Presence is advisory: a missed check-in only makes the notices more cautious.
        log.debug("presence check-in skipped", extra={"error": str(exc)[:200]})


def seen(name: str) -> None:
    """An agent acted (any staff request): they are still at work, console or not."""
    try:
        redis_client().hset(_seen_key(), name, time.time())
    except redis.RedisError as exc:
        log.debug("presence update skipped", extra={"error": str(exc)[:200]})


def last_seen(name: str) -> float | None:
    """When the agent last checked in or acted; None when unknown (e.g. Redis was emptied)."""
    try:
        raw = redis_client().hget(_seen_key(), name)
    except redis.RedisError:
        return None
    return float(raw) if raw is not None else None


def check_out(client_id: str, name: str) -> None:
    """The console socket closed."""
    try:
        redis_client().zrem(_key(), f"{client_id}|{name}")
    except redis.RedisError as exc:  # the entry expires by itself after TTL
        log.debug("presence check-out skipped", extra={"error": str(exc)[:200]})


def agents_online() -> int:
    """Distinct agent names with a live console (0 when Redis cannot tell us)."""
    try:
        client = redis_client()
        now = time.time()
        client.zremrangebyscore(_key(), "-inf", now)
        members = client.zrangebyscore(_key(), now, "+inf")
    except redis.RedisError:
        return 0
    return len({m.decode(errors="replace").split("|", 1)[-1] for m in members})
