"""Knowledge-base indexing in the worker: convert, split, store chunks, bump the KB version.

The database is the record; every process's index (bm25s in memory, or PostgreSQL full text)
is rebuilt from the chunk rows when it sees the version move. Each chunk's semantic vector is
computed here, once, and stored with it (`kb_chunks.embedding`, with the model's id).
"""

from __future__ import annotations

import logging
import re

from sqlalchemy import delete

from models.base import utcnow
from models.db import session_scope
from models.kb import KBChunk, KBDocument
from models.kbstate import bump_version
from models.work import DOCUMENT, claim, fail, finish, handing_back, task_lease
from worker.agent.embeddings import (
    EmbeddingError,
    chunk_text_for_embedding,
    get_embedder,
    to_blob,
)
from worker.agent.language import article_language
from worker.ingest.chunking import chunk_text
from worker.ingest.convert import ConversionError
from worker.ingest.sandbox import sandboxed_extract

log = logging.getLogger(__name__)

CHUNK_WORDS = 120
CHUNK_OVERLAP_SENTENCES = 1
_HEADING = re.compile(r"^\s*#\s+(.+?)\s*#*\s*$", re.MULTILINE)


def derive_title(text: str, fallback: str) -> str:
    """A markdown document's first `# ` heading, else the given fallback."""
    match = _HEADING.search(text[:2000])
    return match.group(1).strip() if match else fallback


def ingest(document_id: str) -> str:
    """Index one document; idempotent (only a claim wins it; done documents are left alone)."""
    with session_scope() as db:
        if not claim(db, DOCUMENT, document_id, task_lease()):
            return "not-claimable"
        doc = db.get(KBDocument, document_id)
        text, raw, ctype, name = doc.text, doc.raw, doc.content_type, doc.source or "document"
        title = doc.title
    with handing_back(DOCUMENT, document_id):
        return _index(document_id, text, raw, ctype, name, title)


def _index(
    document_id: str,
    text: str | None,
    raw: bytes | None,
    ctype: str | None,
    name: str,
    title: str | None,
) -> str:
    """Convert, split, embed and store one claimed document's chunks."""
    try:
        if text is None:
            text = sandboxed_extract(raw or b"", ctype or "text/plain", name)  # bounded child
    except ConversionError as exc:
        return fail_document(document_id, str(exc))
    title = title or derive_title(text, name)
    pieces = chunk_text(
        text, title=title, max_words=CHUNK_WORDS, overlap_sentences=CHUNK_OVERLAP_SENTENCES
    )
    if not pieces:
        return fail_document(document_id, "the document has no text to index")
    vectors, model = embed_chunks(title, pieces)
    # stored with every chunk: PostgreSQL stems the chunk with this language's configuration,
    # and index builds need not detect it again
    language = article_language([content for _, content in pieces])
    with session_scope() as db:
        doc = db.get(KBDocument, document_id)
        if doc is None:
            return "gone"
        db.execute(delete(KBChunk).where(KBChunk.document_id == document_id))
        for position, (section, content) in enumerate(pieces):
            db.add(
                KBChunk(
                    document_id=document_id,
                    position=position,
                    title=title,
                    section=section,
                    content=content,
                    embedding=None if vectors is None else to_blob(vectors[position]),
                    embedding_model=model,
                    language=language,
                )
            )
        doc.title, doc.text, doc.raw = title, text, None
        finish(db, DOCUMENT, document_id, chunk_count=len(pieces), error=None, updated_at=utcnow())
        bump_version(db)
    log.info(
        "document indexed",
        extra={"document_id": document_id, "chunks": len(pieces), "language": language},
    )
    return "done"


def embed_chunks(
    title: str, pieces: list[tuple[str | None, str]]
) -> tuple[list | None, str | None]:
    """Vectors of the chunks and the model id, or (None, None) when the semantic side is off
    or the embeddings endpoint fails: the document is still indexed lexically, and the next
    index build embeds what is missing."""
    embedder = get_embedder()
    if embedder is None:
        return None, None
    texts = [chunk_text_for_embedding(title, section, content) for section, content in pieces]
    try:
        return list(embedder.embed(texts)), embedder.model_id
    except EmbeddingError as exc:
        log.warning("chunks not embedded", extra={"error": str(exc)})
        return None, None


def fail_document(document_id: str, error: str) -> str:
    """Terminal failure with a reason staff can read in the document list."""
    with session_scope() as db:
        fail(db, DOCUMENT, document_id, error)
    log.warning("document not indexed", extra={"document_id": document_id, "error": error})
    return "failed"
