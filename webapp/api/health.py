"""Liveness and readiness: ready means database, Redis and the broker answer, and the answer
queues (the `worker` role's) are consumed by a worker of this deployment that answers. The
`files` role's queues without a worker leave the deployment ready with a `warning` on the
`worker` check: uploads and documents wait, safely queued, but chat is answered. When not
ready, the `worker` check says why (broker unreachable, no worker answered, or which answer
queues nobody consumes).

Documented like the API (schemas, 503 with Retry-After) once registered with `api`."""

from __future__ import annotations

import time

from flask_smorest import Blueprint
from sqlalchemy import text

from models.db import new_session
from models.events import redis_client
from models.jobs import QUEUE_KINDS, ROLES, producer, queue_name
from models.schemas import HealthOut, LiveOut, ReadyOut
from models.settings import get_settings, redact
from webapp.api import PUBLIC, errors
from webapp.events import get_hub
from webapp.extensions import RETRY_AFTER_HEADER

blp = Blueprint(
    "health", __name__, url_prefix="/health", description="Liveness and readiness (anyone)"
)

_UNAVAILABLE = "a dependency does not answer: see `checks`"


def _check(fn) -> dict:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    try:
        detail = fn()
        return {
            "ok": True,
            "ms": round((time.perf_counter() - started) * 1000, 2),
            **(detail or {}),
        }
    except Exception as exc:  # a health check reports every failure, whatever its type
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}


def _database() -> None:
    db = new_session()
    try:
        db.execute(text("SELECT 1"))
    finally:
        db.close()


def _redis() -> None:
    redis_client().ping()


def _broker() -> dict:
    s = get_settings()
    with producer().connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
    return {"transport": "amqp" if s.broker_is_amqp else "redis"}


def _consumers() -> str:
    """`queue: n consumers` for each queue (RabbitMQ counts them; Redis cannot tell)."""
    if not get_settings().broker_is_amqp:
        return ""
    counts = []
    with producer().connection_for_write() as conn:
        for kind in QUEUE_KINDS:
            name = queue_name(kind)
            try:
                n = conn.default_channel.queue_declare(name, passive=True).consumer_count
                counts.append(f"{name}: {n}")
            except Exception:  # the queue was never declared: no worker ever consumed it
                counts.append(f"{name}: not declared")
                conn.close()  # a failed passive declare closes the channel
    return "; consumers per queue: " + ", ".join(counts)


class _AllQueuesServed(Exception):
    """Raised from the reply callback to stop collecting: every queue has a worker.

    Kombu's collection loop stops only at a reply count (unknown here: replicas) or after its
    timeout passes with no reply; an exception from the callback leaves it through its own
    `with consumer` (the reply consumer is cancelled) and `finally`, after the message that
    completed the set was read in full."""


def _worker(broker_ok: bool) -> dict:
    """Asks only this deployment's workers (the control exchange carries its prefix) which
    queues they consume, and returns as soon as every queue of the deployment has one.

    Why the answer queues and not any worker: with the Procfile's split, a `files` worker
    alone would make a web process ready whose messages nobody answers. Why not the `files`
    queues too: a web process whose chat is answered can serve customers; taking it out of a
    load balancer because the attachment parser is down would turn a degraded feature into an
    outage (uploads are accepted and stay queued until a `files` worker consumes them), so
    that case is ready with a `warning` naming the queues. Why return early: a broadcast
    collects replies until none has come for its timeout, so a check that waited for it cost
    every caller (a load balancer's probe, a deploy's readiness gate, each stack a test
    starts) a full second even when the workers had answered within milliseconds; the 1 s is
    now only spent when some queue has no worker (or a worker is too busy to answer).
    `workers` counts the workers heard until then."""
    s = get_settings()
    where = redact(s.broker_url)
    if not broker_ok:
        raise RuntimeError(f"cannot ask workers: the broker at {where} is unreachable")
    wanted = {queue_name(kind) for kind in QUEUE_KINDS}
    needed = {queue_name(kind) for kind in ROLES["worker"]}
    heard: set[str] = set()
    served: set[str] = set()

    def on_reply(reply: dict) -> None:
        for hostname, queues in reply.items():  # {hostname: [queue declarations]}
            heard.add(hostname)
            if isinstance(queues, list):  # an error reply is a dict
                served.update(q.get("name") for q in queues if isinstance(q, dict))
        if wanted <= served:
            raise _AllQueuesServed

    control = producer().control
    try:
        control.broadcast("active_queues", reply=True, timeout=1.0, callback=on_reply)
    except _AllQueuesServed:
        pass
    finally:
        # Replies that come after a check stopped listening are read by the next one and
        # kept under their ticket, which nobody asks for again: drop them.
        control.mailbox.unclaimed.clear()
    if not heard:
        queues = ", ".join(sorted(wanted))
        raise RuntimeError(
            f"the broker at {where} answers, but no worker of deployment "
            f"{s.event_channel_prefix!r} answered a ping within 1 s (start `worker` and `files` "
            f"with the same BROKER_URL and EVENT_CHANNEL_PREFIX; queues {queues})"
            + _check_quietly(_consumers)
        )
    if not needed <= served:
        missing = ", ".join(sorted(needed - served))
        raise RuntimeError(
            f"{len(heard)} worker(s) of deployment {s.event_channel_prefix!r} answered, but "
            f"none consumes {missing} (start both `worker` and `files`)"
            + _check_quietly(_consumers)
        )
    if not wanted <= served:
        missing = ", ".join(sorted(wanted - served))
        return {
            "workers": len(heard),
            "warning": f"no worker consumes {missing}: uploads and documents wait until a "
            "`files` worker is started",
        }
    return {"workers": len(heard)}


def _check_quietly(fn) -> str:  # type: ignore[no-untyped-def]
    try:
        return fn()
    except Exception:  # an explanation must not hide the failure it explains
        return ""


@blp.route("/live", methods=["GET"])
@blp.response(200, LiveOut)
@blp.doc(**PUBLIC)
@errors(blp)
def live() -> dict:
    """The process is up (no dependency checked)."""
    return {"status": "ok"}


def _readiness() -> tuple[dict, int, dict[str, str]]:
    broker = _check(_broker)
    checks = {
        "database": _check(_database),
        "redis": _check(_redis),
        "broker": broker,
        "worker": _check(lambda: _worker(broker["ok"])),
    }
    ok = all(c["ok"] for c in checks.values())
    body = {"status": "ok" if ok else "unavailable", "checks": checks}
    return body, 200 if ok else 503, {} if ok else {"Retry-After": "5"}


@blp.route("/ready", methods=["GET"])
@blp.response(200, ReadyOut)
@blp.alt_response(503, schema=ReadyOut, description=_UNAVAILABLE, headers=RETRY_AFTER_HEADER)
@blp.doc(**PUBLIC)
@errors(blp)
def ready() -> tuple[dict, int, dict[str, str]]:
    """503 with Retry-After unless every dependency answers."""
    return _readiness()


@blp.route("", methods=["GET"])
@blp.response(200, HealthOut)
@blp.alt_response(503, schema=HealthOut, description=_UNAVAILABLE, headers=RETRY_AFTER_HEADER)
@blp.doc(**PUBLIC)
@errors(blp)
def health() -> tuple[dict, int, dict[str, str]]:
    """Summary: readiness plus this process's socket count."""
    body, status, headers = _readiness()
    hub = get_hub()
    return {**body, "sockets": hub.count(), "pubsub_connected": hub.connected}, status, headers
