"""Answering user messages: claim, generate (streaming), store exactly once, publish.

Exactly one answer per message, whatever crashes or redeliveries happen, rests on three things:
a claim (conditional UPDATE) with a renewed lease, a unique index on `reply_to_id`, and the
sweeper re-sending work whose lease ran out. Replies within a session leave in seq order because
a task first answers any earlier unanswered message of its session.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from models.base import new_id, utcnow
from models.chat import Attachment, Message
from models.db import new_session, session_scope
from models.events import append_event, envelope, next_seq, publish
from models.logs import session_id_var
from models.serialize import message_json
from models.settings import get_settings
from worker.agent.base import Reply, Turn
from worker.engines import answer_engine
from worker.handoff import escalate, escalation_required

log = logging.getLogger(__name__)

HISTORY_TURNS = 6
MAX_ATTEMPTS = 3
ATTACHMENT_WAIT = timedelta(seconds=30)


class Busy(Exception):
    """An earlier message or an attachment is not ready yet; retry this task shortly."""

    def __init__(self, countdown: float) -> None:
        super().__init__(f"retry in {countdown}s")
        self.countdown = countdown


@dataclass
class Context:
    """What the engine needs, read in one short transaction."""

    message_id: str
    session_id: str
    question: str
    history: list[Turn]
    attachments: list[str]
    attempts: int
    created_at: object = None
    notes: dict = field(default_factory=dict)


def answer_pending(message_id: str) -> str:
    """Answer every unanswered message of this session up to and including `message_id`."""
    with session_scope() as db:
        target = db.get(Message, message_id)
        if target is None or target.role != "user":
            return "gone"
        session_id, target_seq = target.session_id, target.seq
    session_id_var.set(session_id)
    while True:
        with session_scope() as db:
            nxt = db.scalar(
                select(Message)
                .where(
                    Message.session_id == session_id,
                    Message.role == "user",
                    Message.status.in_(("queued", "processing")),
                    Message.seq <= target_seq,
                )
                .order_by(Message.seq)
                .limit(1)
            )
            if nxt is None:
                return "done"
            nxt_id = nxt.id
            _check_attachments_ready(db, nxt)
        if not claim(nxt_id):
            if nxt_id == message_id:
                return "in-progress-elsewhere"
            raise Busy(0.5)  # an earlier message is being answered by someone else
        answer_one(nxt_id)


def _check_attachments_ready(db, msg: Message) -> None:  # type: ignore[no-untyped-def]
    pending = db.scalar(
        select(Attachment.id).where(
            Attachment.message_id == msg.id, Attachment.status.in_(("queued", "processing"))
        )
    )
    if pending is not None and utcnow() - _aware(msg.created_at) < ATTACHMENT_WAIT:
        raise Busy(0.5)


def _aware(ts):  # type: ignore[no-untyped-def]
    """SQLite returns naive datetimes; treat them as the UTC they were written as."""
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def claim(message_id: str) -> bool:
    """Take the message if it is queued or its previous holder's lease has run out."""
    now = utcnow()
    lease = timedelta(seconds=get_settings().agent_lease_seconds)
    with session_scope() as db:
        won = db.execute(
            update(Message)
            .where(
                Message.id == message_id,
                (Message.status == "queued")
                | ((Message.status == "processing") & (Message.lease_until < now)),
            )
            .values(status="processing", lease_until=now + lease, attempts=Message.attempts + 1)
        ).rowcount
    return bool(won)


def renew_lease(message_id: str) -> None:
    """Tell the sweeper we are alive."""
    lease = timedelta(seconds=get_settings().agent_lease_seconds)
    with session_scope() as db:
        db.execute(
            update(Message)
            .where(Message.id == message_id, Message.status == "processing")
            .values(lease_until=utcnow() + lease)
        )


