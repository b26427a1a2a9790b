"""JSON forms of rows, shared by HTTP responses, socket events and the event log."""

from __future__ import annotations

from typing import Any

from models.chat import Attachment, Message, Ticket
from models.events import iso
from models.schemas import AttachmentOut, MessageOut, TicketOut

_message = MessageOut()
_attachment = AttachmentOut()
_ticket = TicketOut()


def ticket_json(ticket: Ticket) -> dict[str, Any]:
    """A ticket as consoles, webhooks and the API see it, timestamps with their offset."""
    return _ticket.dump(ticket)


def attachment_json(att: Attachment) -> dict[str, Any]:
    """An attachment as clients see it (never the bytes or the full text)."""
    return _attachment.dump(att)


def message_json(msg: Message, attachments: list[Attachment] | None = None) -> dict[str, Any]:
    """A message as clients see it, with its attachments' summaries."""
    data = _message.dump(msg)
    data["timestamp"] = iso(msg.created_at)
    if attachments is not None:
        data["attachments"] = [attachment_json(a) for a in attachments]
    return data


def chat_response(reply: Message, session_id: str) -> dict[str, Any]:
    """The original system's REST reply shape (ChatResponse); for a customer message closed
    without a bot reply (handed to a person) it carries the notice the customer was shown."""
    if reply.role == "user":
        outcome = dict(reply.escalation or {})
        return {
            "message": outcome.get("notice", ""),
            "sources": [],
            "requires_escalation": outcome.get("action") == "escalate" or "bot_silent" in outcome,
            "confidence": None,
            "session_id": session_id,
            "timestamp": iso(reply.created_at),
            "processing_time": None,
            "metadata": {"escalation": outcome, "ticket_id": outcome.get("ticket_id")},
        }
    meta = dict(reply.metadata_ or {})
    return {
        "message": reply.content,
        "sources": reply.sources or [],
        "requires_escalation": bool(meta.get("requires_escalation", False)),
        "confidence": reply.confidence,
        "session_id": session_id,
        "timestamp": iso(reply.created_at),
        "processing_time": reply.processing_time,
        "metadata": meta,
    }
