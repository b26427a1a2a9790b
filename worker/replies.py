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

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from models import metrics
from models.base import new_id, utcnow
from models.chat import Attachment, ChatSession, Message
from models.db import new_session, session_scope
from models.errors import NotFound
from models.events import append_event, envelope, next_seq, publish_all
from models.logs import session_id_var
from models.ownership import Change, Owner, announce, lock_session, offer_person, request_person
from models.serialize import message_json, sources_json
from models.settings import get_settings
from models.work import OPEN, REPLY, fail, finish, renew, take
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
    """Answer every unanswered message of this session up to and including `message_id`.

    Per message: one read (which message is next, are its files ready), one claim, one read of
    what the engine needs, the engine, one write for the reply. The claim comes before the
    context read on purpose: a task that loses it (a redelivery, a sweeper re-send, a message
    waiting behind an earlier one) stops after two cheap transactions. The claim stays its own
    short write: on SQLite a write lock held across reads would stall the web's accepts.
    """
    while True:
        nxt_id = _next_open(message_id)
        if nxt_id in ("gone", "done"):
            return nxt_id
        attempt = _claim(nxt_id)
        if attempt is None:
            if nxt_id == message_id:
                return "in-progress-elsewhere"
            raise Busy(0.5)  # an earlier message is being answered by someone else
        ctx = load_context(nxt_id)
        if ctx is not None:  # None: the session was deleted while the message waited
            ctx.attempts = attempt
            answer_one(ctx)
        if nxt_id == message_id:
            # Earlier open messages come first (lowest seq), so none is left behind this one.
            return "done"


def _next_open(message_id: str) -> str:
    """Id of the session's lowest open message up to `message_id` ("gone", "done" if none).

    Raises Busy while that message's attachments are still being read (for ATTACHMENT_WAIT).
    """
    with session_scope() as db:
        target = db.get(Message, message_id)
        if target is None or target.role != "user":
            return "gone"
        session_id_var.set(target.session_id)
        nxt = db.scalar(
            select(Message)
            .where(
                Message.session_id == target.session_id,
                Message.role == "user",
                Message.status.in_([s.value for s in OPEN]),
                Message.seq <= target.seq,
            )
            .order_by(Message.seq)
            .limit(1)
        )
        if nxt is None:
            return "done"
        pending = db.scalar(
            select(Attachment.id).where(
                Attachment.message_id == nxt.id, Attachment.status.in_([s.value for s in OPEN])
            )
        )
        if pending is not None and utcnow() - _aware(nxt.created_at) < ATTACHMENT_WAIT:
            raise Busy(0.5)
        return nxt.id


def _claim(message_id: str) -> int | None:
    """Claim the message for this worker; its attempt number, or None if someone holds it.

    On PostgreSQL the claim's commit does not wait for its WAL flush (`synchronous_commit`
    off for this one transaction; the reply's commit still waits, and flushes this one with
    it). A claim lost to a database crash only makes the message claimable again: the sweeper
    re-sends it and the unique reply index still allows one reply.
    """
    with session_scope() as db:
        if db.get_bind().dialect.name == "postgresql":
            db.execute(text("SET LOCAL synchronous_commit TO OFF"))
        return take(db, REPLY, message_id, _lease())


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
    """The engine's `emit`: the reply's stream events, from `start` on.

    Live (an engine that streams as it generates, e.g. a model), every event is published as it
    comes, with anything held before it in the same round trip. Held (an engine that has the
    whole text within milliseconds, like the offline one), the stream waits and leaves with the
    stored reply's `complete` in one pipeline: a dozen PUBLISH round trips become one, and a
    reply dropped because a person took over was never shown at all.
    """

    def __init__(self, ctx: Context, reply_id: str, live: bool = True) -> None:
        self.ctx = ctx
        self.reply_id = reply_id
        self.live = live
        self.shown = False  # some of the stream reached clients (a withdrawal must follow)
        self.held: list[dict] = [
            envelope("start", ctx.session_id, message_id=reply_id, reply_to=ctx.message_id)
        ]

    def __call__(self, kind: str, fields: dict) -> None:
        if kind == "sources":  # the one source schema, as in `complete` and history
            fields = {**fields, "sources": sources_json(fields["sources"])}
        self.held.append(
            envelope(
                kind,
                self.ctx.session_id,
                message_id=self.reply_id,
                reply_to=self.ctx.message_id,
                **fields,
            )
        )
        if self.live:
            self.flush()

    def flush(self) -> None:
        """Publish what is held (live mode, or a live engine's first event)."""
        if self.held:
            publish_all(self.held)
            self.held, self.shown = [], True

    def take(self) -> list[dict]:
        """The events still held, for the caller's own pipeline (they leave with `complete`)."""
        held, self.held = self.held, []
        return held


