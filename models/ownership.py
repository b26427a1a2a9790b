"""Who answers a conversation: the one state machine web and worker both go through.

    bot ──request_person──> waiting ──claim──> person ──resolve──> bot   (or ended)
                               ^                  │
                               └─────release──────┘

Each step is a conditional UPDATE on the session row (and the ticket row), so two agents
claiming at once, or a bot reply racing a claim, have exactly one winner: the bot's reply is
written under the same session-row lock (`lock_for_reply`) and is dropped when a person took
over first. Every step appends a persisted event (`escalation`, `agent_joined`, `agent_left`,
`session_status`), queues webhook deliveries in the same transaction, and returns a `Change`
the caller publishes after commit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from models import jobs
from models.base import utcnow
from models.chat import ChatSession, Rating, Ticket
from models.errors import Conflict, NotFound
from models.events import append_event, envelope, next_seq, publish
from models.handoff_text import availability, joined_notice, left_notice, waiting_notice
from models.serialize import ticket_json
from models.summary import categorize, summarize
from models.webhooks import queue_deliveries

STAFF_FEED = "_staff"  # pseudo-session whose channel carries ticket changes to every console


class Owner(StrEnum):
    BOT = "bot"
    WAITING = "waiting"
    PERSON = "person"


class TicketState(StrEnum):
    OPEN = "open"
    CLAIMED = "claimed"
    RESOLVED = "resolved"


ACTIVE_TICKET = (TicketState.OPEN.value, TicketState.CLAIMED.value)


@dataclass
class Change:
    """What a transition did: events to publish after commit and webhook deliveries to send."""

    ticket: Ticket | None = None
    events: list[dict] = field(default_factory=list)
    staff_events: list[dict] = field(default_factory=list)
    deliveries: list[str] = field(default_factory=list)


def announce(change: Change | None) -> None:
    """After commit: ring the bell for every event and send the webhook deliveries."""
    if change is None:
        return
    for event in change.events + change.staff_events:
        publish(event)
    for delivery_id in change.deliveries:
        jobs.send_webhook(delivery_id)


def lock_session(db: Session, session_id: str) -> tuple[str, str]:
    """Take the session row's write lock and read (owner, status) under it.

    A no-op UPDATE, not SELECT … FOR UPDATE: SQLite has no row locks, but an UPDATE takes its
    write lock there too, and PostgreSQL returns the row as it is after any waiting writer.
    Every transition also updates this row, so whoever holds it sees the final owner.
    """
    row = db.execute(
        update(ChatSession)
        .where(ChatSession.id == session_id)
        .values(last_seq=ChatSession.last_seq)
        .returning(ChatSession.owner, ChatSession.status)
    ).one_or_none()
    if row is None:
        raise NotFound("unknown session", "unknown_session")
    return row[0], row[1]


def active_ticket(db: Session, session_id: str) -> Ticket | None:
    """The session's open or claimed ticket, if any."""
    return db.scalar(
        select(Ticket).where(Ticket.session_id == session_id, Ticket.status.in_(ACTIVE_TICKET))
    )


def request_person(
    db: Session,
    session_id: str,
    *,
    reasons: list[str],
    priority: str = "normal",
    trigger_message_id: str | None = None,
) -> Change | None:
    """bot → waiting with a new ticket; None if a person was already asked for (no duplicate)."""
    moved = db.execute(
        update(ChatSession)
        .where(
            ChatSession.id == session_id,
            ChatSession.owner == Owner.BOT,
            ChatSession.status == "active",
        )
        .values(owner=Owner.WAITING.value, agent_name=None)
    ).rowcount
    if not moved:
        return None
    ticket = Ticket(
        session_id=session_id,
        status=TicketState.OPEN.value,
        priority=priority,
        reasons=list(reasons),
        category=categorize(db, session_id),
        summary=summarize(db, session_id),
        trigger_message_id=trigger_message_id,
    )
    db.add(ticket)
    db.flush()
    avail = availability()
    event = _escalation_event(
        db,
        session_id,
        reasons,
        trigger_message_id,
        avail,
        required=True,
        ticket_id=ticket.id,
        priority=priority,
        notice=waiting_notice(avail),
        owner=Owner.WAITING.value,
    )
    return _changed(db, ticket, "opened", [event])


