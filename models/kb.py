"""Knowledge-base record: documents, their chunks, and the version every index is built against."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, new_id, utcnow

# Bumped whenever the worker's text extraction or chunking changes what a file becomes (2: list
# markers kept in markdown; 3: chunks keep paragraph breaks). It is part of each document's
# content hash, so the next import of an unchanged file re-indexes it once with the new
# extraction instead of keeping old chunks.
EXTRACTION_VERSION = 3


class KBDocument(Base):
    """A help-centre article or uploaded file; `external_id` lets a re-import replace it."""

    __tablename__ = "kb_documents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    external_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    title: Mapped[str] = mapped_column(String(500), default="")
    source: Mapped[str | None] = mapped_column(String(500))
    content_type: Mapped[str | None] = mapped_column(String(128))
    text: Mapped[str | None] = mapped_column(Text)
    raw: Mapped[bytes | None] = mapped_column(LargeBinary)
    metadata_: Mapped[dict] = mapped_column("metadata", default=dict)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    error: Mapped[str | None] = mapped_column(Text)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    chunks: Mapped[list[KBChunk]] = relationship(
        back_populates="document", cascade="all, delete-orphan", passive_deletes=True
    )


class KBChunk(Base):
    """A retrievable passage; indexes (bm25s, PostgreSQL full text) are built from these rows."""

    __tablename__ = "kb_chunks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    document_id: Mapped[str] = mapped_column(
        ForeignKey("kb_documents.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer, default=0)
    title: Mapped[str] = mapped_column(String(500), default="")
    section: Mapped[str | None] = mapped_column(String(500))
    content: Mapped[str] = mapped_column(Text)
    # The chunk's semantic vector (float32, normalised) and the model that made it: a vector of
    # another model is stale and gets recomputed when an index is built (worker/agent/retrieval).
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    embedding_model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # The article's language (ISO 639-1) as detected at ingestion; None when it was unclear.
    # On PostgreSQL it picks the text-search configuration of the chunk's tsvector.
    language: Mapped[str | None] = mapped_column(String(8), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    document: Mapped[KBDocument] = relationship(back_populates="chunks")


class KBState(Base):
    """One row: the knowledge-base version, bumped on every change so indexes and caches renew."""

    __tablename__ = "kb_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, default=1)
    version: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
