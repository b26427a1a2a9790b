"""Two deployments on one Redis database (and one RabbitMQ vhost) take only their own tasks,
and readiness counts only a deployment's own workers and says why when none answers.

Each deployment is a side stack with its own database and prefix (`EVENT_CHANNEL_PREFIX`); the
second is given the first one's Redis database instead of claiming its own.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path

import httpx
import pytest
import redis

from tests.client import Api
from tests.conftest import base_env, ready_with_kb, side_stack
from tests.stack import LOCK_KEY, Stack, free_port

RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@localhost:5672//")

pytestmark = pytest.mark.slow

QUESTIONS = [
    "how do I reset my password",
    "can I change my delivery address",
    "how long does a refund take",
    "do you ship abroad",
]


def rabbitmq_answers(url: str = RABBITMQ_URL) -> bool:
    """True when something listens on the broker's port (make test starts RabbitMQ)."""
    from urllib.parse import urlparse

    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "localhost", parsed.port or 5672), 2):
            return True
    except OSError:
        return False


def needs_rabbitmq() -> None:
    if not rabbitmq_answers():
        pytest.skip(f"RabbitMQ does not answer at {RABBITMQ_URL} (`make rabbitmq` starts it)")


def ready(url: str) -> httpx.Response:
    return httpx.get(f"{url}/health/ready", timeout=10)


def worker_log(stack: Stack) -> str:
    return "\n".join(
        p.read_text(errors="replace") for p in stack.logdir.glob(f"{stack.name}-worker*.log")
    )


# Four stacks: run once, in the PostgreSQL pass, with the other multi-process topologies.
@pytest.mark.topology
@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
@pytest.mark.timeout(300)
def test_two_deployments_on_one_redis_database_answer_only_their_own(logdir, broker):
    if broker == "rabbitmq":
        needs_rabbitmq()
    env = {"BROKER_URL": RABBITMQ_URL} if broker == "rabbitmq" else {"BROKER_URL": ""}
    # Both deployments boot side by side (each one's start-up is mostly waiting on its own
    # processes), then each is waited for.
    with side_stack(logdir, f"depA{broker}", env, wait=False) as a:
        shared = {**env, "REDIS_URL": a.env["REDIS_URL"]}
        with side_stack(logdir, f"depB{broker}", shared, wait=False) as b:
            ready_with_kb(a)
            ready_with_kb(b)
            assert a.env["REDIS_URL"] == b.env["REDIS_URL"] and a.prefix != b.prefix
            # Each deployment's readiness sees its own worker, not the other's.
            for stack in (a, b):
                resp = ready(stack.urls[0])
                assert resp.status_code == 200, resp.text
                assert resp.json()["checks"]["worker"]["workers"] == 1, resp.text

            # Interleaved conversations on both: every message answered by its own deployment.
            apis = {"a": Api(a.urls[0]), "b": Api(b.urls[0])}
            try:
                chats = {
                    name: [api.create_session() for _ in range(3)] for name, api in apis.items()
                }
                for round_ in range(len(QUESTIONS)):
                    for name, api in apis.items():
                        for chat in chats[name]:
                            resp = api.send(chat, QUESTIONS[round_], wait=30)
                            assert resp.status_code == 200, (name, resp.text)
                            assert resp.json()["message"], resp.text
                for name, api in apis.items():
                    for chat in chats[name]:
                        messages = api.history(chat)["messages"]
                        assert [m["role"] for m in messages] == ["user", "assistant"] * len(
                            QUESTIONS
                        )
                        assert all(m["status"] == "done" for m in messages if m["role"] == "user")
            finally:
                for api in apis.values():
                    api.close()

            # Neither worker ever saw a task of the other deployment (its row would be "gone").
            for stack in (a, b):
                assert "'gone'" not in worker_log(stack), stack.tail()
            # Every key in the shared database carries one of the two prefixes.
            client = redis.Redis.from_url(a.env["REDIS_URL"])
            keys = [k.decode() for k in client.scan_iter(count=1000)]
            strays = [k for k in keys if k != LOCK_KEY and not k.startswith((a.prefix, b.prefix))]
            assert not strays, strays

            # B loses its worker: B is not ready and says why; A's worker does not count for B.
            b.kill_worker()
            resp = ready(b.urls[0])
            assert resp.status_code == 503, resp.text
            error = resp.json()["checks"]["worker"]["error"]
            assert f"no worker of deployment {b.prefix!r}" in error, error
            assert resp.json()["checks"]["broker"]["ok"] is True
            assert ready(a.urls[0]).status_code == 200


