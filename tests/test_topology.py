"""Topology: 2 web x 2 worker processes on RabbitMQ + Redis (+ PostgreSQL in CI's PostgreSQL
pass), customers spread over both web processes, one web process stopped with SIGTERM
mid-load. It closes its sockets with 1001 and stops accepting; its customers reconnect to the
other web process with `after=<last seq>`; every message is answered exactly once and no
client sees a gap or a repeat in its seqs.

The clients are the chaos test's (open-loop schedule, reconnect with after=), told to go to
the other web process after a 1001, as a load balancer would route them.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import time

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from tests.conftest import side_stack
from tests.stack import Stack
from tests.test_chaos import ENV, Client, Outgoing, exactly_once, finish, load, load_questions
from tests.test_deployments import RABBITMQ_URL, needs_rabbitmq

pytestmark = [pytest.mark.topology, pytest.mark.slow]

SESSIONS = 24
MESSAGES = 12
SEND_SECONDS = 20.0
STOP_AT = 0.4  # the first web process gets SIGTERM this far into the send phase


async def try_new_socket(base: str, session_id: str, token: str) -> str:
    """What a new customer gets from a web process that is stopping."""
    url = base.replace("http://", "ws://") + f"/ws?session_id={session_id}&token={token}"
    try:
        async with connect(url, open_timeout=5, proxy=None) as ws:
            first = json.loads(await asyncio.wait_for(ws.recv(), 5))
            try:
                await asyncio.wait_for(ws.recv(), 2)
            except ConnectionClosed:
                return f"closed {ws.close_code}"
            except TimeoutError:
                pass
            return f"served {first['type']}"
    except ConnectionClosed as exc:  # closed before its first event
        return f"closed {exc.rcvd.code if exc.rcvd else None}"
    except (OSError, WebSocketException, TimeoutError) as exc:
        return f"refused {type(exc).__name__}"


@pytest.mark.timeout(400)
def test_two_web_two_workers_on_rabbitmq_survive_a_web_sigterm(logdir):
    needs_rabbitmq()
    rng = random.Random(int(os.environ.get("TOPOLOGY_SEED", "11")))
    questions = load_questions()
    with side_stack(logdir, "topo", {**ENV, "BROKER_URL": RABBITMQ_URL}) as stack:
        stack.start_web()
        stack.start_worker()
        stack.wait_ready()
        assert len(stack.webs) == 2 and len([w for w in stack.workers if w.poll() is None]) == 2
        ready = wait_for_workers(stack, stack.urls[1], 2)
        assert ready["checks"]["broker"]["transport"] == "amqp", ready
        doomed, survivor = stack.urls
        doomed_proc = stack.webs[0][0]

        t0 = time.monotonic() + 3.0
        step = SEND_SECONDS / MESSAGES
        clients = []
        for i in range(SESSIONS):
            phase = i * step / SESSIONS
            outgoing = [
                Outgoing(f"t{i}-m{j}", rng.choice(questions), due=t0 + phase + j * step)
                for j in range(MESSAGES)
            ]
            client = Client(i, stack.urls[i % 2], outgoing, reconnect_at=float("inf"))
            client.fallback = survivor if i % 2 == 0 else ""
            clients.append(client)
        on_doomed = [c for c in clients if c.base == doomed]
        observed: dict = {}

        async def stop_one_web() -> None:
            await asyncio.sleep(max(0.0, t0 + STOP_AT * SEND_SECONDS - time.monotonic()))
            observed["connected_before"] = sum(c.open_event.is_set() for c in on_doomed)
            os.killpg(doomed_proc.pid, signal.SIGTERM)
            observed["sigterm_at"] = time.monotonic()
            await asyncio.sleep(0.5)
            # A new customer on the stopping process is turned away (1001, or refused).
            probe = on_doomed[0]
            observed["new_socket"] = await try_new_socket(doomed, probe.session_id, probe.token)
            exit_code = await asyncio.to_thread(doomed_proc.wait, 30)
            observed["exited_after_s"] = time.monotonic() - observed["sigterm_at"]
            observed["exit_code"] = exit_code

        async def main() -> None:
            stopper = asyncio.create_task(stop_one_web())
            # Bounded, so a client that never gets back fails with the figures, not a timeout.
            out = await asyncio.wait_for(load(clients, t0, lambda: None), SEND_SECONDS + 120)
            await stopper
            deadline = time.monotonic() + 90
            async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
                while time.monotonic() < deadline:  # every message answered (or give up)
                    done = await asyncio.gather(*(answered(http, c) for c in clients))
                    if all(done):
                        break
                    await asyncio.sleep(1.0)
            await finish(clients, out["readers"])

        asyncio.run(main())

        histories = {}
        with httpx.Client(timeout=30, trust_env=False) as http:
            for c in clients:
                resp = http.get(
                    f"{survivor}/api/chat/sessions/{c.session_id}/messages",
                    params={"limit": 500},
                    headers={"Authorization": f"Bearer {c.token}"},
                )
                assert resp.status_code == 200, resp.text
                histories[c.index] = resp.json()["messages"]
        worker_logs = "\n".join(
            p.read_text(errors="replace") for p in logdir.glob("topo-worker*.log")
        )

    answered_once, problems = exactly_once(clients, histories)
    figures = {
        "sent": SESSIONS * MESSAGES,
        "answered_once": answered_once,
        "clients_on_stopped_web": len(on_doomed),
        "connected_at_sigterm": observed.get("connected_before"),
        "saw_1001": sum(1 for c in on_doomed if c.close_codes[1001]),
        "moved_to_survivor": sum(1 for c in on_doomed if c.base == survivor),
        "other_drops": sum(c.unexpected_drops for c in clients) - len(on_doomed),
        "new_socket_on_stopping_web": observed.get("new_socket"),
        "stopped_web_exited_after_s": round(observed.get("exited_after_s", -1), 2),
        "exit_code": observed.get("exit_code"),
    }
    print("topology figures:", json.dumps(figures))
    assert not problems, (problems[:20], figures)
    assert answered_once == SESSIONS * MESSAGES, figures
    # Every customer of the stopped process was told 1001 and moved to the other one.
    assert figures["saw_1001"] == len(on_doomed) == figures["moved_to_survivor"], figures
    new_socket = figures["new_socket_on_stopping_web"]
    assert new_socket == "closed 1001" or new_socket.startswith("refused"), figures
    assert figures["exit_code"] == 0, figures
    assert "'gone'" not in worker_logs


def wait_for_workers(stack: Stack, url: str, count: int, timeout: float = 90) -> dict:
    """Readiness of `url` once `count` of the stack's workers answer a ping (readiness returns
    as soon as every queue has a worker, which the first worker of role `all` already is)."""
    app = stack.celery()
    try:
        deadline = time.monotonic() + timeout
        while True:
            replies = app.control.ping(timeout=1.0)
            if len(replies) == count or time.monotonic() > deadline:
                assert len(replies) == count, replies
                break
            time.sleep(0.5)
    finally:
        app.close()
    resp = httpx.get(f"{url}/health/ready", timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def answered(http: httpx.AsyncClient, c: Client) -> bool:
    """True once every message the client sent has its reply (read from the database)."""
    resp = await http.get(
        f"{c.fallback or c.base}/api/chat/sessions/{c.session_id}/messages",
        params={"limit": 500},
        headers={"Authorization": f"Bearer {c.token}"},
    )
    if resp.status_code != 200:
        return False
    messages = resp.json()["messages"]
    users = [m for m in messages if m["role"] == "user"]
    return len(users) == len(c.outgoing) and all(u["status"] == "done" for u in users)
