"""Knowledge-base records on the web side: store documents and ask the worker to index them.

Refusals are domain errors (models/errors.py): the API maps them to 413/415/422, the CLI's
`kb import` to a "skipped" line.

The web never converts or indexes (that is haystack's job in the worker); it validates, stores
the text or file bytes, and sends `ingest_document`. Re-adding an `external_id` replaces that
document; re-adding identical content is a no-op, so importing a folder twice is cheap.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from models.errors import Invalid, TooLarge, Unsupported
from models.filetypes import UnsupportedFileType, is_parseable, safe_filename, sniff_content_type
from models.kb import EXTRACTION_VERSION, KBChunk, KBDocument
from models.kbstate import bump_version
from models.work import DOCUMENT, queue


def _digest(title: str, body: bytes) -> str:
    """What decides "unchanged, not re-indexed": the title, the bytes and how they are read."""
    salt = f"extraction-{EXTRACTION_VERSION}\0".encode()
    return hashlib.sha256(salt + title.encode() + b"\0" + body).hexdigest()


def upsert_document(
    db: Session,
    *,
    title: str = "",
    text: str | None = None,
    raw: bytes | None = None,
    filename: str | None = None,
    metadata: dict[str, Any] | None = None,
    external_id: str | None = None,
    max_bytes: int | None = None,
    content_type: str | None = None,
) -> tuple[KBDocument, bool]:
    """Add or replace a document (not committed); returns (document, needs indexing).
    `content_type` is the file's sniffed type when the caller sniffed it already (a streamed
    upload); otherwise `raw` is sniffed here."""
    if raw is not None:
        if max_bytes is not None and len(raw) > max_bytes:
            raise TooLarge(f"file is larger than {max_bytes // (1024 * 1024)} MB", "file_too_large")
        if content_type is None:
            try:
                content_type = sniff_content_type(raw, filename or "")
            except UnsupportedFileType as exc:
                raise Unsupported(str(exc), "file_type_not_allowed") from None
        if not is_parseable(content_type):
            raise Unsupported(f"{content_type} has no text to index", "file_type_not_allowed")
        body = raw
    elif text is not None and text.strip():
        body, content_type = text.encode(), "text/plain"
    else:
        raise Invalid("a document needs text or a file", details={"text": ["Missing data."]})
    digest = _digest(title, body)
    doc = None
    if external_id:
        doc = db.scalar(select(KBDocument).where(KBDocument.external_id == external_id))
    if doc is not None and doc.content_hash == digest and doc.status != "failed":
        return doc, False
    if doc is None:
        doc = KBDocument(external_id=external_id)
        db.add(doc)
    doc.title = title
    doc.source = safe_filename(filename) if filename else None
    doc.content_type = content_type
    doc.text = text if raw is None else None
    doc.raw = raw
    doc.metadata_ = metadata or {}
    doc.content_hash = digest
    queue(doc, DOCUMENT)
    return doc, True


def delete_document(db: Session, doc: KBDocument) -> None:
    """Remove a document and its chunks; the version bump makes every index drop them."""
    db.execute(delete(KBChunk).where(KBChunk.document_id == doc.id))
    db.delete(doc)
    bump_version(db)
