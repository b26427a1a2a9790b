"""A session's consecutive events travel as one pub/sub message and reach subscribers in order.

Real Redis (this run's database; pub/sub itself is server-wide, so every channel here is a new
session id), the real publisher (`models.events.publish_all`) and the real per-process listener
(`webapp.events.EventHub`).
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid

import pytest
import redis

from models.events import channel_for, channel_pattern, envelope, publish_all
from tests.conftest import redis_url
from webapp.events import RESYNC, EventHub

pytestmark = pytest.mark.no_broker


def _event(session_id: str, kind: str, **fields: object) -> dict:
    return envelope(kind, session_id, **fields)


@pytest.fixture
def client() -> redis.Redis:
    return redis.Redis.from_url(redis_url())


def _subscribed(pubsub: redis.client.PubSub, pattern: str, timeout: float = 10) -> None:
    """PSUBSCRIBE and wait for the server's confirmation: a PUBLISH on another connection
    after this is delivered to us (one sent before the confirmation may not be)."""
    pubsub.psubscribe(pattern)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = pubsub.get_message(timeout=0.5)
        if msg and msg["type"] == "psubscribe":
            return
    raise AssertionError(f"no confirmation of PSUBSCRIBE {pattern}")


def _received(pubsub: redis.client.PubSub, channels: set, count: int, timeout: float = 10) -> list:
    """The first `count` messages on `channels`. The pattern also matches the channels of
    every other session of this run (a reply of an earlier test's worker, say), which
    are skipped: they must neither count nor fill the quota."""
    got: list = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        msg = pubsub.get_message(timeout=0.5)
        if msg and msg["type"] == "pmessage" and msg["channel"].decode() in channels:
            got.append((msg["channel"].decode(), json.loads(msg["data"])))
    return got


def test_consecutive_events_of_a_session_leave_as_one_message(client: redis.Redis) -> None:
    a, b = uuid.uuid4().hex, uuid.uuid4().hex
    pubsub = client.pubsub()
    _subscribed(pubsub, channel_for(a)[: -len(a)] + "*")
    try:
        stream = [
            _event(a, "start"),
            _event(a, "text", content="One "),
            _event(a, "text", content="two."),
        ]
        other = _event(b, "status", state="searching")
        last = _event(a, "complete", seq=2)
        assert publish_all([*stream, other, last], client=client)
        got = _received(pubsub, {channel_for(a), channel_for(b)}, 3)
    finally:
        pubsub.close()
    # Three messages, in publish order: a run of three, a lone event of the other session,
    # and a lone event (not a list of one) of the first session again.
    assert got == [(channel_for(a), stream), (channel_for(b), other), (channel_for(a), last)]


class _Recorder:
    def __init__(self) -> None:
        self.events: list[dict] = []
        self.changed = threading.Condition()

    def push(self, event: dict) -> None:
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def wait_for(self, count: int, timeout: float = 10) -> list[dict]:
        with self.changed:
            self.changed.wait_for(lambda: len(self.events) >= count, timeout)
            return list(self.events)


class _Broken:
    def push(self, event: dict) -> None:
        raise RuntimeError("a subscriber's bug")


def test_the_listener_hands_a_bundle_out_in_order_and_survives_a_malformed_one(
    client: redis.Redis,
) -> None:
    session_id = uuid.uuid4().hex
    hub = EventHub(redis_url(), channel_pattern())
    hub.start()
    try:
        assert hub.wait_connected(10)
        first, second = _Recorder(), _Recorder()
        hub.add(session_id, first)
        hub.add(session_id, _Broken())  # a subscriber that fails stops nobody else
        hub.add(session_id, second)
        stream = [_event(session_id, "text", content=f"{n} ") for n in range(12)]
        assert publish_all(stream, client=client)
        # A bundle with junk in it: the good events still arrive, the listener keeps going.
        good = _event(session_id, "complete", seq=1)
        client.publish(channel_for(session_id), json.dumps([1, "x", good, None]))
        client.publish(channel_for(session_id), b"not json")
        after = _event(session_id, "status", state="done")
        assert publish_all([after], client=client)
        for recorder in (first, second):
            assert recorder.wait_for(14) == [*stream, good, after]
    finally:
        hub.stop()


class _SlowProxy:
    """A TCP proxy to Redis that holds what the client sends for `delay` seconds (a Redis
    across a slow link, or a busy one): replies come back at once."""

    def __init__(self, target: tuple[str, int], delay: float) -> None:
        self.target, self.delay = target, delay
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, slow: bool) -> None:
        try:
            while data := src.recv(65536):
                if slow:
                    time.sleep(self.delay)
                dst.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.server.close()
        for conn in self._conns:
            conn.close()


def test_the_hub_is_connected_only_once_redis_has_the_subscription() -> None:
    """`wait_connected` promises that an event published after it returns is delivered. With
    a PSUBSCRIBE that takes its time to reach Redis, an event published in between used to be
    lost (the hub said connected, and told subscribers to re-read the database, as soon as it
    had sent the command)."""
    from urllib.parse import urlparse

    parsed = urlparse(redis_url())
    proxy = _SlowProxy((parsed.hostname or "localhost", parsed.port or 6379), delay=0.5)
    session_id = uuid.uuid4().hex
    hub = EventHub(f"redis://127.0.0.1:{proxy.port}{parsed.path}", channel_pattern())
    recorder = _Recorder()
    hub.add(session_id, recorder)
    try:
        assert hub.wait_connected(30)
        event = _event(session_id, "complete", seq=1)
        assert publish_all([event], client=redis.Redis.from_url(redis_url()))
        assert recorder.wait_for(2, timeout=10) == [RESYNC, event]  # re-read, then live
    finally:
        hub.stop()
        proxy.close()


def test_a_subscriber_that_raises_on_the_resync_does_not_end_the_listener() -> None:
    """The resync every subscriber is told after the subscription is confirmed runs on the
    listener thread: a subscriber that raises on it stops neither the others nor the thread.
    (Seen under load: the suite's broken subscriber, added just after `wait_connected`, got the
    resync first and the listener died; every later event of the process reached nobody.)"""
    session_id = uuid.uuid4().hex
    hub = EventHub(redis_url(), channel_pattern())
    recorder = _Recorder()
    hub.add(session_id, _Broken())  # both already there when the resync goes out
    hub.add(session_id, recorder)
    try:
        assert hub.wait_connected(10)
        event = _event(session_id, "complete", seq=1)
        assert publish_all([event], client=redis.Redis.from_url(redis_url()))
        assert recorder.wait_for(2, timeout=10) == [RESYNC, event]
    finally:
        hub.stop()
