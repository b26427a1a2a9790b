"""One Redis pub/sub connection per web process, fanning events out to this process's sockets.

The listener psubscribes to every session channel once; sockets and `?wait` callers register
a subscriber for their session. After a Redis outage every subscriber is told to resync from
the database, because pub/sub drops whatever was published while the connection was down.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from typing import Protocol

import redis

log = logging.getLogger(__name__)

RESYNC = {"type": "_resync"}
# The process is shutting down (SIGTERM): sockets close with 1001 so clients reconnect to
# another web process with `after=<last seq>`.
GOING_AWAY = {"type": "_going_away"}
GOING_AWAY_CODE = 1001


class Subscriber(Protocol):
    """Anything that can take an event without blocking the listener."""

    def push(self, event: dict) -> None: ...


def _push_each(targets: list[Subscriber], events: list[dict]) -> None:
    """Hand `events`, in order, to each subscriber; one that raises is logged and skipped.

    This runs on the listener thread (every event and the resync after each subscription) and
    at shutdown (going away): one subscriber's failure must not end the others' feed, nor the
    thread every socket of this process hangs on."""
    for sub in targets:
        try:
            for event in events:
                sub.push(event)
        except Exception:
            log.exception(
                "event delivery failed",
                extra={"session_id": events[0].get("session_id"), "event": events[0].get("type")},
            )


class EventHub:
    """Process-wide fan-out; started lazily so CLI commands and forks do not inherit a thread."""

    def __init__(self, redis_url: str, pattern: str) -> None:
        self.redis_url = redis_url
        self.pattern = pattern
        self.prefix = pattern[:-1]
        self._subs: dict[str, set[Subscriber]] = defaultdict(set)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._closing = threading.Event()

    def start(self) -> None:
        """Start the listener once per process."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="event-hub", daemon=True)
                self._thread.start()

    def wait_connected(self, timeout: float) -> bool:
        """True once the subscription is live (callers that must not miss an event wait here)."""
        self.start()
        return self._connected.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def add(self, session_id: str, sub: Subscriber) -> None:
        with self._lock:
            self._subs[session_id].add(sub)

    def remove(self, session_id: str, sub: Subscriber) -> None:
        with self._lock:
            subs = self._subs.get(session_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[session_id]

    def count(self, session_id: str | None = None) -> int:
        """Local subscribers of one session, or of all (for health output and limits)."""
        with self._lock:
            if session_id is not None:
                return len(self._subs.get(session_id, ()))
            return sum(len(s) for s in self._subs.values())

    def dispatch_all(self, session_id: str, events: list[dict]) -> None:
        """Hand events, in order, to every local subscriber of the session."""
        with self._lock:
            targets = list(self._subs.get(session_id, ()))
        _push_each(targets, events)

    def _broadcast_resync(self) -> None:
        self._broadcast(RESYNC)

    def _broadcast(self, event: dict) -> None:
        with self._lock:
            targets = [s for subs in self._subs.values() for s in subs]
        _push_each(targets, [event])

    @property
    def closing(self) -> bool:
        """True once the process was told to stop: new sockets are turned away with 1001."""
        return self._closing.is_set()

    def going_away(self) -> int:
        """Tell every socket of this process to close with 1001; returns how many were told."""
        self._closing.set()
        count = self.count()
        self._broadcast(GOING_AWAY)
        return count

    def _client(self) -> redis.Redis:
        from models.redisconn import client

        return client(url=self.redis_url, socket_connect_timeout=2, health_check_interval=15)

    def _run(self) -> None:
        backoff = 0.1
        first = True
        while not self._stop.is_set():
            pubsub = None
            try:
                client = self._client()
                pubsub = client.pubsub()
                pubsub.psubscribe(self.pattern)
                if not self._confirmed(pubsub):
                    break  # stopped while waiting
                self._connected.set()
                # Whatever was published before this subscription existed (at start-up, or
                # while Redis was away) never reaches us: subscribers re-read the database.
                if not first:
                    log.info("event hub reconnected; resyncing sockets")
                self._broadcast_resync()
                first, backoff = False, 0.1
                self._listen(pubsub)
            except (redis.RedisError, OSError) as exc:
                if self._connected.is_set():
                    log.warning("event hub lost Redis", extra={"error": str(exc)})
                self._connected.clear()
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:  # closing a dead connection may raise anything
                        pass

    def _confirmed(self, pubsub: redis.client.PubSub, timeout: float = 10.0) -> bool:
        """Wait for Redis to confirm the PSUBSCRIBE (False if the hub was stopped meanwhile).

        Only from the confirmation on is every PUBLISH delivered to us. Saying "connected" (and
        telling subscribers to re-read the database) as soon as the command was sent left a
        window on a slow or distant Redis: an event published after that re-read but before
        Redis had the subscription reached nobody until the session's next event."""
        deadline = time.monotonic() + timeout
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                raise redis.TimeoutError(f"Redis did not confirm PSUBSCRIBE within {timeout} s")
            msg = pubsub.get_message(timeout=min(left, 1.0))
            if msg is not None and msg.get("type") == "psubscribe":
                return True
        return False

    def _listen(self, pubsub: redis.client.PubSub) -> None:
        while not self._stop.is_set():
            msg = pubsub.get_message(timeout=1.0)
            if msg is None or msg.get("type") != "pmessage":
                continue
            channel = (
                msg["channel"].decode() if isinstance(msg["channel"], bytes) else msg["channel"]
            )
            try:
                payload = json.loads(msg["data"])
            except (ValueError, TypeError):
                payload = None
            # One event, or a session's consecutive events in one message (`publish_all`).
            events = payload if isinstance(payload, list) else [payload]
            good = [e for e in events if isinstance(e, dict)]
            if len(good) != len(events):
                log.warning("dropped a malformed event", extra={"channel": channel})
            if good:
                self.dispatch_all(channel[len(self.prefix) :], good)

    def stop(self) -> None:
        """Stop the listener (tests)."""
        self._stop.set()


class Waiter:
    """Subscriber for `?wait=N`: wakes when the reply to one message completes."""

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        self.done = threading.Event()

    def push(self, event: dict) -> None:
        if event is RESYNC:
            self.done.set()  # the caller re-reads the database either way
        elif event.get("type") == "complete":
            if (event.get("message") or {}).get("reply_to_id") == self.message_id:
                self.done.set()
        elif event.get("type") == "escalation" and event.get("message_id") == self.message_id:
            self.done.set()


_hub: EventHub | None = None
_hub_lock = threading.Lock()


def going_away() -> None:
    """SIGTERM in a web process (gunicorn.conf.py): close its sockets with 1001, not a reset."""
    hub = _hub
    if hub is not None:
        told = hub.going_away()
        log.info("shutting down: sockets told to reconnect elsewhere", extra={"sockets": told})


def get_hub() -> EventHub:
    """This process's hub (created on first use, after any fork)."""
    global _hub
    with _hub_lock:
        if _hub is None:
            from models.events import channel_pattern
            from models.settings import get_settings

            _hub = EventHub(get_settings().redis_url, channel_pattern())
        _hub.start()
        return _hub
