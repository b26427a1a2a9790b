"""Metrics for Prometheus, shared by every process through Redis, rendered by prometheus-client.

Why Redis and not prometheus-client's multiprocess mode: the numbers come from two kinds of
process (gunicorn web workers and Celery worker children), and on the hosts this targets (a
Heroku-like platform, `make run` on one machine, several machines behind a balancer) the web and
the worker do not share a disk, so PROMETHEUS_MULTIPROC_DIR files written by the worker could
never be read by the web's `/metrics`. Every process already shares one Redis; counters there
(atomic HINCRBY/HINCRBYFLOAT under the deployment's key prefix) add up across processes and
hosts, and survive a process restart, which is what a Prometheus counter needs. Point-in-time
numbers (queue depth, open sockets) are read when scraped. prometheus-client still writes the
exposition format, through a custom collector over these hashes.

Recording never fails the caller: a metric lost while Redis is down is better than a lost answer.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from typing import Any

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from models import jobs
from models.events import redis_client
from models.settings import get_settings

log = logging.getLogger(__name__)

# Seconds from receiving a customer message to storing the bot's answer, and the engine's share.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SOCKET_TTL = 120  # a web process that died stops counting after this many seconds


def _key(name: str) -> str:
    return f"{get_settings().event_channel_prefix}:metrics:{name}"


def _quietly(action: str, fn: Any) -> None:
    try:
        fn(redis_client())
    except redis.RedisError as exc:
        log.debug("metric not recorded", extra={"metric": action, "error": str(exc)})


def count(name: str, label: str, amount: int = 1) -> None:
    """Add to counter `name` for one label value (messages by role, errors by kind)."""
    _quietly(name, lambda r: count_into(r, name, label, amount))


def count_into(pipe: Any, name: str, label: str, amount: int = 1) -> None:
    """Queue a `count` on a pipeline (or run it on a client): callers that already talk to
    Redis after a step add their metrics to that round trip instead of paying their own."""
    pipe.hincrby(_key(name), label, amount)


def observe(name: str, seconds: float) -> None:
    """One observation of histogram `name` (non-cumulative buckets, made cumulative on scrape)."""

    def write(r: redis.Redis) -> None:
        pipe = r.pipeline(transaction=False)
        observe_into(pipe, name, seconds)
        pipe.execute()

    _quietly(name, write)


def observe_into(pipe: Any, name: str, seconds: float) -> None:
    """Queue an `observe` on a pipeline (see count_into)."""
    bucket = next((str(b) for b in LATENCY_BUCKETS if seconds <= b), "+Inf")
    pipe.hincrby(_key(name), bucket, 1)
    pipe.hincrbyfloat(_key(name), "_sum", max(0.0, seconds))


def _process_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def report_sockets(open_now: int) -> None:
    """This web process's open sockets, kept for SOCKET_TTL (renewed on every change)."""
    _quietly(
        "sockets", lambda r: r.set(f"{_key('sockets')}:{_process_id()}", open_now, ex=SOCKET_TTL)
    )


def forget_sockets() -> None:
    """A web process that exits stops counting at once (not after SOCKET_TTL)."""
    _quietly("sockets", lambda r: r.delete(f"{_key('sockets')}:{_process_id()}"))


COUNTERS = {
    "messages": ("helpline_messages", "Messages stored, by role (user, assistant, agent)", "role"),
    "errors": (
        "helpline_errors",
        "Errors: HTTP 5xx answers, failed tasks, answers that failed, socket errors",
        "kind",
    ),
}
HISTOGRAMS = {
    "answer_latency": (
        "helpline_answer_latency_seconds",
        "From the customer's message being stored to the bot's answer being stored",
    ),
    "answer_engine": (
        "helpline_answer_engine_seconds",
        "Time the answer engine spent on one answer (retrieval and writing)",
    ),
}


class RedisCollector(Collector):
    """Reads the shared counters, histograms and gauges when Prometheus scrapes."""

    def collect(self) -> Iterator[Any]:
        r = redis_client()
        for key, (name, doc, label) in COUNTERS.items():
            family = CounterMetricFamily(name, doc, labels=[label])
            for value, n in sorted(r.hgetall(_key(key)).items()):
                family.add_metric([value.decode()], float(n))
            yield family
        for key, (name, doc) in HISTOGRAMS.items():
            raw = {k.decode(): float(v) for k, v in r.hgetall(_key(key)).items()}
            buckets, running = [], 0.0
            for bound in (*(str(b) for b in LATENCY_BUCKETS), "+Inf"):
                running += raw.get(bound, 0.0)
                buckets.append((bound, running))
            family = HistogramMetricFamily(name, doc)
            family.add_metric([], buckets, sum_value=raw.get("_sum", 0.0))
            yield family
        depth = GaugeMetricFamily(
            "helpline_queue_depth", "Tasks waiting in each Celery queue", labels=["queue"]
        )
        for kind in jobs.QUEUE_KINDS:  # asked of the broker: Redis lists or RabbitMQ queues
            waiting = jobs.kind_depth(kind)
            if waiting is not None:
                depth.add_metric([kind], float(waiting))
        yield depth
        sockets = 0
        for name in r.scan_iter(f"{_key('sockets')}:*", count=500):
            sockets += int(r.get(name) or 0)
        yield GaugeMetricFamily(
            "helpline_open_sockets", "Open WebSockets (customers, agents, consoles)", value=sockets
        )
