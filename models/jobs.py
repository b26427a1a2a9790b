"""The task contract: every task name and a typed sender for each, used by web and worker.

Tasks are sent by name so the web never imports worker code (nor haystack). A failed send
returns False and logs: the row that describes the work is already committed, and the sweeper
re-sends anything whose deadline passes (see models/work.py).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from celery import Celery

from models.redisconn import share_broker_clients
from models.settings import get_settings

log = logging.getLogger(__name__)

# Imported by celeryconfig, so in force in every process that talks to the broker (web, worker,
# the tests' and benchmarks' clients) before its first channel is opened.
share_broker_clients()

GENERATE_REPLY = "helpline.generate_reply"
PARSE_ATTACHMENT = "helpline.parse_attachment"
INGEST_DOCUMENT = "helpline.ingest_document"
DELIVER_WEBHOOK = "helpline.deliver_webhook"
SEARCH_KB = "helpline.search_kb"
PING = "helpline.ping"

# Queue kinds; a deployment's queue on the broker is `<EVENT_CHANNEL_PREFIX>.<kind>`.
# `interactive`: someone waits on the call (search, ping); `agent`: replies; `attachments` and
# `kb`: files, documents and webhook deliveries (the `files` process, so answers never wait
# behind a slow file).
QUEUE_KINDS = ("interactive", "agent", "attachments", "kb")
ROUTES = {
    GENERATE_REPLY: "agent",
    SEARCH_KB: "interactive",
    PING: "interactive",
    PARSE_ATTACHMENT: "attachments",
    INGEST_DOCUMENT: "kb",
    DELIVER_WEBHOOK: "kb",
}
# Worker roles (the Procfile's processes) and the queue kinds each consumes.
ROLES = {
    "worker": ("interactive", "agent"),
    "files": ("attachments", "kb"),
    "all": QUEUE_KINDS,
}


def queue_name(kind: str, prefix: str | None = None) -> str:
    """The broker queue of one kind for this deployment (or for `prefix`)."""
    if kind not in QUEUE_KINDS:
        raise ValueError(f"unknown queue kind {kind!r}")
    return f"{prefix or get_settings().event_channel_prefix}.{kind}"


def role_queues(role: str, prefix: str | None = None) -> list[str]:
    """The queues a worker of `role` consumes."""
    if role not in ROLES:
        raise ValueError(f"unknown worker role {role!r}; one of {', '.join(ROLES)}")
    return [queue_name(kind, prefix) for kind in ROLES[role]]


_app: Celery | None = None


def use_app(app: Celery) -> None:
    """The worker registers its own app so sends reuse its broker connections."""
    global _app
    _app = app


def producer() -> Celery:
    """The Celery app used to send (made on first use in the web process)."""
    global _app
    if _app is None:
        app = Celery("helpline")
        app.config_from_object("celeryconfig")
        if _under_gevent():
            # Celery keeps a result backend per thread unless told it may share one; under
            # gevent every greenlet (each socket, each request) counts as a thread, so each
            # built its own backend on its first send (a third of a send's CPU, and memory per
            # socket). One shared backend is what gevent is served by: waits on results
            # (search) go through Celery's gevent drainer, one greenlet for the process.
            app.conf.result_backend_thread_safe = True
        _app = app
    return _app


def warm_up() -> None:
    """Build now what a web process's first send would build: the result backend (Celery
    scans the installed packages' entry points for it), the task sender, and the broker
    connection the sends use.

    Why: the first customer message after a start paid for all of it inside its send, 13-101
    ms per process on this machine, which lands in the burst of first messages a deploy or a
    restart meets (bench/README.md, "Session 8"); warmed, the first send costs what the next
    ones do (3.4 against 16 ms measured in process). Best effort and never fatal: the caller
    runs it beside the serving loop, and a broker that is away only leaves the work to the
    first send, as before."""
    try:
        app = producer()
        app.backend  # noqa: B018 - built on first access
        app.amqp.send_task_message  # noqa: B018 - the sender, made on first access
        with app.producer_or_acquire() as prod:
            acquire = getattr(prod.channel, "conn_or_acquire", None)  # Redis's channel
            if acquire is None:
                prod.connection.ensure_connection(max_retries=1)
            else:
                with acquire() as client:
                    client.ping()
    except Exception as exc:  # kombu and redis raise several unrelated types
        log.warning(
            "task sender not warmed up; the first send will do it", extra={"error": str(exc)}
        )


def _under_gevent() -> bool:
    """True in a gevent-patched process (the web under gunicorn's gevent worker)."""
    import sys

    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey and monkey.is_module_patched("threading"))


def whole_seconds(countdown: float) -> float:
    """A retry delay the broker can honour: RabbitMQ's native delayed delivery (quorum queues)
    counts whole seconds and refuses a delay under one, so it is rounded up there."""
    if countdown > 0 and get_settings().broker_is_amqp:
        return float(math.ceil(countdown))
    return countdown


