"""Finds work nobody is doing and sends its task again, by one rule for every kind.

A row is `queued` with a deadline to be claimed, or `processing` under a lease its task renews
(replies) or that outlives the task's time limit (files, documents, webhooks). Past either, the
worker that had it is presumed dead (or the enqueue never reached the broker): the sweeper puts
it back in the queue, and after the kind's `max_attempts` claims it gives up with a readable
reason instead. Tasks are idempotent, so a sweep that races a slow-but-alive worker costs a
no-op task, never a second answer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select

from models import jobs, presence, storage
from models.base import utcnow
from models.chat import Ticket
from models.db import new_session
from models.errors import Conflict
from models.ownership import TicketState, announce, release
from models.settings import get_settings
from models.work import (
    ATTACHMENT,
    DOCUMENT,
    KINDS,
    REPLY,
    WEBHOOK,
    WorkKind,
    fail,
    overdue,
    requeue,
)

log = logging.getLogger(__name__)


def _give_up_attachment(row_id: str, reason: str) -> None:
    from worker.attachments import settle

    settle(row_id, reason)  # the customer gets an `attachment` event with the reason


def _give_up_document(row_id: str, reason: str) -> None:
    from worker.kb import fail_document

    fail_document(row_id, reason)


def _give_up_webhook(row_id: str, reason: str) -> None:
    db = new_session()
    try:
        fail(db, WEBHOOK, row_id, reason)
        db.commit()
    finally:
        db.close()


# A reply is never given up here: its task turns a message claimed too often into an apology
# and a ticket (a person follows up), so re-sending it is how it fails with a reason.
GIVE_UP: dict[str, Callable[[str, str], None] | None] = {
    REPLY.name: None,
    ATTACHMENT.name: _give_up_attachment,
    DOCUMENT.name: _give_up_document,
    WEBHOOK.name: _give_up_webhook,
}


def sweep_kind(kind: WorkKind, limit: int = 200) -> tuple[int, int]:
    """Re-send (or give up on) this kind's overdue rows; returns (re-sent, given up)."""
    resent = gave_up = 0
    db = new_session()
    try:
        items = overdue(db, kind, limit)
        db.rollback()
        # A queued row past its deadline while its queue still holds tasks is most likely just
        # waiting its turn: re-sending it would only double the backlog. Its deadline moves on;
        # once the queue is empty (or it waited six deadlines), it really was lost: re-sent.
        backlog = jobs.queue_depth(kind.task) if items else 0
        for item in items:
            give_up = GIVE_UP.get(kind.name)
            if item.exhausted and give_up is not None:
                give_up(item.id, f"gave up after {item.attempts} attempts (the worker kept dying)")
                gave_up += 1
                continue
            won = requeue(db, kind, item)  # only one of several sweepers wins each row
            db.commit()
            waiting = bool(backlog) and item.patient(kind)
            if won and not waiting:
                jobs.SENDERS[kind.task](item.id)
                resent += 1
    finally:
        db.close()
    return resent, gave_up


def release_abandoned_claims(limit: int = 50) -> int:
    """A claimed ticket whose agent has not been seen for AGENT_AWAY_SECONDS goes back to the
    queue, so a customer is never left with a silent bot and an absent person. An agent whose
    last sighting is unknown (Redis emptied) keeps the ticket: we only act on what we know."""
    away = get_settings().agent_away_seconds
    cutoff = utcnow() - timedelta(seconds=away)
    db = new_session()
    released = 0
    try:
        rows = db.execute(
            select(Ticket.id, Ticket.assignee)
            .where(Ticket.status == TicketState.CLAIMED, Ticket.updated_at < cutoff)
            .limit(limit)
        ).all()
        for ticket_id, agent in rows:
            seen = presence.last_seen(agent or "Support")
            if seen is None or seen > time.time() - away:
                continue
            try:
                change = release(db, ticket_id, agent or "Support", why="agent_away")
                db.commit()
            except Conflict:
                db.rollback()  # resolved or released meanwhile
                continue
            announce(change)
            released += 1
    finally:
        db.close()
    return released


# Files no row names are looked for this often per process (a directory listing and a lookup of
# the old files' ids: cheap, but nothing that needs doing every second).
ORPHAN_SWEEP_SECONDS = 600.0
_next_orphan_sweep = 0.0


def _sweep_orphan_files() -> None:
    global _next_orphan_sweep
    if time.monotonic() < _next_orphan_sweep:
        return
    _next_orphan_sweep = time.monotonic() + ORPHAN_SWEEP_SECONDS
    db = new_session()
    try:
        if orphans := storage.sweep_orphans(db):
            log.warning("removed attachment files no row names", extra={"count": orphans})
    finally:
        db.close()


def sweep_once(limit: int = 200) -> int:
    """One pass over every kind (and abandoned claims); returns how many tasks were re-sent."""
    if released := release_abandoned_claims():
        log.warning("released tickets of agents who went away", extra={"count": released})
    if parts := storage.sweep_parts():
        log.warning("removed files of uploads that never finished", extra={"count": parts})
    _sweep_orphan_files()
    total = 0
    for kind in KINDS:
        resent, gave_up = sweep_kind(kind, limit)
        total += resent
        if resent or gave_up:
            log.warning(
                "sweeper recovered work",
                extra={"kind": kind.name, "resent": resent, "gave_up": gave_up},
            )
    return total


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
