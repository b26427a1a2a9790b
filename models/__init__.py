"""Shared by web and worker: SQLAlchemy models, marshmallow schemas, event envelopes, settings."""

from models.base import Base, new_id, utcnow
from models.chat import (
    Attachment,
    AttachmentBlob,
    ChatSession,
    Message,
    Rating,
    SessionEvent,
    Ticket,
)
from models.kb import KBChunk, KBDocument, KBState

__all__ = [
    "Attachment",
    "AttachmentBlob",
    "Base",
    "ChatSession",
    "KBChunk",
    "KBDocument",
    "KBState",
    "Message",
    "Rating",
    "SessionEvent",
    "Ticket",
    "new_id",
    "utcnow",
]
