"""Chunks as haystack Documents: the meta every retriever writes and reads, and their Passages.

Both stores (bm25s in memory, PostgreSQL full text) return Documents with this meta, so the
conversion to engine-facing `Passage`s and the one-chunk-per-article rule live here, once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from haystack import Document

from worker.agent.base import Passage


def chunk_document(
    *,
    chunk_id: str,
    document_id: str,
    content: str,
    title: str = "",
    section: str | None = None,
    position: int = 0,
    external_id: str | None = None,
    url: Any = None,
) -> Document:
    """A chunk as a haystack Document with the meta every retriever here expects."""
    meta = {
        "chunk_id": chunk_id,
        "document_id": document_id,
        "external_id": external_id,
        "title": title,
        "section": section,
        "position": position,
        "url": article_url(url),
    }
    return Document(id=chunk_id, content=content, meta=meta)


def article_url(value: Any) -> str | None:
    """The article's address if it is one a page may link to: an absolute http(s) URL. Metadata
    is free-form, so anything else (a `javascript:` link, a relative path, a number) is dropped
    here rather than trusted by every client that renders a citation."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc or len(value) > 2000:
        return None
    if any(ch.isspace() or ord(ch) < 32 for ch in value):
        return None
    return value


def documents_from_rows(rows: Iterable[dict[str, Any]]) -> list[Document]:
    """Documents from plain dict rows with `chunk_document`'s keyword names."""
    return [chunk_document(**row) for row in rows]


def title_text(doc: Document) -> str:
    """The title field: article title plus the chunk's section heading when it adds anything."""
    title = str(doc.meta.get("title") or "")
    section = str(doc.meta.get("section") or "")
    return f"{title} {section}" if section and section != title else title


def best_per_document(
    documents: Iterable[Document], limit: int, per_document: int = 1
) -> list[Passage]:
    """The best chunks of the first `limit` articles, at most `per_document` of each, best first.

    One chunk per article (the default) keeps a long article from crowding out the others; an
    answer composer may ask for a few more so it can quote the section that holds the answer.
    """
    taken: dict[str, int] = {}
    out: list[Passage] = []
    for doc in documents:
        doc_id = str(doc.meta.get("document_id") or doc.id)
        count = taken.get(doc_id, 0)
        if count >= per_document or (not count and len(taken) >= limit):
            continue
        taken[doc_id] = count + 1
        out.append(
            Passage(
                chunk_id=str(doc.meta.get("chunk_id") or doc.id),
                document_id=doc_id,
                external_id=doc.meta.get("external_id"),
                title=str(doc.meta.get("title") or ""),
                content=doc.content or "",
                score=round(min(1.0, max(0.0, float(doc.score or 0.0))), 4),
                section=doc.meta.get("section"),
                position=int(doc.meta.get("position") or 0),
                url=doc.meta.get("url"),
                lexical=round(float(doc.meta.get("lexical", doc.score) or 0.0), 4),
                semantic=(
                    None
                    if doc.meta.get("semantic") is None
                    else round(float(doc.meta["semantic"]), 4)
                ),
            )
        )
    return out
