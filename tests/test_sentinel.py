"""Redis failover through Sentinel: a primary, a replica and three sentinels on loopback, a
chat load over sockets, and the primary SIGKILLed mid-load. The broker (Celery's `sentinel://`
transport), pub/sub, the cache and the rate limiter all follow the primary the sentinels
promote; sockets resubscribe and catch up from the database; every message is answered exactly
once and no client sees a gap.

The worker may exit when the broker connection drops while it holds a task (the celery/kombu
5.7.0 crash pinned in test_chaos.py); like the chaos test, this one is its supervisor and
restarts it, and prints how often it had to.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import side_stack
from tests.stack import RedisServer
from tests.test_chaos import ENV, Client, Outgoing, exactly_once, finish, load, load_questions
from tests.test_topology import answered

pytestmark = [pytest.mark.sentinel, pytest.mark.slow]

MASTER = "helpline-test"
SESSIONS = 16
MESSAGES = 12
SEND_SECONDS = 20.0
KILL_AT = 0.35


def start_group(folder: Path) -> tuple[RedisServer, RedisServer, list[RedisServer]]:
    """Primary, replica and three sentinels (quorum 2, a primary is down after 1 s)."""
    primary = RedisServer(folder, "primary")
    primary.start()
    replica = RedisServer(folder, "replica", ["--replicaof", "127.0.0.1", str(primary.port)])
    replica.start()
    sentinels = []
    for i in range(3):
        conf = (
            f"sentinel monitor {MASTER} 127.0.0.1 {primary.port} 2\n"
            f"sentinel down-after-milliseconds {MASTER} 1000\n"
            f"sentinel failover-timeout {MASTER} 10000\n"
            f"sentinel parallel-syncs {MASTER} 1\n"
        )
        sentinel = RedisServer(folder, f"sentinel{i}", sentinel_conf=conf)
        sentinel.start()
        sentinels.append(sentinel)
    # The replica has caught up and every sentinel knows it, so a failover has a candidate.
    deadline = time.monotonic() + 30
    while True:
        info = redis.Redis(port=replica.port).info("replication")
        known = [redis.Redis(port=s.port).sentinel_slaves(MASTER) for s in sentinels]
        if info.get("master_link_status") == "up" and all(known):
            return primary, replica, sentinels
        assert time.monotonic() < deadline, (info, known)
        time.sleep(0.2)


def primary_port(sentinels: list[RedisServer]) -> int:
    host, port = redis.Redis(port=sentinels[0].port).sentinel_get_master_addr_by_name(MASTER)
    return int(port)


@pytest.mark.timeout(400)
def test_redis_primary_killed_mid_chat_fails_over_through_sentinel(logdir, tmp_path):
    rng = random.Random(int(os.environ.get("SENTINEL_SEED", "7")))
    questions = load_questions()
    primary, replica, sentinels = start_group(tmp_path)
    group = [primary, replica, *sentinels]
    try:
        env = {
            **ENV,
            "BROKER_URL": "",  # the Redis broker, through the sentinels
            "REDIS_URL": f"redis://127.0.0.1:{primary.port}/0",  # only its database counts
            "REDIS_SENTINELS": ",".join(f"127.0.0.1:{s.port}" for s in sentinels),
            "REDIS_SENTINEL_MASTER": MASTER,
        }
        with side_stack(logdir, "sentinel", env) as stack:
            stack.start_web()
            stack.wait_ready()
            t0 = time.monotonic() + 3.0
            step = SEND_SECONDS / MESSAGES
            clients = [
                Client(
                    i,
                    stack.urls[i % 2],
                    [
                        Outgoing(
                            f"s{i}-m{j}",
                            rng.choice(questions),
                            due=t0 + i * step / SESSIONS + j * step,
                        )
                        for j in range(MESSAGES)
                    ],
                    reconnect_at=float("inf"),
                )
                for i in range(SESSIONS)
            ]
            observed: dict = {"worker_restarts": 0}
            stop = threading.Event()

            def supervise() -> None:
                while not stop.is_set():
                    if stack.worker is not None and stack.worker.poll() is not None:
                        observed["worker_restarts"] += 1
                        stack.start_worker()
                    time.sleep(0.25)

            async def kill_primary() -> None:
                await asyncio.sleep(max(0.0, t0 + KILL_AT * SEND_SECONDS - time.monotonic()))
                primary.kill()
                killed = time.monotonic()
                while primary_port(sentinels) == primary.port:
                    assert time.monotonic() - killed < 60, "no failover within 60 s"
                    await asyncio.sleep(0.2)
                observed["failover_s"] = round(time.monotonic() - killed, 2)

            async def main() -> None:
                killer = asyncio.create_task(kill_primary())
                out = await load(clients, t0, lambda: None)
                await killer
                deadline = time.monotonic() + 120
                async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
                    while time.monotonic() < deadline:
                        if all(await asyncio.gather(*(answered(http, c) for c in clients))):
                            break
                        await asyncio.sleep(1.0)
                await finish(clients, out["readers"])

            watcher = threading.Thread(target=supervise, daemon=True)
            watcher.start()
            try:
                asyncio.run(main())
            finally:
                stop.set()
                watcher.join(5)
            assert primary_port(sentinels) == replica.port
            health = httpx.get(f"{stack.urls[0]}/health", timeout=10).json()
            histories = {}
            with httpx.Client(timeout=30, trust_env=False) as http:
                for c in clients:
                    resp = http.get(
                        f"{c.base}/api/chat/sessions/{c.session_id}/messages",
                        params={"limit": 500},
                        headers={"Authorization": f"Bearer {c.token}"},
                    )
                    assert resp.status_code == 200, resp.text
                    histories[c.index] = resp.json()["messages"]
            # The promoted replica now carries the deployment's keys (limits, broker, cache).
            keys = redis.Redis(port=replica.port).keys(f"{stack.prefix}:*")
    finally:
        for proc in reversed(group):
            proc.stop()

    answered_once, problems = exactly_once(clients, histories)
    figures = {
        "sent": SESSIONS * MESSAGES,
        "answered_once": answered_once,
        "failover_s": observed.get("failover_s"),
        "socket_drops": sum(c.unexpected_drops for c in clients),
        "worker_restarts": observed["worker_restarts"],
        "pubsub_connected_after": health.get("pubsub_connected"),
        "keys_on_new_primary": len(keys),
    }
    print("sentinel figures:", json.dumps(figures))
    assert not problems, (problems[:20], figures)
    assert answered_once == SESSIONS * MESSAGES, figures
    assert health["status"] == "ok" and health["pubsub_connected"], health
    assert keys, "nothing of this deployment on the promoted replica"
