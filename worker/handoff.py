"""Handing a conversation to people: the bot's escalation signal becomes a ticket and an event.

The seam for the human-handoff work: the agent console claims and resolves these tickets.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.chat import ChatSession, Ticket
from models.events import append_event
from worker.agent.base import Reply


def escalation_required(reply: Reply) -> bool:
    """A person must join (not merely be offered) when asked for, or when we failed outright."""
    return reply.requires_escalation and reply.escalation_reason in (
        "user_request",
        "processing_failed",
    )


def escalate(db: Session, session_id: str, reply: Reply) -> dict:
    """A customer's request opens a ticket; low confidence only offers one (required=False)."""
    ticket_id = None
    required = escalation_required(reply)
    if required:
        chat = db.get(ChatSession, session_id)
        open_ticket = db.scalar(
            select(Ticket.id).where(
                Ticket.session_id == session_id, Ticket.status.in_(("open", "claimed"))
            )
        )
        ticket_id = open_ticket
        if open_ticket is None:
            ticket = Ticket(session_id=session_id, reasons=[reply.escalation_reason])
            db.add(ticket)
            db.flush()
            ticket_id = ticket.id
        if chat is not None and chat.status == "active":
            chat.status = "escalated"
    return append_event(
        db,
        session_id,
        "escalation",
        required=required,
        reason=reply.escalation_reason,
        ticket_id=ticket_id,
    )