@pytest.mark.processes  # a web process and an unreachable broker: once is enough
@pytest.mark.timeout(120)
def test_readiness_says_why_no_worker_answers(migrated_db, logdir):
    """A web process whose broker is down (the case of a deployment without a worker of its
    own, broker up, is checked above with a deployment whose worker was killed)."""
    closed = free_port()
    env = base_env() | {
        "EVENT_CHANNEL_PREFIX": f"hlnobroker-{uuid.uuid4().hex[:6]}",
        "BROKER_URL": f"amqp://guest:secret@127.0.0.1:{closed}//",
    }
    stack = Stack(env, Path(logdir), name="nobroker")
    try:
        body = wait_for_answer(stack.start_web())
        checks = body["checks"]
        assert body["status"] == "unavailable" and checks["database"]["ok"], body
        assert checks["redis"]["ok"] and checks["broker"]["ok"] is False, body
        assert "the broker at amqp://guest:***@127.0.0.1" in checks["worker"]["error"], body
        assert "unreachable" in checks["worker"]["error"], body
        assert "secret" not in str(body), "the broker password must not be shown"
    finally:
        stack.stop(graceful=False)


@pytest.mark.processes  # a web process and the Procfile's two worker roles: once is enough
@pytest.mark.timeout(180)
def test_ready_once_the_answer_queues_have_a_worker(logdir):
    """The Procfile's `files` worker alone leaves the answer queues without a consumer: not
    ready, and the check names them. With the `worker` role too, ready with both counted and
    no warning. The `worker` role alone is ready too (chat is answered), with a warning that
    names the files queues, which nobody consumes."""
    with side_stack(logdir, "roles", {}, kb=False, worker=False) as stack:
        url = stack.urls[0]
        stack.start_worker("files")
        answer_queues = sorted([stack.queue("interactive"), stack.queue("agent")])
        files_queues = sorted([stack.queue("attachments"), stack.queue("kb")])
        deadline = time.monotonic() + 90
        while True:  # until the files worker answers (before that, no worker does)
            try:
                resp = ready(url)
            except httpx.HTTPError:  # the web process is still starting
                resp = None
            if resp is not None and "answered, but" in resp.text:
                break
            assert time.monotonic() < deadline, resp.text if resp else stack.tail()
            time.sleep(0.3)
        assert resp.status_code == 503 and resp.headers["Retry-After"], resp.text
        error = resp.json()["checks"]["worker"]["error"]
        assert f"none consumes {', '.join(answer_queues)}" in error, error
        assert files_queues[0] not in error and files_queues[1] not in error, error

        stack.start_worker("worker")
        stack.wait_ready()
        resp = ready(url)
        assert resp.status_code == 200, resp.text
        check = resp.json()["checks"]["worker"]
        # Neither role alone serves every queue, so readiness heard both.
        assert check["workers"] == 2 and "warning" not in check, resp.text

    with side_stack(logdir, "answers", {}, kb=False, worker=False) as stack:
        url = stack.urls[0]
        files_queues = sorted([stack.queue("attachments"), stack.queue("kb")])
        stack.start_worker("worker")
        stack.wait_ready()  # no files role started: a 200 is enough
        resp = ready(url)
        assert resp.status_code == 200, resp.text
        check = resp.json()["checks"]["worker"]
        assert check["workers"] == 1, resp.text
        assert check["warning"].startswith(f"no worker consumes {', '.join(files_queues)}"), check


def wait_for_answer(url: str, timeout: float = 60) -> dict:
    """The first /health/ready answer of a starting web process (503 expected)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            resp = ready(url)
            assert resp.status_code == 503 and resp.headers["Retry-After"], resp.text
            return resp.json()
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
