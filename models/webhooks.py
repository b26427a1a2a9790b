"""Ticket notifications to WEBHOOK_URLS: queued in the transaction that made the change.

The rows are the outbox: a delivery exists the moment its ticket change commits, and the
worker's `deliver_webhook` task (retried with backoff, swept like any other work) is the only
thing that marks it `done`, after a 2xx. The body is signed with HMAC-SHA256 over
`<timestamp>.<body>` with WEBHOOK_SECRET, so a receiver can check origin and freshness.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from sqlalchemy.orm import Session

from models.base import new_id, utcnow
from models.chat import WebhookDelivery
from models.events import iso
from models.settings import get_settings

SIGNATURE_HEADER = "X-Helpline-Signature"
TIMESTAMP_HEADER = "X-Helpline-Timestamp"
EVENT_HEADER = "X-Helpline-Event"


def queue_deliveries(db: Session, event: str, ticket: dict) -> list[str]:
    """One delivery per configured URL (none when no URL is set); returns their ids."""
    from models.work import WEBHOOK, queue

    ids = []
    now = utcnow()
    for url in get_settings().webhook_urls:
        row = WebhookDelivery(
            id=new_id(),
            ticket_id=ticket.get("id"),
            event=event,
            url=url,
            payload={"id": new_id(), "event": event, "occurred_at": iso(now), "ticket": ticket},
        )
        queue(row, WEBHOOK, now)
        db.add(row)
        ids.append(row.id)
    return ids


def body_bytes(payload: dict) -> bytes:
    """The exact bytes sent (and signed): compact, key order kept."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` over `<timestamp>.<body>`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()
