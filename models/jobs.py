"""The task contract: every task name and a typed sender for each, used by web and worker.

Tasks are sent by name so the web never imports worker code (nor haystack). A failed send
returns False and logs: the row that describes the work is already committed, and the sweeper
re-sends anything whose deadline passes (see models/work.py).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

log = logging.getLogger(__name__)

GENERATE_REPLY = "helpline.generate_reply"
PARSE_ATTACHMENT = "helpline.parse_attachment"
INGEST_DOCUMENT = "helpline.ingest_document"
DELIVER_WEBHOOK = "helpline.deliver_webhook"
SEARCH_KB = "helpline.search_kb"
PING = "helpline.ping"

_app: Celery | None = None


def use_app(app: Celery) -> None:
    """The worker registers its own app so sends reuse its broker connections."""
    global _app
    _app = app


def producer() -> Celery:
    """The Celery app used to send (made on first use in the web process)."""
    global _app
    if _app is None:
        _app = Celery("helpline")
        _app.config_from_object("celeryconfig")
    return _app


def _send(task: str, *args: Any, countdown: float | None = None) -> bool:
    try:
        # By name, send_task does not know the task ignores its result: say so, or every send
        # subscribes to a result channel nobody reads.
        producer().send_task(task, args=list(args), ignore_result=True, countdown=countdown)
        return True
    except Exception as exc:  # kombu raises several unrelated types when the broker is away
        log.error("enqueue failed; the sweeper will retry", extra={"task": task, "error": str(exc)})
        return False


def send_reply(message_id: str) -> bool:
    """Answer (or hand over) one customer message."""
    return _send(GENERATE_REPLY, message_id)


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
    routes = producer().conf.task_routes or {}
    queue = (routes.get(task) or {}).get("queue") or producer().conf.task_default_queue
    try:
        with producer().connection_for_write() as conn:
            return int(conn.default_channel.queue_declare(queue, passive=True).message_count)
    except Exception:  # broker away, or a transport without passive declare
        return None


def search(query: str, limit: int, timeout: float) -> list[dict]:
    """Ask a worker to search the knowledge base and wait for the rows (raises on timeout)."""
    result = producer().send_task(SEARCH_KB, args=[query, limit], ignore_result=False)
    return result.get(timeout=timeout)
