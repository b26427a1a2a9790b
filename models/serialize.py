"""JSON forms of rows outside an HTTP response: socket events, the event log, webhooks.

Views return rows and let `@blp.response(<Schema>)` dump them; code that builds an event (web
and worker alike) dumps the same rows with the same schemas here, so a message, attachment or
ticket looks the same whichever way a client receives it.
"""

from __future__ import annotations

from typing import Any

from models.chat import Attachment, Message, Ticket
from models.schemas import AttachmentOut, MessageOut, SourceOut, TicketOut

_message = MessageOut()
_attachment = AttachmentOut()
_ticket = TicketOut()
_sources = SourceOut(many=True)


def ticket_json(ticket: Ticket) -> dict[str, Any]:
    """A ticket as consoles, webhooks and the API see it."""
    return _ticket.dump(ticket)


def attachment_json(att: Attachment) -> dict[str, Any]:
    """An attachment as clients see it (never the bytes or the full text)."""
    return _attachment.dump(att)


def sources_json(sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sources as every client sees them (a reply's stream, the CLI's search)."""
    return _sources.dump(sources)


def message_json(msg: Message, attachments: list[Attachment] | None = None) -> dict[str, Any]:
    """A message as clients see it, with its attachments' summaries (`attachments` when they
    are not on `msg.attachments` yet)."""
    data = _message.dump(msg)
    if attachments is not None:
        data["attachments"] = [attachment_json(a) for a in attachments]
    return data
