"""From the escalation policy's decision to the conversation's owner, for one customer message.

The policy (worker/escalation/) says escalate, offer or nothing; this module reads what it needs
(the turns since the bot last took the conversation), and writes the outcome through
models/ownership.py inside the caller's transaction, under the session-row lock, so a decision
and a claim by an agent can never both act on the same conversation state.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from models.chat import LOW_CONFIDENCE_REASONS, Message, Ticket
from models.ownership import Change, active_ticket, request_person, ticket_updated
from models.work import REPLY, finish
from worker.agent.base import Reply
from worker.escalation import Decision, PriorTurn

PRIOR_TURNS = 10
PRIORITY_RANK = {"low": 0, "normal": 1, "high": 2, "urgent": 3}


def is_low_confidence(reply: Reply) -> bool:
    """The engine abstained or was unsure: a soft signal for the policy."""
    return reply.requires_escalation and reply.escalation_reason in LOW_CONFIDENCE_REASONS


_M = Message.__table__


def prior_turns(
    db: Session | Connection, session_id: str, before_seq: int, since_seq: int
) -> list[PriorTurn]:
    """Customer and bot turns after the bot last (re)gained the conversation, oldest first."""
    rows = db.execute(
        select(_M.c.seq, _M.c.role, _M.c.content, _M.c["metadata"])
        .where(
            _M.c.session_id == session_id,
            _M.c.seq > since_seq,
            _M.c.seq < before_seq,
            _M.c.role.in_(("user", "assistant")),
        )
        .order_by(_M.c.seq.desc())
        .limit(PRIOR_TURNS)
    ).all()
    return prior_from_rows(rows)


def prior_from_rows(rows_newest_first: Sequence) -> list[PriorTurn]:
    """PriorTurns (oldest first) from rows of (seq, role, content, metadata), newest first."""
    turns = []
    for row in reversed(rows_newest_first):
        meta = row[3] or {}
        low = row[1] == "assistant" and (
            meta.get("requires_escalation")
            and meta.get("escalation_reason") in LOW_CONFIDENCE_REASONS
        )
        turns.append(PriorTurn(row[1], row[2], low_confidence=bool(low)))
    return turns


def hand_over(db: Session, message_id: str, session_id: str, decision: Decision) -> Change | None:
    """Escalate: open the ticket (bot → waiting) and close the message with the decision."""
    change = request_person(
        db,
        session_id,
        reasons=decision.reasons,
        priority=decision.priority,
        trigger_message_id=message_id,
    )
    outcome = decision.to_dict()
    if change is not None:
        outcome.update(ticket_id=change.ticket.id, notice=change.events[0]["notice"])
    finish(db, REPLY, message_id, escalation=outcome)
    return change


def stay_silent(
    db: Session, message_id: str, session_id: str, owner: str, decision: Decision
) -> Change | None:
    """A person is waited for or answers: store the decision, write no reply. An urgent or
    angry message raises the waiting ticket's priority so the queue shows it."""
    outcome = {**decision.to_dict(), "bot_silent": owner}
    finish(db, REPLY, message_id, escalation=outcome)
    ticket = active_ticket(db, session_id)
    if ticket is None or not _raises(ticket, decision):
        return None
    ticket.priority = decision.priority
    ticket.reasons = list(dict.fromkeys([*ticket.reasons, *decision.reasons]))
    db.flush()
    return ticket_updated(db, ticket)


def _raises(ticket: Ticket, decision: Decision) -> bool:
    if decision.action == "none":
        return False
    return PRIORITY_RANK.get(decision.priority, 1) > PRIORITY_RANK.get(ticket.priority, 1)
