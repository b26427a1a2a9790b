"""Chat records: sessions, messages, the per-session event log, attachments, tickets, ratings."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, new_id, utcnow

SESSION_STATUSES = ("active", "ended")
ROLES = ("user", "assistant", "agent", "system")
# A bot answer with `requires_escalation` and one of these reasons is an abstention: the bot
# said it could not answer from the knowledge base (the policy and the reports both read it).
LOW_CONFIDENCE_REASONS = ("low_confidence", "not_in_knowledge_base")


class ChatSession(Base):
    """A customer's conversation; `last_seq` is the counter behind every persisted event."""

    __tablename__ = "chat_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str | None] = mapped_column(String(255), index=True)
    status: Mapped[str] = mapped_column(String(16), default="active", index=True)
    # Who answers: "bot", "waiting" (a person was asked for) or "person" (an agent claimed it).
    # Only models/ownership.py changes these three columns.
    owner: Mapped[str] = mapped_column(String(16), default="bot", server_default="bot")
    agent_name: Mapped[str | None] = mapped_column(String(255))
    owner_since_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    metadata_: Mapped[dict] = mapped_column("metadata", default=dict)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    messages: Mapped[list[Message]] = relationship(
        back_populates="session", cascade="all, delete-orphan", passive_deletes=True
    )


class Message(Base):
    """One turn. A user message's `status` is its reply's work state (models/work.py)."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("session_id", "seq", name="uq_messages_session_seq"),
        UniqueConstraint("session_id", "client_msg_id", name="uq_messages_session_client_msg"),
        # At most one reply per user message: the database, not luck, makes redelivery harmless.
        UniqueConstraint("reply_to_id", name="uq_messages_reply_to"),
        Index("ix_messages_session_status", "session_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("chat_sessions.id", ondelete="CASCADE"), index=True
    )
    seq: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="done")
    client_msg_id: Mapped[str | None] = mapped_column(String(128))
    reply_to_id: Mapped[str | None] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    sources: Mapped[list] = mapped_column(default=list)
    tools_used: Mapped[list] = mapped_column(default=list)
    confidence: Mapped[float | None] = mapped_column(Float)
    processing_time: Mapped[float | None] = mapped_column(Float)
    metadata_: Mapped[dict] = mapped_column("metadata", default=dict)
    # The escalation policy's decision for a customer message: action, reasons, signals.
    escalation: Mapped[dict | None] = mapped_column()
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The customer's thumbs up/down on a bot answer (the latest replaces an earlier one); kept
    # on the message so history shows it and reports join nothing.
    feedback_rating: Mapped[str | None] = mapped_column(String(8))
    feedback_reason: Mapped[str | None] = mapped_column(Text)
    feedback_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    session: Mapped[ChatSession] = relationship(back_populates="messages")
    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="message", order_by="Attachment.created_at"
    )

    @property
    def feedback(self) -> dict | None:
        """`{rating, reason, at}` as clients see it, or None while the answer is unrated."""
        if self.feedback_rating is None:
            return None
        return {
            "rating": self.feedback_rating,
            "reason": self.feedback_reason,
            "at": self.feedback_at,
        }


class SessionEvent(Base):
    """The durable event log: what a reconnecting client replays with `after=<seq>`."""

    __tablename__ = "session_events"
    __table_args__ = (UniqueConstraint("session_id", "seq", name="uq_session_events_seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("chat_sessions.id", ondelete="CASCADE"), index=True
    )
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Attachment(Base):
    """An uploaded file; bytes live in AttachmentBlob so every process on any host can read them."""

    __tablename__ = "attachments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("chat_sessions.id", ondelete="CASCADE"), index=True
    )
    message_id: Mapped[str | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL"), index=True
    )
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(128))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    text: Mapped[str | None] = mapped_column(Text)
    preview: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    message: Mapped[Message | None] = relationship(back_populates="attachments")


class AttachmentBlob(Base):
    """File bytes, kept in the database: web and worker dynos share no disk."""

    __tablename__ = "attachment_blobs"

    attachment_id: Mapped[str] = mapped_column(
        ForeignKey("attachments.id", ondelete="CASCADE"), primary_key=True
    )
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Ticket(Base):
    """One escalation: open → claimed (a named agent) → resolved; release puts it back to open."""

    __tablename__ = "tickets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("chat_sessions.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    priority: Mapped[str] = mapped_column(String(16), default="normal")
    category: Mapped[str | None] = mapped_column(String(64))
    reasons: Mapped[list] = mapped_column(default=list)
    summary: Mapped[str] = mapped_column(Text, default="", server_default="")
    assignee: Mapped[str | None] = mapped_column(String(255))
    trigger_message_id: Mapped[str | None] = mapped_column(String(36))
    contact_email: Mapped[str | None] = mapped_column(String(320))
    resolution: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebhookDelivery(Base):
    """One notification to one URL: work with a lease and attempts, like any other job."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    ticket_id: Mapped[str | None] = mapped_column(String(36), index=True)
    event: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(String(2000))
    payload: Mapped[dict] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    response_status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Rating(Base):
    """A customer's 1–5 score for a session, once, with who handled the conversation."""

    __tablename__ = "ratings"
    __table_args__ = (UniqueConstraint("session_id", name="uq_ratings_session_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("chat_sessions.id", ondelete="CASCADE"), index=True
    )
    score: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    handled_by: Mapped[str] = mapped_column(String(16), default="bot", server_default="bot")
    agent_name: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


_MESSAGE_COLUMNS: list[tuple[str, str]] | None = None


def message_row(msg: Message) -> dict:
    """The column values set on a new, unsaved Message, keyed by column name, for a Core
    INSERT (`insert(Message.__table__)`); columns left unset get their defaults there.

    The hot paths (every customer message, every answer) insert their message this way: the
    ORM's unit of work costs more CPU than the INSERT itself, and nothing loads the row back.
    """
    global _MESSAGE_COLUMNS
    if _MESSAGE_COLUMNS is None:
        from sqlalchemy import inspect

        _MESSAGE_COLUMNS = [
            (prop.key, prop.columns[0].name) for prop in inspect(Message).column_attrs
        ]
    given = msg.__dict__
    return {column: given[key] for key, column in _MESSAGE_COLUMNS if key in given}
