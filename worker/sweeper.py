"""Finds user messages nobody is answering and sends their task again.

A message is 'queued' with a deadline to be claimed, or 'processing' under a lease the answering
task renews while it streams. Past either, the worker that had it is presumed dead (or the
enqueue never reached Redis): the sweeper puts it back in the queue. Tasks are idempotent, so
a sweep that races a slow-but-alive worker costs a no-op task, never a second answer.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import select, update

from models.base import utcnow
from models.chat import CLAIM_DEADLINE, Message
from models.db import new_session
from models.settings import get_settings

log = logging.getLogger(__name__)


def sweep_once(limit: int = 200) -> int:
    """Re-send the task of every overdue message; returns how many were re-sent."""
    from worker.tasks import generate_reply

    now = utcnow()
    db = new_session()
    resent = 0
    try:
        rows = db.execute(
            select(Message.id, Message.status, Message.lease_until)
            .where(
                Message.role == "user",
                Message.status.in_(("queued", "processing")),
                Message.lease_until < now,
            )
            .order_by(Message.created_at)
            .limit(limit)
        ).all()
        for msg_id, _status, lease in rows:
            # Single winner among concurrent sweepers: only the one that moves the lease re-sends.
            won = db.execute(
                update(Message)
                .where(Message.id == msg_id, Message.lease_until == lease)
                .values(status="queued", lease_until=now + CLAIM_DEADLINE)
            ).rowcount
            db.commit()
            if won:
                generate_reply.apply_async(args=[msg_id])
                resent += 1
    finally:
        db.close()
    if resent:
        log.warning("sweeper re-sent overdue replies", extra={"count": resent})
    return resent


def _loop(stop: threading.Event) -> None:
    interval = get_settings().sweep_interval
    while True:
        try:
            sweep_once()
        except Exception:  # the sweeper must survive database or broker hiccups
            log.exception("sweep failed")
        if stop.wait(interval):
            return


_stop = threading.Event()


def start_sweeper() -> threading.Thread:
    """Run `sweep_once` now and then every SWEEP_INTERVAL seconds in a daemon thread."""
    thread = threading.Thread(target=_loop, args=(_stop,), name="sweeper", daemon=True)
    thread.start()
    return thread
