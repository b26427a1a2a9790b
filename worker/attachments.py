"""Attachment parsing in the worker: stored bytes in (models/storage.py), text and event out."""

from __future__ import annotations

import logging

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import select

from models import storage
from models.base import utcnow
from models.chat import Attachment
from models.db import session_scope
from models.events import append_event, next_seq, publish
from models.filetypes import is_parseable
from models.logs import session_id_var
from models.serialize import attachment_json
from models.work import ATTACHMENT, claim, fail, finish, handing_back, task_lease
from worker.ingest.convert import ConversionError, make_preview
from worker.ingest.sandbox import sandboxed_extract

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 200_000


def _extract(att: Attachment, data: bytes) -> tuple[str | None, str | None, str | None]:
    """(text, preview, error) for one file, parsed in a sandboxed child (memory and time
    bounded, see worker/ingest/sandbox.py): a hostile file fails with a reason, never takes
    the worker down, so the task is not redelivered and the attachment never stays open."""
    if not is_parseable(att.content_type):
        return None, f"{att.content_type} file, {att.size} bytes (no text extracted)", None
    try:
        text = sandboxed_extract(data, att.content_type, att.filename, max_chars=MAX_TEXT_CHARS)
    except ConversionError as exc:
        return None, None, str(exc)
    except SoftTimeLimitExceeded:  # the task's own limit (the child is already killed)
        return None, None, f"{att.filename}: the file took too long to read"
    return text, make_preview(text), None


def parse(attachment_id: str) -> str:
    """Idempotent: only a claim wins the work; a done or failed attachment is left as it is."""
    with session_scope() as db:
        if not claim(db, ATTACHMENT, attachment_id, task_lease()):
            return "not-claimable"
        att = db.get(Attachment, attachment_id)
        session_id_var.set(att.session_id)
        try:
            data = storage.load(db, att)
        except storage.StoredFileMissing as exc:
            data, missing = b"", str(exc)
        else:
            missing = None
        db.expunge(att)
    with handing_back(ATTACHMENT, attachment_id):
        if missing is not None:  # nothing to retry: the bytes are gone (see models/storage.py)
            return settle(attachment_id, missing)
        text, preview, error = _extract(att, data)
        return settle(attachment_id, error, text=text, preview=preview)


def settle(attachment_id: str, error: str | None, **values: object) -> str:
    """Close the work (done, or failed with a readable reason) and tell the session.

    Locks in the order every writer of a session takes them: the session's counter first (the
    event's seq), then the session's own rows. The web stores a message and then links its
    files to it; closing the file first and then taking a seq deadlocked with that on
    PostgreSQL (one of the two aborted), which left the file waiting on its retry.
    """
    with session_scope() as db:
        session_id = db.scalar(select(Attachment.session_id).where(Attachment.id == attachment_id))
        if session_id is None:
            return "gone"
        try:
            seq = next_seq(db, session_id)
        except LookupError:
            return "gone"  # the session was deleted meanwhile
        now = utcnow()
        if error:
            moved = fail(db, ATTACHMENT, attachment_id, error, processed_at=now, **values)
        else:
            moved = finish(db, ATTACHMENT, attachment_id, processed_at=now, **values)
        att = db.get(Attachment, attachment_id)
        if not moved or att is None:
            db.rollback()  # gives the seq back: no gap in the session's log
            return "gone"
        db.refresh(att)
        event = append_event(
            db,
            session_id,
            "attachment",
            seq=seq,
            attachment_id=att.id,
            status=att.status,
            preview=att.preview,
            error=att.error,
            attachment=attachment_json(att),
        )
    publish(event)
    log.info("attachment parsed", extra={"attachment_id": attachment_id, "status": att.status})
    return att.status
