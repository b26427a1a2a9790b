"""`/metrics`: Prometheus text that prometheus-client's own parser reads, whose counters move
with real traffic across processes (web and worker), and which only loopback or a token reads."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.client import Socket
from tests.conftest import base_env
from tests.stack import Stack


def scrape(base: str, **headers: str) -> dict[tuple[str, tuple], float]:
    resp = httpx.get(f"{base}/metrics", headers=headers, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


MESSAGE_COUNTERS = ("helpline_messages_total", "helpline_answer_latency_seconds_count")


def settled_scrape(base: str, timeout: float = 60) -> dict[tuple[str, tuple], float]:
    """A scrape once the shared stack is quiet: earlier tests may still have answers in flight,
    and the counters are per deployment, so they must stop moving before this test counts."""
    deadline = time.monotonic() + timeout
    last = scrape(base)
    while True:
        time.sleep(1.0)
        now = scrape(base)
        if all(v == last.get(k) for k, v in now.items() if k[0] in MESSAGE_COUNTERS):
            return now
        assert time.monotonic() < deadline, "the stack never went quiet"
        last = now


def test_counters_move_with_real_messages_and_sockets(stack, api, chat):
    base = stack.urls[0]
    before = settled_scrape(base)
    assert {("helpline_queue_depth", (("queue", q),)) for q in ("agent", "kb")} <= set(before)
    assert ("helpline_open_sockets", ()) in before

    resp = api.send(chat, "How long do I have to return an item?", wait=20)
    assert resp.status_code == 200, resp.text
    socket = Socket(stack.urls[1], session_id=chat["session_id"], token=chat["token"])
    try:
        socket.until("connected")
        during = scrape(base)  # the other web process's socket counts here too
    finally:
        socket.close()

    def moved(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return during.get(key, 0) - before.get(key, 0)

    assert moved("helpline_messages_total", role="user") == 1
    assert moved("helpline_messages_total", role="assistant") == 1
    assert moved("helpline_answer_latency_seconds_count") == 1
    assert moved("helpline_answer_engine_seconds_count") == 1
    assert moved("helpline_answer_latency_seconds_sum") > 0
    assert (
        during[("helpline_answer_latency_seconds_bucket", (("le", "+Inf"),))]
        == during[("helpline_answer_latency_seconds_count", ())]
    )
    assert during[("helpline_open_sockets", ())] >= 1  # ours, on the other web process


def live_web(stack: Stack, timeout: float = 60) -> str:
    """Start one web process of `stack` and return its URL once it answers /health/live."""
    base = stack.start_web()
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base}/health/live", timeout=5).status_code == 200:
                return base
        except httpx.HTTPError:
            pass
        assert stack.webs[-1][0].poll() is None, stack.tail()
        assert time.monotonic() < deadline, stack.tail()
        time.sleep(0.2)


@pytest.mark.processes  # the web process's own check, whatever the database: once is enough
def test_a_token_guards_metrics_when_set(migrated_db, logdir):
    # /metrics is the web process's own: one web with the token, on the suite's database and
    # Redis under a prefix of its own, is all this needs (no worker, no knowledge base).
    token = "scrape-me-please-0123"
    env = base_env() | {
        "METRICS_TOKEN": token,
        "EVENT_CHANNEL_PREFIX": f"hlmetrics-{uuid.uuid4().hex[:6]}",
    }
    s = Stack(env, logdir, name="metrics")
    try:
        base = live_web(s)
        refused = httpx.get(f"{base}/metrics", timeout=10)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "metrics_token"
        wrong = httpx.get(f"{base}/metrics", headers={"Authorization": "Bearer nope"}, timeout=10)
        assert wrong.status_code == 401
        assert ("helpline_open_sockets", ()) in scrape(base, Authorization=f"Bearer {token}")
    finally:
        s.stop(graceful=False)
