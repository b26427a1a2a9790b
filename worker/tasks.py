"""Thin Celery tasks: ids in, work delegated, transient failures retried with backoff + jitter."""

from __future__ import annotations

from models.jobs import whole_seconds
from models.work import TRANSIENT
from worker import app
from worker.attachments import parse
from worker.engines import search_rows
from worker.kb import ingest
from worker.replies import Busy, answer_pending
from worker.webhooks import RetryLater, deliver

# Only errors that a later attempt can plausibly fix are retried automatically.
RETRYING = {
    "autoretry_for": TRANSIENT,
    "retry_backoff": True,
    "retry_backoff_max": 30,
    "retry_jitter": True,
}
# Waiting for an earlier message or an attachment: 0.5 s steps for up to ~3 minutes.
BUSY_RETRIES = 400


@app.task(name="helpline.generate_reply", bind=True, max_retries=BUSY_RETRIES, **RETRYING)
def generate_reply(self, message_id: str) -> str:  # type: ignore[no-untyped-def]
    """Answer a user message (and any earlier unanswered one in its session) exactly once."""
    try:
        return answer_pending(message_id)
    except Busy as busy:
        raise self.retry(countdown=whole_seconds(busy.countdown)) from None


@app.task(name="helpline.parse_attachment", max_retries=5, **RETRYING)
def parse_attachment(attachment_id: str) -> str:
    """Extract an attachment's text and tell the session."""
    return parse(attachment_id)


@app.task(name="helpline.ingest_document", max_retries=5, **RETRYING)
def ingest_document(document_id: str) -> str:
    """Convert, split and index one knowledge-base document."""
    return ingest(document_id)


@app.task(name="helpline.deliver_webhook", bind=True, max_retries=10, **RETRYING)
def deliver_webhook(self, delivery_id: str) -> str:  # type: ignore[no-untyped-def]
    """Post one ticket notification; the receiver's temporary failures are retried."""
    try:
        return deliver(delivery_id)
    except RetryLater as later:
        raise self.retry(countdown=whole_seconds(later.countdown)) from None


@app.task(name="helpline.search_kb", ignore_result=False, soft_time_limit=10)
def search_kb(query: str, limit: int = 5) -> list[dict]:
    """Ranked knowledge-base passages for the web's /api/chat/search."""
    return search_rows(query, limit)


@app.task(name="helpline.ping", ignore_result=False)
def ping(payload: str = "") -> str:
    """No-op round trip: the baseline the chat benchmark compares answers against."""
    return payload
