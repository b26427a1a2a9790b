"""Attachment parsing in the worker: bytes from the database in, text + preview + event out."""

from __future__ import annotations

import logging

from celery.exceptions import SoftTimeLimitExceeded

from models.base import utcnow
from models.chat import Attachment, AttachmentBlob
from models.db import session_scope
from models.events import append_event, publish
from models.filetypes import is_parseable
from models.logs import session_id_var
from models.serialize import attachment_json
from models.work import ATTACHMENT, claim, fail, finish, task_lease
from worker.ingest.convert import ConversionError, extract_text, make_preview

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 200_000


def _extract(att: Attachment, data: bytes) -> tuple[str | None, str | None, str | None]:
    """(text, preview, error) for one file."""
    if not is_parseable(att.content_type):
        return None, f"{att.content_type} file, {att.size} bytes (no text extracted)", None
    try:
        text = extract_text(data, att.content_type, att.filename)[:MAX_TEXT_CHARS]
    except ConversionError as exc:
        return None, None, str(exc)
    except SoftTimeLimitExceeded:
        return None, None, "the file took too long to read"
    return text, make_preview(text), None


def parse(attachment_id: str) -> str:
    """Idempotent: only a claim wins the work; a done or failed attachment is left as it is."""
    with session_scope() as db:
        if not claim(db, ATTACHMENT, attachment_id, task_lease()):
            return "not-claimable"
        att = db.get(Attachment, attachment_id)
        session_id_var.set(att.session_id)
        blob = db.get(AttachmentBlob, attachment_id)
        data = blob.data if blob is not None else b""
        db.expunge(att)
    text, preview, error = _extract(att, data)
    return settle(attachment_id, error, text=text, preview=preview)


def settle(attachment_id: str, error: str | None, **values: object) -> str:
    """Close the work (done, or failed with a readable reason) and tell the session."""
    with session_scope() as db:
        now = utcnow()
        if error:
            moved = fail(db, ATTACHMENT, attachment_id, error, processed_at=now, **values)
        else:
            moved = finish(db, ATTACHMENT, attachment_id, processed_at=now, **values)
        att = db.get(Attachment, attachment_id)
        if not moved or att is None:
            return "gone"
        db.refresh(att)
        event = append_event(
            db,
            att.session_id,
            "attachment",
            attachment_id=att.id,
            status=att.status,
            preview=att.preview,
            error=att.error,
            attachment=attachment_json(att),
        )
    publish(event)
    log.info("attachment parsed", extra={"attachment_id": attachment_id, "status": att.status})
    return att.status