def load_context(message_id: str) -> Context | None:
    """The question, recent turns and attachment text, read once (None if deleted meanwhile)."""
    with session_scope() as db:
        msg = db.get(Message, message_id)
        if msg is None:
            return None
        turns = db.scalars(
            select(Message)
            .where(
                Message.session_id == msg.session_id,
                Message.seq < msg.seq,
                Message.role.in_(("user", "assistant", "agent")),
            )
            .order_by(Message.seq.desc())
            .limit(HISTORY_TURNS)
        ).all()
        texts = db.scalars(
            select(Attachment.text).where(
                Attachment.message_id == msg.id, Attachment.text.is_not(None)
            )
        ).all()
        return Context(
            message_id=msg.id,
            session_id=msg.session_id,
            question=msg.content,
            history=[Turn(t.role, t.content) for t in reversed(turns)],
            attachments=[t for t in texts if t],
            attempts=msg.attempts,
        )


class Heartbeat:
    """Renews the lease every third of its length while the engine works, even when it is
    silent (a model thinking before its first token), so the lease can stay short and a dead
    worker's message is taken over quickly."""

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        self.every = max(get_settings().agent_lease_seconds / 3, 0.5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                renew_lease(self.message_id)
            except Exception:  # a missed beat only risks a harmless duplicate attempt
                log.warning("lease renewal failed", exc_info=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class Streamer:
    """The engine's `emit`: publishes each event of the reply's stream."""

    def __init__(self, ctx: Context, reply_id: str) -> None:
        self.ctx = ctx
        self.reply_id = reply_id

    def __call__(self, kind: str, fields: dict) -> None:
        publish(
            envelope(
                kind,
                self.ctx.session_id,
                message_id=self.reply_id,
                reply_to=self.ctx.message_id,
                **fields,
            )
        )


def answer_one(message_id: str) -> None:
    """Generate and store the reply to one claimed message."""
    ctx = load_context(message_id)
    if ctx is None:
        return  # the session was deleted while the message waited
    reply_id = new_id()
    started = time.perf_counter()
    publish(envelope("start", ctx.session_id, message_id=reply_id, reply_to=message_id))
    if ctx.attempts > MAX_ATTEMPTS:
        reply = Reply(
            text="Sorry, I could not work out an answer to this. A member of our team can "
            "help: ask for a person and I will connect you.",
            requires_escalation=True,
            escalation_reason="processing_failed",
            engine="none",
        )
    else:
        with Heartbeat(message_id):
            reply = answer_engine().answer(
                ctx.question,
                history=ctx.history,
                attachments=ctx.attachments,
                emit=Streamer(ctx, reply_id),
            )
    store_reply(ctx, reply_id, reply, time.perf_counter() - started)


def store_reply(ctx: Context, reply_id: str, reply: Reply, seconds: float) -> None:
    """Commit the reply and its events once; a second writer hits the unique index and stops."""
    db = new_session()
    try:
        events = _write_reply(db, ctx, reply_id, reply, seconds)
        db.commit()
    except IntegrityError:
        db.rollback()
        log.info("reply already stored by another worker", extra={"message_id": ctx.message_id})
        return
    finally:
        db.close()
    for event in events:
        publish(event)


def _write_reply(db, ctx: Context, reply_id: str, reply: Reply, seconds: float) -> list[dict]:  # type: ignore[no-untyped-def]
    meta = {
        "engine": reply.engine,
        "requires_escalation": reply.requires_escalation,
        "escalation_reason": reply.escalation_reason,
        "escalation_required": escalation_required(reply),
        **reply.metadata,
    }
    msg = Message(
        id=reply_id,
        session_id=ctx.session_id,
        role="assistant",
        content=reply.text,
        status="done",
        reply_to_id=ctx.message_id,
        sources=[s.to_dict() for s in reply.sources],
        tools_used=["knowledge_base"] if reply.sources else [],
        confidence=round(reply.confidence, 4),
        processing_time=round(seconds, 4),
        metadata_=meta,
        created_at=utcnow(),
        attachments=[],
    )
    msg.seq = next_seq(db, ctx.session_id)
    db.add(msg)
    db.flush()  # the unique reply_to index speaks here, before any event is logged
    db.execute(
        update(Message)
        .where(Message.id == ctx.message_id)
        .values(status="answered", lease_until=None)
    )
    events = [append_event(db, ctx.session_id, "complete", seq=msg.seq, message=message_json(msg))]
    if reply.requires_escalation:
        events.append(escalate(db, ctx.session_id, reply))
    return events