def answer_one(ctx: Context) -> None:
    """Decide, then hand over, stay silent, or generate and store the reply to one message."""
    decision = before_answer(ctx.question, requested=ctx.requested, prior=ctx.prior)
    if ctx.owner != Owner.BOT or decision.action == "escalate":
        _commit_outcome(ctx, decision, None)  # no engine call: nothing for the bot to say
        return
    reply_id = new_id()
    started = time.perf_counter()
    engine = answer_engine()
    streamer = Streamer(ctx, reply_id, live=getattr(engine, "streams_live", True))
    if ctx.attempts > REPLY.max_attempts:
        reply = Reply(
            text=FAILED_TEXT,
            requires_escalation=True,
            escalation_reason="processing_failed",
            engine="none",
        )
    else:
        if streamer.live:
            streamer.flush()  # `start` at once: a model may think for seconds before its text
        with Heartbeat(ctx.message_id):
            reply = engine.answer(
                ctx.question,
                history=ctx.history,
                attachments=ctx.attachments,
                emit=streamer,
            )
    decision = after_answer(
        decision, reply_low_confidence=is_low_confidence(reply), prior=ctx.prior
    )
    _commit_outcome(ctx, decision, (reply_id, reply, time.perf_counter() - started), streamer)


def _commit_outcome(
    ctx: Context,
    decision: Decision,
    answer: tuple[str, Reply, float] | None,
    streamer: Streamer | None = None,
) -> None:
    """One transaction under the session-row lock; the owner read there is the truth.

    Redis is only spoken to after the commit (never while SQLite's write lock is held): the
    held stream, the persisted events and the metrics leave in one pipeline.
    """
    db = new_session()
    stored: Message | None = None
    try:
        owner, _status = lock_session(db, ctx.session_id)
        events: list[dict] = []
        if owner != Owner.BOT:
            change = stay_silent(db, ctx.message_id, ctx.session_id, owner, decision)
        elif answer is None:
            change = hand_over(db, ctx.message_id, ctx.session_id, decision)
        else:
            events, change, stored = _write_reply(db, ctx, decision, *answer)
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
    stream = streamer.take() if streamer is not None else []
    if answer is not None and owner != Owner.BOT:
        stream = []  # a person took over meanwhile: a held stream is simply never shown
        if streamer is not None and streamer.shown:
            # The stream already started: tell clients to drop it.
            stream = [
                envelope(
                    "status",
                    ctx.session_id,
                    message_id=answer[0],
                    reply_to=ctx.message_id,
                    state="withdrawn",
                )
            ]
    measure = None
    if stored is not None and answer is not None:
        measure = _measure(ctx, stored, answer[2], answer[1].escalation_reason)
    publish_all(stream + events, measure)
    announce(change)


def _measure(ctx: Context, msg: Message, seconds: float, reason: str | None):  # type: ignore[no-untyped-def]
    """Answer count and latencies for /metrics (the customer's wait: stored to stored), queued
    on the pipeline that publishes the reply."""
    asked = ctx.asked_at
    latency = None
    if asked is not None:
        asked = asked if asked.tzinfo else asked.replace(tzinfo=UTC)
        created = msg.created_at if msg.created_at.tzinfo else msg.created_at.replace(tzinfo=UTC)
        latency = (created - asked).total_seconds()

    def queue_on(pipe) -> None:  # type: ignore[no-untyped-def]
        metrics.count_into(pipe, "messages", "assistant")
        metrics.observe_into(pipe, "answer_engine", seconds)
        if latency is not None:
            metrics.observe_into(pipe, "answer_latency", latency)
        if reason == "processing_failed":
            metrics.count_into(pipe, "errors", "answer_failed")

    return queue_on


def _write_reply(
    db, ctx: Context, decision: Decision, reply_id: str, reply: Reply, seconds: float
) -> tuple[list[dict], Change | None, Message]:  # type: ignore[no-untyped-def]
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
    return events, change, msg
