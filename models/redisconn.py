"""Every Redis connection of the app is made here: from `REDIS_URL`, or, with `REDIS_SENTINELS`,
through redis-py's Sentinel support so that pub/sub, cache, rate limits, the Celery broker and
the result backend follow the primary when the sentinels fail it over.

`REDIS_URL` still gives the database number and password when sentinels are used; its host is
then ignored (the sentinels name the primary).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import redis
from redis.sentinel import Sentinel

from models.settings import Settings, get_settings

# Sentinels answer "who is the primary" quickly or not at all.
_SENTINEL_KWARGS = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}


def _db_and_password(url: str) -> tuple[int, str | None]:
    parsed = urlparse(url)
    path = parsed.path.lstrip("/")
    return (int(path) if path.isdigit() else 0), parsed.password


def client(settings: Settings | None = None, url: str | None = None, **options: Any) -> redis.Redis:
    """A client for this deployment's Redis (the current primary when sentinels are set);
    `url` stands in for REDIS_URL (its database and password still apply with sentinels)."""
    s = settings or get_settings()
    url = url or s.redis_url
    if not s.redis_sentinels:
        return redis.Redis.from_url(url, **options)
    db, password = _db_and_password(url)
    sentinel = Sentinel(list(s.redis_sentinels), sentinel_kwargs=dict(_SENTINEL_KWARGS))
    return sentinel.master_for(s.redis_sentinel_master, db=db, password=password, **options)


def celery_redis_url(settings: Settings, broker: bool = False) -> str:
    """The URL Celery's Redis broker or result backend connects to: `REDIS_URL`, or one
    `sentinel://` URL per sentinel joined by `;` (the master name goes in the transport
    options). The broker defaults to the same Redis unless `BROKER_URL` names another."""
    if broker and settings.broker_url != settings.redis_url:
        return settings.broker_url
    if not settings.redis_sentinels:
        return settings.redis_url
    db, password = _db_and_password(settings.redis_url)
    auth = f":{password}@" if password else ""
    return ";".join(
        f"sentinel://{auth}{host}:{port}/{db}" for host, port in settings.redis_sentinels
    )


def limits_storage(settings: Settings) -> tuple[str, dict[str, Any]]:
    """Flask-Limiter's storage URI and options (its `redis+sentinel://` scheme with sentinels)."""
    # The library's own key prefix: every counter key starts with the deployment's prefix (the
    # app counts through `limiter.limiter.hit`, which Flask-Limiter's key prefix never sees).
    options: dict[str, Any] = {
        "socket_timeout": 2,
        "socket_connect_timeout": 2,
        "key_prefix": f"{settings.event_channel_prefix}:limits",
    }
    if not settings.redis_sentinels:
        return settings.redis_url, options
    db, password = _db_and_password(settings.redis_url)
    hosts = ",".join(f"{host}:{port}" for host, port in settings.redis_sentinels)
    options.update(db=db, sentinel_kwargs=dict(_SENTINEL_KWARGS))
    if password:
        options["password"] = password
    return f"redis+sentinel://{hosts}/{settings.redis_sentinel_master}", options


def share_broker_clients() -> None:
    """Make kombu's Redis channels reuse one client object for their one-off commands.

    kombu's Redis transport builds a new `redis.Redis` for every command it sends outside its
    consuming connection: the late-ack bookkeeping on receipt and on ack (`QoS.append`,
    `QoS.ack`, a pipeline each), every publish (`_put`) and its exchange lookup. The client is a
    thin wrapper over the channel's connection pool, but building one costs ~0.15 ms of CPU here
    (redis-py fills a table of response callbacks each time): about 13 % of a prefork worker's
    parent and 17 % of a no-op task (bench/README.md, session 9). Every one of those clients
    would wrap the same pool, so one per channel does the same commands on the same connections.

    A new client is made whenever the channel's pool is not the cached client's: kombu drops its
    pools after a fork and on a channel's close, and a reused client must never hold a pool the
    channel has let go. Commands given an explicit client (a pipeline inside a transaction) keep
    it. Idempotent; applied wherever Celery is configured (models/jobs.py), in web and worker.
    """
    from contextlib import contextmanager

    from kombu.transport import redis as kombu_redis

    channel = kombu_redis.Channel
    if getattr(channel, "_helpline_shared_client", False):
        return

    @contextmanager
    def conn_or_acquire(self, client=None):  # type: ignore[no-untyped-def]
        if client:
            yield client
            return
        pool = self.pool
        cached = self.__dict__.get("_helpline_client")
        if cached is None or cached.connection_pool is not pool:
            cached = self._create_client()
            self.__dict__["_helpline_client"] = cached
        yield cached

    channel.conn_or_acquire = conn_or_acquire
    channel._helpline_shared_client = True
