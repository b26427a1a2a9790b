"""Posting ticket notifications: signed, time-limited, retried with backoff, outcome recorded.

A delivery is `done` only after the receiver answered 2xx. 5xx, 408, 429 and network errors
are retried (by the task, then by the sweeper) up to the kind's attempt limit; any other 4xx
means the receiver refuses this payload for good, so the delivery fails at once with that
status as its reason.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import httpx

from models.base import utcnow
from models.chat import WebhookDelivery
from models.db import session_scope
from models.settings import get_settings
from models.webhooks import EVENT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, body_bytes, sign
from models.work import WEBHOOK, claim, fail, finish, postpone

log = logging.getLogger(__name__)

TIMEOUT = httpx.Timeout(10.0, connect=5.0)
LEASE = timedelta(seconds=30)


class RetryLater(Exception):
    """The receiver could not take it now; the task retries after `countdown` seconds."""

    def __init__(self, reason: str, countdown: float) -> None:
        super().__init__(reason)
        self.countdown = countdown


def deliver(delivery_id: str) -> str:
    """Send one delivery; idempotent (a done or failed delivery is left alone)."""
    with session_scope() as db:
        if not claim(db, WEBHOOK, delivery_id, LEASE):
            return "not-claimable"
        row = db.get(WebhookDelivery, delivery_id)
        url, payload, event, attempts = row.url, row.payload, row.event, row.attempts
    body = body_bytes(payload)
    stamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Helpline-Webhooks/1",
        EVENT_HEADER: event,
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: sign(get_settings().webhook_secret or "", stamp, body),
    }
    try:
        resp = httpx.post(url, content=body, headers=headers, timeout=TIMEOUT)
    except httpx.HTTPError as exc:
        return _retry_or_fail(delivery_id, attempts, None, f"{type(exc).__name__}: {exc}"[:300])
    if 200 <= resp.status_code < 300:
        with session_scope() as db:
            finish(
                db, WEBHOOK, delivery_id, response_status=resp.status_code, delivered_at=utcnow()
            )
        log.info("webhook delivered", extra={"delivery_id": delivery_id, "event": event})
        return "done"
    reason = f"HTTP {resp.status_code} from the receiver"
    if resp.status_code in (408, 429) or resp.status_code >= 500:
        return _retry_or_fail(delivery_id, attempts, resp.status_code, reason)
    with session_scope() as db:
        fail(db, WEBHOOK, delivery_id, reason, response_status=resp.status_code)
    return "failed"


def _retry_or_fail(delivery_id: str, attempts: int, status: int | None, reason: str) -> str:
    """Record the attempt; give up after the last one, else hand back to the task to retry."""
    with session_scope() as db:
        if attempts >= WEBHOOK.max_attempts:
            fail(
                db,
                WEBHOOK,
                delivery_id,
                f"gave up after {attempts} attempts: {reason}",
                response_status=status,
            )
            log.warning("webhook failed", extra={"delivery_id": delivery_id, "error": reason})
            return "failed"
        postpone(db, WEBHOOK, delivery_id, backoff(attempts), reason, response_status=status)
    raise RetryLater(reason, backoff(attempts))


def backoff(attempts: int) -> float:
    """Seconds before the next try: 1, 2, 4, 8 … capped at 60."""
    return float(min(60, 2 ** max(0, attempts - 1)))