def offer_person(
    db: Session, session_id: str, *, reasons: list[str], trigger_message_id: str | None
) -> dict:
    """Suggest a person without handing over (soft signals); the bot keeps answering."""
    return _escalation_event(
        db,
        session_id,
        reasons,
        trigger_message_id,
        availability(),
        required=False,
        ticket_id=None,
        notice="Would you like to talk to a member of our team?",
        owner=Owner.BOT.value,
    )


def _escalation_event(
    db: Session,
    session_id: str,
    reasons: list[str],
    trigger_message_id: str | None,
    avail: dict,
    **fields: object,
) -> dict:
    """The `escalation` event of a handover (required) or an offer, in one shape."""
    return append_event(
        db,
        session_id,
        "escalation",
        reason=reasons[0] if reasons else None,
        reasons=list(reasons),
        message_id=trigger_message_id,
        availability=avail,
        **fields,
    )


def claim(db: Session, ticket_id: str, agent: str) -> Change:
    """open → claimed by `agent`, session waiting → person; a second claim gets Conflict."""
    now = utcnow()
    ticket = _move_ticket(
        db,
        ticket_id,
        [Ticket.status == TicketState.OPEN],
        {"status": TicketState.CLAIMED.value, "assignee": agent, "claimed_at": now},
        "ticket_taken",
        lambda t: (
            f"{t.assignee} already took this ticket" if t.assignee else f"the ticket is {t.status}"
        ),
    )
    seq = _set_owner(db, ticket.session_id, Owner.PERSON, agent)
    event = _person_event(
        db,
        ticket,
        seq,
        "agent_joined",
        agent,
        owner=Owner.PERSON.value,
        notice=joined_notice(agent),
    )
    return _changed(db, ticket, "claimed", [event])


def release(db: Session, ticket_id: str, agent: str, why: str = "released") -> Change:
    """claimed → open (back in the queue), session person → waiting; only by its holder (or
    by the sweeper for a holder who went away: `why="agent_away"`)."""
    ticket = _move_ticket(
        db,
        ticket_id,
        [Ticket.status == TicketState.CLAIMED, Ticket.assignee == agent],
        {"status": TicketState.OPEN.value, "assignee": None},
        "not_claimed",
        lambda t: _not_yours(t, agent),
    )
    seq = _set_owner(db, ticket.session_id, Owner.WAITING, None)
    event = _person_event(
        db,
        ticket,
        seq,
        "agent_left",
        agent,
        reason=why,
        owner=Owner.WAITING.value,
        notice=left_notice(agent, why),
        rating_offer=False,
    )
    return _changed(db, ticket, "released", [event])


def resolve(db: Session, ticket_id: str, agent: str, *, end_session: bool = False) -> Change:
    """open|claimed → resolved; the bot answers again, or the session ends."""
    ticket = _move_ticket(
        db,
        ticket_id,
        [
            (Ticket.status == TicketState.OPEN)
            | ((Ticket.status == TicketState.CLAIMED) & (Ticket.assignee == agent))
        ],
        {
            "status": TicketState.RESOLVED.value,
            "resolved_at": utcnow(),
            "resolution": "ended" if end_session else "resolved",
            "assignee": func.coalesce(Ticket.assignee, agent),
        },
        "not_claimed",
        lambda t: _not_yours(t, agent),
    )
    seq = _set_owner(db, ticket.session_id, Owner.BOT, None)
    offer = not _rated(db, ticket.session_id)
    why = "ended" if end_session else "resolved"
    events = [
        _person_event(
            db,
            ticket,
            seq,
            "agent_left",
            agent,
            reason="resolved",
            owner="ended" if end_session else Owner.BOT.value,
            notice=left_notice(agent, why),
            rating_offer=offer and not end_session,
        )
    ]
    if end_session and _mark_ended(db, ticket.session_id):
        events += _end(db, ticket.session_id, offer)
    return _changed(db, ticket, "resolved", events)


def _move_ticket(
    db: Session,
    ticket_id: str,
    conditions: list,
    values: dict,
    code: str,
    refusal: Callable[[Ticket], str],
) -> Ticket:
    """One conditional UPDATE of the ticket row: the winner gets the fresh row, anyone else a
    Conflict saying why (taken by whom, resolved already)."""
    ticket = _ticket(db, ticket_id)
    won = db.execute(
        update(Ticket)
        .where(Ticket.id == ticket_id, *conditions)
        .values(updated_at=utcnow(), **values)
    ).rowcount
    db.refresh(ticket)
    if not won:
        raise Conflict(refusal(ticket), code, _state(ticket))
    return ticket


