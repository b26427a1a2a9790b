"""Lost work of every kind is recovered by the worker's sweeper, within a bound the settings give.

A message whose task never reached the broker (the web died right after the commit) is still
answered: the sweeper finds it past its deadline and sends the task itself. The same rule holds
for a knowledge-base document and an attachment whose task was lost, and a file whose worker
kept dying mid-parse ends `failed` with a reason instead of being retried for ever.

Each lost item is planted in the suite's database from this process exactly as the web would
store it (`upsert_document`, `queue()`), but no task is sent. The module plants all of them at
once, so their claim deadlines run out together and the module costs one deadline, not the sum.
The suite shortens those deadlines (DOCUMENT_CLAIM_SECONDS, ATTACHMENT_CLAIM_SECONDS in
tests/conftest.py; 60 s and 30 s in production): the rule checked is the same, recovery no
earlier than the deadline and within deadline + one sweep + slack.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from models.base import new_id, utcnow
from models.chat import Attachment, AttachmentBlob, ChatSession, Message
from models.db import session_scope
from models.events import append_event, next_seq
from models.kb import KBDocument
from models.serialize import message_json
from models.settings import get_settings
from models.work import ATTACHMENT, DOCUMENT, WorkState, queue
from tests.client import STAFF, Socket

# Time the sweep itself, the task's trip through the broker and the work may take on a busy
# 2-core machine (other test runs share it), on top of what the settings promise.
SLACK = 15.0
# Recovery must not happen before the deadline (that would mean something else sent the task);
# the test's clock reads and the row's timestamps may differ by this much.
EARLY = 1.0


def bound(deadline: timedelta) -> float:
    """Longest a lost item of a kind may wait: its claim deadline, one sweep, and slack."""
    return deadline.total_seconds() + get_settings().sweep_interval + SLACK


def test_committed_but_never_enqueued_message_is_answered(api, chat):
    with session_scope() as db:
        seq = next_seq(db, chat["session_id"])
        msg = Message(
            id=new_id(),
            session_id=chat["session_id"],
            seq=seq,
            role="user",
            content="How do I reset my password?",
            status="queued",
            created_at=utcnow(),
            lease_until=utcnow() - timedelta(seconds=1),  # its claim deadline has passed
            attachments=[],
        )
        db.add(msg)
        append_event(db, chat["session_id"], "user_message", seq=seq, message=message_json(msg))
        assert db.get(ChatSession, chat["session_id"]) is not None
    data = api.wait_for(chat, lambda ms: any(m["role"] == "assistant" for m in ms), timeout=20)
    user, reply = data["messages"]
    assert user["status"] == "done" and reply["reply_to_id"] == user["id"]
    assert any(s["external_id"] == "accounts/reset-password" for s in reply["sources"])


# -- documents and attachments whose task was lost -----------------------------------------
@dataclass
class Planted:
    """The lost items: a document, an attachment, and an attachment whose worker kept dying."""

    chat: dict
    document_id: str
    attachment_id: str
    dying_id: str


LOST_DOC_TEXT = (
    "# Quartz sprocket calibration\n\n"
    "A quartz sprocket drifts after a firmware update. Hold the calibration key for eight "
    "seconds until the ring blinks amber, then place the sprocket on a level surface.\n\n"
    "## When calibration fails\n\n"
    "If the ring blinks red three times, the sprocket needs a factory reset before it can be "
    "calibrated again."
)
LOST_FILE_TEXT = b"Order 88412: the lost parcel note. The courier left it at door number 7."


def _attachment(session_id: str, name: str, data: bytes) -> tuple[Attachment, AttachmentBlob]:
    att = Attachment(
        id=new_id(),
        session_id=session_id,
        filename=name,
        content_type="text/plain",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        created_at=utcnow(),
    )
    att.storage_key = f"db:{att.id}"
    return att, AttachmentBlob(attachment_id=att.id, data=data)


@pytest.fixture(scope="module")
def planted(api):  # type: ignore[no-untyped-def]
    """Plant all three at once (their deadlines then run out together), no task sent."""
    from webapp.kb import upsert_document

    chat = api.create_session()
    with session_scope() as db:
        doc, changed = upsert_document(
            db,
            title="",
            text=LOST_DOC_TEXT,
            external_id=f"recovery/lost-{uuid.uuid4().hex[:8]}",
            metadata={"test": "recovery"},
        )
        assert changed and doc.status == WorkState.QUEUED
        doc.created_at = utcnow()  # committed now; ingest_document is never sent

    with session_scope() as db:
        att, blob = _attachment(chat["session_id"], "parcel-note.txt", LOST_FILE_TEXT)
        queue(att, ATTACHMENT, att.created_at)  # as the upload path stores it; never sent
        db.add_all([att, blob])

    with session_scope() as db:
        dying, blob = _attachment(chat["session_id"], "cursed.txt", b"a file nobody can read")
        # Claimed max_attempts times, by workers that all died mid-parse: the last claim's
        # lease ran out a moment ago.
        dying.status = WorkState.PROCESSING.value
        dying.attempts = ATTACHMENT.max_attempts
        dying.lease_until = dying.created_at - timedelta(seconds=1)
        db.add_all([dying, blob])

    yield Planted(chat, doc.id, att.id, dying.id)
    api.http.delete(f"/api/kb/documents/{doc.id}", headers=STAFF)  # the suite's KB as it was


def poll(read, done, timeout: float, every: float = 0.2) -> dict:  # type: ignore[no-untyped-def]
    """Call `read()` until `done(value)`; the last value (AssertionError after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not recovered within {timeout:.0f}s: {value}")
        time.sleep(every)


def closed(row: dict) -> bool:
    return row["status"] not in (WorkState.QUEUED, WorkState.PROCESSING)


def _naive(ts: datetime) -> datetime:
    """SQLite gives naive UTC, PostgreSQL aware: compare them as naive UTC."""
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo else ts


def recovery_seconds(model, row_id: str, closed_column: str) -> float:  # type: ignore[no-untyped-def]
    """From the row's commit to its closing, by the database's own timestamps (so the figure
    does not depend on which test of the module ran first)."""
    with session_scope() as db:
        row = db.get(model, row_id)
        return (_naive(getattr(row, closed_column)) - _naive(row.created_at)).total_seconds()


def attachment_events(api, chat: dict, attachment_id: str, timeout: float) -> list[dict]:  # type: ignore[no-untyped-def]
    """The session's `attachment` events for one file, replayed from the start (after=0)."""
    sock = Socket(api.base_url, session_id=chat["session_id"], token=chat["token"], after=0)
    try:
        sock.until("attachment", timeout=timeout, attachment_id=attachment_id)
        sock.quiet(0.5)  # a second event for the same file would arrive now
        return [
            e
            for e in sock.seen
            if e["type"] == "attachment" and e.get("attachment_id") == attachment_id
        ]
    finally:
        sock.close()


@pytest.mark.timeout(150)
def test_attachment_whose_worker_kept_dying_fails_with_a_reason(api, planted):
    # Overdue from the start: the next sweep gives up on it (no claim deadline to wait for).
    limit = bound(timedelta(0))
    chat = planted.chat
    att = poll(
        lambda: api.http.get(f"/api/attachments/{planted.dying_id}", headers=api.auth(chat)).json(),
        closed,
        timeout=limit + 5,
    )
    took = recovery_seconds(Attachment, planted.dying_id, "processed_at")
    print(f"\nexhausted attachment: {att['status']} after {took:.1f} s (bound {limit:.0f} s)")
    assert att["status"] == "failed" and att["processed"] is False, att
    reason = f"gave up after {ATTACHMENT.max_attempts} attempts (the worker kept dying)"
    assert att["error"] == reason
    assert 0 <= took <= limit
    with session_scope() as db:
        row = db.get(Attachment, planted.dying_id)
        assert row.attempts == ATTACHMENT.max_attempts  # given up: never claimed a 4th time
        assert row.lease_until is None and row.text is None
    events = attachment_events(api, chat, planted.dying_id, timeout=10)
    assert len(events) == 1, events  # the customer is told once, with the reason
    assert events[0]["status"] == "failed" and events[0]["error"] == reason


@pytest.mark.timeout(150)
def test_lost_parse_attachment_is_parsed_and_announced(api, planted):
    limit = bound(ATTACHMENT.claim_deadline)
    chat = planted.chat
    att = poll(
        lambda: api.http.get(
            f"/api/attachments/{planted.attachment_id}", headers=api.auth(chat)
        ).json(),
        closed,
        timeout=limit + 5,
    )
    took = recovery_seconds(Attachment, planted.attachment_id, "processed_at")
    print(f"\nlost parse_attachment: {att['status']} after {took:.1f} s (bound {limit:.0f} s)")
    assert att["status"] == "done" and att["error"] is None, att
    assert att["processed"] is True and "courier left it" in att["preview"]
    # Not before its deadline (nothing but the sweeper sent it), and within the bound.
    assert ATTACHMENT.claim_deadline.total_seconds() - EARLY <= took <= limit
    with session_scope() as db:
        assert db.get(Attachment, planted.attachment_id).attempts == 1  # one claim, one parse
    events = attachment_events(api, chat, planted.attachment_id, timeout=10)
    assert len(events) == 1, events  # announced once
    assert events[0]["status"] == "done" and "courier left it" in events[0]["preview"]
    assert events[0]["seq"] >= 1


@pytest.mark.timeout(150)
def test_lost_ingest_document_is_indexed(api, planted):
    limit = bound(DOCUMENT.claim_deadline)
    doc = poll(
        lambda: api.http.get(f"/api/kb/documents/{planted.document_id}", headers=STAFF).json(),
        closed,
        timeout=limit + 5,
    )
    took = recovery_seconds(KBDocument, planted.document_id, "updated_at")
    print(f"\nlost ingest_document: {doc['status']} after {took:.1f} s (bound {limit:.0f} s)")
    assert doc["status"] == "done", doc
    assert doc["chunk_count"] >= 2 and doc["error"] is None
    assert doc["title"] == "Quartz sprocket calibration"
    assert DOCUMENT.claim_deadline.total_seconds() - EARLY <= took <= limit
    with session_scope() as db:
        assert db.get(KBDocument, planted.document_id).attempts == 1
    # Indexed for real: a search finds the new passage (indexes follow within a second or two).
    poll(
        lambda: api.http.post(
            "/api/chat/search",
            json={"query": "quartz sprocket calibration blinks amber", "limit": 3},
            headers=api.auth(planted.chat),
        ).json(),
        lambda hits: any("amber" in h["content"] for h in hits),
        timeout=15,
        every=0.5,
    )
