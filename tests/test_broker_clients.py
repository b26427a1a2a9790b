"""kombu's Redis channels reuse one client for their one-off commands (models/redisconn.py).

Talks to the suite's real Redis through a real kombu connection configured as celeryconfig
configures the web and the worker (prefixed keys, visibility timeout): the late-ack bookkeeping
must still work with the shared client (a message taken without an ack sits in the unacked
index, an ack removes it, a reject with requeue puts it back), and a channel that dropped its
pool (kombu does after a fork) never reuses a client of the old pool.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kombu import Connection, Exchange, Producer, Queue

import celeryconfig
from models.settings import get_settings


@pytest.fixture
def channel() -> Iterator:
    """A channel of the Redis transport on the suite's Redis, prefixed as the apps' are."""
    conf = celeryconfig.build(get_settings())
    if not conf["broker_url"].startswith("redis"):
        pytest.skip("the shared client is the Redis transport's")
    options = {**conf["broker_transport_options"]}
    options["global_keyprefix"] = f"brokerclients-{uuid.uuid4().hex[:8]}:"
    with Connection(conf["broker_url"], transport_options=options) as conn:
        chan = conn.channel()
        try:
            yield chan
        finally:
            chan.close()


def unacked(chan) -> int:  # type: ignore[no-untyped-def]
    """Messages held unacknowledged by the channel (what a dead worker's restore re-queues):
    the entries of its unacked hash (HLEN is one of the commands kombu prefixes)."""
    with chan.conn_or_acquire() as client:
        return client.hlen(chan.unacked_key)


def test_one_client_serves_every_one_off_command(channel):
    with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
        assert first is second
        assert first.connection_pool is channel.pool
    explicit = channel._create_client()
    with channel.conn_or_acquire(explicit) as given:
        assert given is explicit  # a caller's own client (a transaction's pipe) is kept


def test_late_ack_bookkeeping_works_through_the_shared_client(channel):
    name = f"q-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, Exchange(name, type="direct"), routing_key=name)(channel)
    queue.declare()
    try:
        producer = Producer(channel)
        for body in ("one", "two"):
            producer.publish(body, exchange=queue.exchange, routing_key=name, retry=False)
        first = queue.get(no_ack=False)
        second = queue.get(no_ack=False)
        assert {first.payload, second.payload} == {"one", "two"}
        assert unacked(channel) == 2  # both held: a SIGKILL now would leave both restorable
        first.ack()
        assert unacked(channel) == 1
        second.reject(requeue=True)  # back on the queue, out of the index
        assert unacked(channel) == 0
        again = queue.get(no_ack=True)
        assert again is not None and again.payload == second.payload
        assert queue.get(no_ack=True) is None
    finally:
        queue.delete()


def test_a_dropped_pool_gets_a_new_client(channel):
    with channel.conn_or_acquire() as before:
        before.ping()
    channel._disconnect_pools()  # what kombu does in a forked child and on close
    with channel.conn_or_acquire() as after:
        assert after is not before
        assert after.connection_pool is channel.pool
        assert after.ping()
