"""Answering customer messages: claim, decide (escalation policy), generate, store once, publish.

Exactly one outcome per message, whatever crashes or redeliveries happen, rests on a claim with
a renewed lease (models/work.py), a unique index on `reply_to_id`, and the sweeper re-sending
work whose lease ran out. Replies within a session leave in seq order because a task first
answers any earlier unanswered message of its session. Who may answer is the conversation's
owner (models/ownership.py): the reply is written under the session-row lock and dropped if a
person took the conversation meanwhile, so the bot never talks over a human.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from models import metrics
from models.base import new_id, utcnow
from models.chat import Attachment, ChatSession, Message
from models.db import new_session, session_scope
from models.errors import NotFound
from models.events import append_event, envelope, next_seq, publish
from models.logs import session_id_var
from models.ownership import Change, Owner, announce, lock_session, offer_person, request_person
from models.serialize import message_json
from models.settings import get_settings
from models.work import OPEN, REPLY, claim, fail, finish, renew
from worker.agent.base import Reply, Turn
from worker.engines import answer_engine
from worker.escalation import Decision, PriorTurn, after_answer, before_answer
from worker.handoff import hand_over, is_low_confidence, prior_turns, stay_silent

log = logging.getLogger(__name__)

HISTORY_TURNS = 6
ATTACHMENT_WAIT = timedelta(seconds=30)
FAILED_TEXT = (
    "Sorry, I could not work out an answer to this. I've asked a member of our team to help."
)


class Busy(Exception):
    """An earlier message or an attachment is not ready yet; retry this task shortly."""

    def __init__(self, countdown: float) -> None:
        super().__init__(f"retry in {countdown}s")
        self.countdown = countdown


@dataclass
class Context:
    """What the policy and the engine need, read in one short transaction."""

    message_id: str
    session_id: str
    question: str
    history: list[Turn]
    attachments: list[str]
    attempts: int
    owner: str = Owner.BOT.value
    requested: bool = False
    prior: list[PriorTurn] = field(default_factory=list)
    asked_at: datetime | None = None  # when the customer's message was stored (for latency)


def _lease() -> timedelta:
    return timedelta(seconds=get_settings().agent_lease_seconds)


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
                    Message.status.in_([s.value for s in OPEN]),
                    Message.seq <= target_seq,
                )
                .order_by(Message.seq)
                .limit(1)
            )
            if nxt is None:
                return "done"
            nxt_id = nxt.id
            _check_attachments_ready(db, nxt)
        with session_scope() as db:
            won = claim(db, REPLY, nxt_id, _lease())
        if not won:
            if nxt_id == message_id:
                return "in-progress-elsewhere"
            raise Busy(0.5)  # an earlier message is being answered by someone else
        answer_one(nxt_id)


def _check_attachments_ready(db, msg: Message) -> None:  # type: ignore[no-untyped-def]
    pending = db.scalar(
        select(Attachment.id).where(
            Attachment.message_id == msg.id, Attachment.status.in_([s.value for s in OPEN])
        )
    )
    if pending is not None and utcnow() - _aware(msg.created_at) < ATTACHMENT_WAIT:
        raise Busy(0.5)


def _aware(ts):  # type: ignore[no-untyped-def]
    """SQLite returns naive datetimes; treat them as the UTC they were written as."""
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def renew_lease(message_id: str) -> None:
    """Tell the sweeper we are alive."""
    with session_scope() as db:
        renew(db, REPLY, message_id, _lease())


def load_context(message_id: str) -> Context | None:
    """The question, recent turns, attachment text and owner, read once (None if deleted)."""
    with session_scope() as db:
        msg = db.get(Message, message_id)
        chat = db.get(ChatSession, msg.session_id) if msg is not None else None
        if msg is None or chat is None:
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
            owner=chat.owner,
            requested=(msg.metadata_ or {}).get("request") == "person",
            prior=prior_turns(db, msg, chat.owner_since_seq),
            asked_at=msg.created_at,
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
    """Decide, then hand over, stay silent, or generate and store the reply to one message."""
    ctx = load_context(message_id)
    if ctx is None:
        return  # the session was deleted while the message waited
    decision = before_answer(ctx.question, requested=ctx.requested, prior=ctx.prior)
    if ctx.owner != Owner.BOT or decision.action == "escalate":
        _commit_outcome(ctx, decision, None)  # no engine call: nothing for the bot to say
        return
    reply_id = new_id()
    started = time.perf_counter()
    publish(envelope("start", ctx.session_id, message_id=reply_id, reply_to=message_id))
    if ctx.attempts > REPLY.max_attempts:
        reply = Reply(
            text=FAILED_TEXT,
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
    decision = after_answer(
        decision, reply_low_confidence=is_low_confidence(reply), prior=ctx.prior
    )
    _commit_outcome(ctx, decision, (reply_id, reply, time.perf_counter() - started))


def _commit_outcome(
    ctx: Context, decision: Decision, answer: tuple[str, Reply, float] | None
) -> None:
    """One transaction under the session-row lock; the owner read there is the truth."""
    db = new_session()
    try:
        owner, _status = lock_session(db, ctx.session_id)
        events: list[dict] = []
        if owner != Owner.BOT:
            change = stay_silent(db, ctx.message_id, ctx.session_id, owner, decision)
        elif answer is None:
            change = hand_over(db, ctx.message_id, ctx.session_id, decision)
        else:
            events, change = _write_reply(db, ctx, decision, *answer)
        db.commit()
    except IntegrityError:
        db.rollback()
        log.info("reply already stored by another worker", extra={"message_id": ctx.message_id})
        return
    except NotFound:
        db.rollback()
        return  # the session was deleted while we worked
    finally:
        db.close()
    if answer is not None and owner != Owner.BOT:
        # The stream already started: tell clients to drop it (a person took over meanwhile).
        publish(
            envelope(
                "status",
                ctx.session_id,
                message_id=answer[0],
                reply_to=ctx.message_id,
                state="withdrawn",
            )
        )
    for event in events:
        publish(event)
    announce(change)


def _measure(ctx: Context, msg: Message, seconds: float, failed: bool) -> None:
    """Answer count and latencies for /metrics (the customer's wait: stored to stored)."""
    metrics.count("messages", "assistant")
    metrics.observe("answer_engine", seconds)
    if ctx.asked_at is not None:
        asked = ctx.asked_at if ctx.asked_at.tzinfo else ctx.asked_at.replace(tzinfo=UTC)
        metrics.observe("answer_latency", (msg.created_at - asked).total_seconds())
    if failed:
        metrics.count("errors", "answer_failed")


def _write_reply(
    db, ctx: Context, decision: Decision, reply_id: str, reply: Reply, seconds: float
) -> tuple[list[dict], Change | None]:  # type: ignore[no-untyped-def]
    meta = {
        "engine": reply.engine,
        "requires_escalation": reply.requires_escalation,
        "escalation_reason": reply.escalation_reason,
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
    failed = reply.escalation_reason == "processing_failed"
    _measure(ctx, msg, seconds, failed)
    if failed:
        fail(
            db,
            REPLY,
            ctx.message_id,
            "gave up after repeated failures",
            escalation=decision.to_dict(),
        )
    else:
        finish(db, REPLY, ctx.message_id, escalation=decision.to_dict())
    events = [append_event(db, ctx.session_id, "complete", seq=msg.seq, message=message_json(msg))]
    change = None
    if failed:
        change = request_person(
            db, ctx.session_id, reasons=["processing_failed"], trigger_message_id=ctx.message_id
        )
    elif decision.action != "none" or is_low_confidence(reply):
        reasons = decision.reasons or [reply.escalation_reason or "low_confidence"]
        events.append(
            offer_person(db, ctx.session_id, reasons=reasons, trigger_message_id=ctx.message_id)
        )
    return events, change