def _person_event(
    db: Session, ticket: Ticket, seq: int, kind: str, agent: str, **fields: object
) -> dict:
    return append_event(
        db, ticket.session_id, kind, seq=seq, ticket_id=ticket.id, agent={"name": agent}, **fields
    )


def takeover(db: Session, session_id: str, agent: str) -> Change:
    """A staff member takes a conversation directly: a ticket is opened (or found) and claimed."""
    change = request_person(db, session_id, reasons=["agent_takeover"])
    ticket = change.ticket if change else active_ticket(db, session_id)
    if ticket is None:
        raise Conflict("this conversation has ended", "session_not_active")
    claimed = claim(db, ticket.id, agent)
    if change is not None:
        claimed.events[:0] = change.events
        claimed.staff_events[:0] = change.staff_events
        claimed.deliveries[:0] = change.deliveries
    return claimed


def end_session(db: Session, session_id: str) -> Change | None:
    """active → ended; an open ticket is resolved with it. None if it had ended already."""
    ticket = active_ticket(db, session_id)
    if not _mark_ended(db, session_id):
        return None
    change = Change()
    if ticket is not None:
        now = utcnow()
        db.execute(
            update(Ticket)
            .where(Ticket.id == ticket.id)
            .values(
                status=TicketState.RESOLVED.value,
                resolution="session_ended",
                resolved_at=now,
                updated_at=now,
            )
        )
        db.refresh(ticket)
        change = _changed(db, ticket, "resolved", [])
    change.events += _end(db, session_id, not _rated(db, session_id))
    return change


def save_contact(db: Session, session_id: str, email: str) -> Ticket:
    """Keep the address a customer left for a reply on the waiting (or claimed) ticket."""
    ticket = active_ticket(db, session_id)
    if ticket is None:
        raise Conflict("no person has been asked for in this conversation", "no_ticket")
    ticket.contact_email = email
    ticket.updated_at = utcnow()
    db.flush()
    return ticket


def ticket_updated(db: Session, ticket: Ticket) -> Change:
    """A ticket's details changed (priority, contact): consoles refresh it."""
    return _changed(db, ticket, "updated", [], notify=False)


def _mark_ended(db: Session, session_id: str) -> bool:
    """active → ended, once (the socket then closes with 4009 and messages get 409)."""
    return bool(
        db.execute(
            update(ChatSession)
            .where(ChatSession.id == session_id, ChatSession.status == "active")
            .values(status="ended")
        ).rowcount
    )


def _end(db: Session, session_id: str, offer: bool) -> list[dict]:
    return [append_event(db, session_id, "session_status", status="ended", rating_offer=offer)]


def _set_owner(db: Session, session_id: str, owner: Owner, agent: str | None) -> int:
    """Move ownership and remember the seq it changed at (the policy forgets older signals)."""
    seq = next_seq(db, session_id)
    db.execute(
        update(ChatSession)
        .where(ChatSession.id == session_id)
        .values(owner=owner.value, agent_name=agent, owner_since_seq=seq)
    )
    return seq


def _changed(
    db: Session, ticket: Ticket, change: str, events: list[dict], notify: bool = True
) -> Change:
    data = ticket_json(ticket)
    staff = envelope("ticket", STAFF_FEED, change=change, ticket=data)
    deliveries = queue_deliveries(db, f"ticket.{change}", data) if notify else []
    return Change(ticket, events, [staff], deliveries)


def _ticket(db: Session, ticket_id: str) -> Ticket:
    ticket = db.get(Ticket, ticket_id)
    if ticket is None:
        raise NotFound("unknown ticket", "unknown_ticket")
    return ticket


def _rated(db: Session, session_id: str) -> bool:
    return db.scalar(select(Rating.id).where(Rating.session_id == session_id)) is not None


def _state(ticket: Ticket) -> dict:
    return {"status": ticket.status, "agent": ticket.assignee}


def _not_yours(ticket: Ticket, agent: str) -> str:
    if ticket.status == TicketState.RESOLVED:
        return "the ticket is already resolved"
    if ticket.status == TicketState.OPEN:
        return "nobody has claimed this ticket"
    return f"{ticket.assignee} holds this ticket, not {agent}"