def _light(args: list[Any]) -> dict[str, Any]:
    """`send_task` options that spare Celery work it would redo identically on every send.

    Why: a reply task is sent for every customer message, and a third of a send's CPU went to
    two repeats (bench/README.md, "Session 8"): `saferepr` of the arguments for the message
    headers (ids: plain `repr` is the same text), and on Redis a queue declaration per send (a
    copy of the queue bound to the channel, to find it declared already). On Redis the
    declaration is not needed to deliver: Celery publishes a task for a direct exchange to the
    queue's list by name (the anonymous exchange), which exists whether or not anyone declared
    it, and workers declare their queues when they start. On RabbitMQ an undeclared queue
    would drop the message, so there it stays."""
    options: dict[str, Any] = {"argsrepr": repr(args), "kwargsrepr": "{}"}
    if not get_settings().broker_is_amqp:
        options["declare"] = []
    return options


def _send(task: str, *args: Any, countdown: float | None = None) -> bool:
    try:
        # By name, send_task does not know the task ignores its result: say so, or every send
        # subscribes to a result channel nobody reads.
        producer().send_task(
            task,
            args=list(args),
            ignore_result=True,
            countdown=None if countdown is None else whole_seconds(countdown),
            **_light(list(args)),
        )
        return True
    except Exception as exc:  # kombu raises several unrelated types when the broker is away
        log.error("enqueue failed; the sweeper will retry", extra={"task": task, "error": str(exc)})
        return False


def send_reply(message_id: str) -> bool:
    """Answer (or hand over) one customer message."""
    return _send(GENERATE_REPLY, message_id)


def send_replies(message_ids: list[str]) -> bool:
    """Answer several customer messages: one `generate_reply` task each, as `send_reply` sends
    them, but published together (on Redis, one pipeline: one round trip for all of them).

    Why: a web process's group commit stores a burst's first messages in one transaction, and
    each of them then sent its reply task alone, one LPUSH round trip per message, competing
    for the CPU with the next batch's acknowledgements (bench/README.md, "Session 8"). The
    tasks and their order are unchanged. A transport without batches (RabbitMQ) publishes each
    at once. False (logged) if the broker refused: kombu does not retry a failed batch (it
    cannot tell which tasks arrived), so some may be sent and others not; the stored messages'
    claim deadlines have the sweeper re-send the unanswered ones, and a task that arrives
    twice is answered once (the worker claims its message)."""
    if not message_ids:
        return True
    if len(message_ids) == 1:
        return send_reply(message_ids[0])
    app = producer()
    try:
        with app.producer_or_acquire() as prod, prod.batch():
            for message_id in message_ids:
                args = [message_id]
                app.send_task(
                    GENERATE_REPLY, args=args, ignore_result=True, producer=prod, **_light(args)
                )
        return True
    except Exception as exc:  # kombu raises several unrelated types when the broker is away
        log.error(
            "enqueue failed; the sweeper will retry",
            extra={"task": GENERATE_REPLY, "count": len(message_ids), "error": str(exc)},
        )
        return False


def send_parse(attachment_id: str) -> bool:
    """Extract an attachment's text."""
    return _send(PARSE_ATTACHMENT, attachment_id)


def send_ingest(document_id: str) -> bool:
    """Convert, split and index a knowledge-base document."""
    return _send(INGEST_DOCUMENT, document_id)


def send_webhook(delivery_id: str, countdown: float | None = None) -> bool:
    """Post one ticket notification."""
    return _send(DELIVER_WEBHOOK, delivery_id, countdown=countdown)


SENDERS = {
    GENERATE_REPLY: send_reply,
    PARSE_ATTACHMENT: send_parse,
    INGEST_DOCUMENT: send_ingest,
    DELIVER_WEBHOOK: send_webhook,
}


def queue_depth(task: str) -> int | None:
    """Tasks waiting in the queue `task` is routed to (None when the broker cannot tell)."""
    return kind_depth(ROUTES.get(task, "agent"))


def kind_depth(kind: str) -> int | None:
    """Tasks waiting in this deployment's queue of one kind, on either broker (None when the
    broker cannot tell)."""
    queue = queue_name(kind)
    try:
        with producer().connection_for_write() as conn:
            return int(conn.default_channel.queue_declare(queue, passive=True).message_count)
    except Exception as exc:  # broker away, or a transport without passive declare
        if str(getattr(exc, "reply_code", "")) == "404":  # int on RabbitMQ, str on Redis
            return 0  # not declared yet (no worker ever consumed it): nothing is waiting
        return None


def search(query: str, limit: int, timeout: float) -> list[dict]:
    """Ask a worker to search the knowledge base and wait for the rows (raises on timeout)."""
    result = producer().send_task(SEARCH_KB, args=[query, limit], ignore_result=False)
    return result.get(timeout=timeout)
