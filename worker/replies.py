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
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from sqlalchemy import Insert, and_, bindparam, exists, insert, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from models import metrics
from models.base import new_id, utcnow
from models.chat import Attachment, ChatSession, Message, message_row
from models.db import get_engine, new_session, session_scope
from models.errors import NotFound
from models.events import append_event, envelope, event_row, next_seq, publish_all
from models.logs import session_id_var
from models.ownership import Change, Owner, announce, lock_session, offer_person, request_person
from models.seqwrite import (
    SEQ_PLACEHOLDER,
    message_and_event,
    row_params,
    seq_pieces,
    with_defaults,
)
from models.serialize import message_json, sources_json
from models.settings import get_settings
from models.work import OPEN, REPLY, fail, finish, one_of, renew, take
from worker.agent.base import Reply, Turn
from worker.engines import answer_engine
from worker.escalation import Decision, PriorTurn, after_answer, before_answer
from worker.handoff import (
    PRIOR_TURNS,
    hand_over,
    is_low_confidence,
    prior_from_rows,
    prior_turns,
    stay_silent,
)

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

    Per message three transactions: find the next open message (and whether its files are
    ready) and claim it; read what the engine needs; after the engine, write the reply. The
    claim comes before the context read on purpose: a task that loses it (a redelivery, a
    sweeper re-send, a message waiting behind an earlier one) stops after one cheap
    transaction. The claim is the transaction's only write, after its read: on SQLite the
    write lock is never held across reads (that would stall the web's accepts). On PostgreSQL
    the same three steps are two autocommitted statements: the claim with the context read
    (`_claim_with_context`), and a plain answer's reply (`_store_reply_at_once`).
    """
    postgres = get_engine().dialect.name == "postgresql"
    while True:
        nxt = _claim_with_context(message_id) if postgres else _next_open_and_claim(message_id)
        if isinstance(nxt, str):
            return nxt
        if nxt.attempt is None:
            if nxt.id == message_id:
                return "in-progress-elsewhere"
            raise Busy(0.5)  # an earlier message is being answered by someone else
        ctx = nxt.context if postgres else load_context(nxt.id, has_files=nxt.has_files)
        if ctx is not None:  # None: the session was deleted while the message waited
            ctx.attempts = nxt.attempt
            answer_one(ctx)
        if nxt.id == message_id:
            # Earlier open messages come first (lowest seq), so none is left behind this one.
            return "done"


# The reply path's reads, built once and executed with bound parameters (Core statements on
# the tables, selecting only the columns used): each answer runs them, and building an ORM
# query, its cache key and its loaded objects cost more CPU than the database's work.
_M = Message.__table__
_S = ChatSession.__table__
_A = Attachment.__table__
_OPEN_STATES = [s.value for s in OPEN]
_target = _M.alias("target")
_NEXT_OPEN = (
    select(
        _M.c.id,
        _M.c.session_id,
        _M.c.created_at,
        exists()
        .where(_A.c.message_id == _M.c.id, one_of(_A.c.status, _OPEN_STATES))
        .label("files_pending"),
        exists().where(_A.c.message_id == _M.c.id).label("has_files"),
    )
    .select_from(
        _M.join(
            _target,
            and_(
                _target.c.id == bindparam("mid"),
                _target.c.role == "user",
                _M.c.session_id == _target.c.session_id,
                _M.c.seq <= _target.c.seq,
            ),
        )
    )
    .where(_M.c.role == "user", one_of(_M.c.status, _OPEN_STATES))
    .order_by(_M.c.seq)
    .limit(1)
)
_USER_MESSAGE = select(_M.c.session_id).where(_M.c.id == bindparam("mid"), _M.c.role == "user")
_CONTEXT = (
    select(
        _M.c.session_id,
        _M.c.seq,
        _M.c.content,
        _M.c["metadata"],
        _M.c.attempts,
        _M.c.created_at,
        _S.c.owner,
        _S.c.owner_since_seq,
    )
    .select_from(_M.join(_S, _S.c.id == _M.c.session_id))
    .where(_M.c.id == bindparam("mid"))
)
# Recent turns for the engine and the escalation policy's prior turns, in one read: enough
# rows that both can usually be cut from it (see load_context).
_TURN_ROWS = HISTORY_TURNS + PRIOR_TURNS
_TURNS = (
    select(_M.c.seq, _M.c.role, _M.c.content, _M.c["metadata"])
    .where(
        _M.c.session_id == bindparam("sid"),
        _M.c.seq < bindparam("before"),
        one_of(_M.c.role, ["user", "assistant", "agent"]),
    )
    .order_by(_M.c.seq.desc())
    .limit(_TURN_ROWS)
)
_FILE_TEXTS = select(_A.c.text).where(_A.c.message_id == bindparam("mid"), _A.c.text.is_not(None))


@dataclass
class Next:
    """The session's lowest open message and the outcome of claiming it."""

    id: str
    attempt: int | None  # None: someone else holds it
    has_files: bool
    context: Context | None = None  # PostgreSQL: read by the claim's own statement


def _next_open_and_claim(message_id: str) -> Next | str:
    """Find the session's lowest open message up to `message_id` and claim it ("gone", "done"
    if there is none).

    Raises Busy while that message's attachments are still being read (for ATTACHMENT_WAIT).
    On PostgreSQL the claim's commit does not wait for its WAL flush (`synchronous_commit`
    off for this one transaction; the reply's commit still waits, and flushes this one with
    it). A claim lost to a database crash only makes the message claimable again: the sweeper
    re-sends it and the unique reply index still allows one reply.
    """
    with get_engine().begin() as conn:
        row = conn.execute(_NEXT_OPEN, {"mid": message_id}).one_or_none()
        if row is None:
            return _gone_or_done(conn, message_id)
        session_id_var.set(row.session_id)
        if row.files_pending and utcnow() - _aware(row.created_at) < ATTACHMENT_WAIT:
            raise Busy(0.5)
        if conn.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL synchronous_commit TO OFF"))
        attempt = take(conn, REPLY, row.id, _lease())
        return Next(row.id, attempt, bool(row.has_files))


# PostgreSQL: find, claim and read in ONE autocommitted statement (`_claim_with_context`).
# `nxt` is `_NEXT_OPEN`; `claimed` is `take`'s conditional UPDATE (the same conditions, so the
# same single winner), skipped while the message's files are still being read; the SELECT adds
# what `load_context` reads (the message with its session, the last turns, the files' text),
# only for a message this statement claimed. All of it sees one snapshot, in which every
# earlier turn is already committed (a turn's seq is taken under the session-row lock, held to
# its commit). `set_config(..., true)` is the claim's `SET LOCAL synchronous_commit TO OFF`:
# local to the statement's own transaction, whose commit reads it (see _next_open_and_claim).
_CLAIM_WITH_CONTEXT = text(
    """
WITH nxt AS (
    SELECT m.id, m.session_id, m.seq, m.created_at,
           EXISTS (SELECT 1 FROM attachments a WHERE a.message_id = m.id
                   AND (a.status = 'queued' OR a.status = 'processing')) AS files_pending,
           EXISTS (SELECT 1 FROM attachments a WHERE a.message_id = m.id) AS has_files
    FROM messages m
    JOIN messages target ON target.id = :mid AND target.role = 'user'
         AND m.session_id = target.session_id AND m.seq <= target.seq
    WHERE m.role = 'user' AND (m.status = 'queued' OR m.status = 'processing')
    ORDER BY m.seq
    LIMIT 1
), claimed AS (
    UPDATE messages
    SET status = 'processing', lease_until = :until, attempts = messages.attempts + 1
    FROM nxt
    WHERE messages.id = nxt.id AND messages.role = 'user'
      AND (messages.status = 'queued'
           OR (messages.status = 'processing' AND messages.lease_until < :now))
      AND NOT (nxt.files_pending AND nxt.created_at > :files_since)
      AND set_config('synchronous_commit', 'off', true) = 'off'
    RETURNING messages.id, messages.attempts, messages.content, messages.metadata
)
SELECT nxt.id, nxt.session_id, nxt.seq, nxt.created_at, nxt.files_pending, nxt.has_files,
       c.attempts, c.content, c.metadata, s.owner, s.owner_since_seq,
       CASE WHEN c.id IS NOT NULL THEN (
           SELECT json_agg(json_build_array(t.seq, t.role, t.content, t.metadata)
                           ORDER BY t.seq DESC)
           FROM (SELECT seq, role, content, metadata FROM messages
                 WHERE session_id = nxt.session_id AND seq < nxt.seq
                   AND (role = 'user' OR role = 'assistant' OR role = 'agent')
                 ORDER BY seq DESC
                 LIMIT :turn_rows) t
       ) END AS turns,
       CASE WHEN c.id IS NOT NULL AND nxt.has_files THEN (
           SELECT json_agg(a.text ORDER BY a.created_at, a.id) FROM attachments a
           WHERE a.message_id = nxt.id AND a.text IS NOT NULL
       ) END AS file_texts
FROM nxt
LEFT JOIN claimed c ON c.id = nxt.id
LEFT JOIN chat_sessions s ON s.id = nxt.session_id
"""
)


class _TurnRow(NamedTuple):
    """A turn as `_TURNS` returns it (seq, role, content, metadata), rebuilt from JSON."""

    seq: int
    role: str
    content: str
    metadata: dict | None


def _claim_with_context(message_id: str) -> Next | str:
    """PostgreSQL's `_next_open_and_claim` + `load_context`: one round trip instead of eight.

    Before, an answer's claim was BEGIN, the read, `SET LOCAL`, the UPDATE and COMMIT (five
    round trips), and its context two or three more; on this two-core box each round trip of
    the worker is a wait for the server and a wake-up (bench/README.md, "Session 11:
    PostgreSQL's answer path"). The guarantees are `take`'s: the UPDATE's conditions pick one
    winner, the claim is committed (flush not awaited) before the engine starts, and a message
    whose files are still being read is not claimed (Busy, as before). The rare extra read of
    the policy's prior turns (`_prior`) keeps its own statement.
    """
    now = utcnow()
    files_since = now - ATTACHMENT_WAIT
    with get_engine().connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        row = conn.execute(
            _CLAIM_WITH_CONTEXT,
            {
                "mid": message_id,
                "now": now,
                "until": now + _lease(),
                "files_since": files_since,
                "turn_rows": _TURN_ROWS,
            },
        ).one_or_none()
        if row is None:
            return _gone_or_done(conn, message_id)
        session_id_var.set(row.session_id)
        if row.attempts is None:
            if row.files_pending and _aware(row.created_at) > files_since:
                raise Busy(0.5)
            return Next(row.id, None, bool(row.has_files))
        rows = [_TurnRow(*t) for t in row.turns or []]
        prior = _prior(conn, row, rows)
    return Next(
        row.id,
        row.attempts,
        bool(row.has_files),
        Context(
            message_id=row.id,
            session_id=row.session_id,
            question=row.content,
            history=[Turn(r.role, r.content) for r in reversed(rows[:HISTORY_TURNS])],
            attachments=[t for t in row.file_texts or [] if t],
            attempts=row.attempts,
            owner=row.owner,
            requested=(row.metadata or {}).get("request") == "person",
            prior=prior,
            asked_at=row.created_at,
        ),
    )


def _gone_or_done(conn: Connection, message_id: str) -> str:
    """Why no open message was found for `message_id`: "gone" (deleted with its session) or
    "done" (answered already); the session goes into the logs' context either way."""
    session_id = conn.execute(_USER_MESSAGE, {"mid": message_id}).scalar_one_or_none()
    if session_id is not None:
        session_id_var.set(session_id)
    return "gone" if session_id is None else "done"


def _aware(ts):  # type: ignore[no-untyped-def]
    """SQLite returns naive datetimes; treat them as the UTC they were written as."""
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def renew_lease(message_id: str) -> None:
    """Tell the sweeper we are alive."""
    with session_scope() as db:
        renew(db, REPLY, message_id, _lease())


def load_context(message_id: str, has_files: bool = True) -> Context | None:
    """The question, recent turns, attachment text and owner, read once (None if deleted).

    Two statements in the usual case: the message with its session, and the last turns, from
    which both the engine's history and the policy's prior turns are cut. The prior turns need
    their own read only when agent turns in that window crowd out customer and bot turns.
    """
    with get_engine().connect() as conn:
        if conn.dialect.name == "postgresql":
            # Read only, and each statement has its own snapshot under READ COMMITTED anyway:
            # autocommit spares BEGIN and ROLLBACK, and a ROLLBACK also empties psycopg's
            # prepared statements, so none of an answer's statements was ever prepared
            # (bench/README.md, "Session 11"). SQLite keeps one snapshot for the reads.
            # (`answer_pending` on PostgreSQL reads the context with its claim instead,
            # `_claim_with_context`; this read is the reference that claim is checked against.)
            conn.execution_options(isolation_level="AUTOCOMMIT")
        msg = conn.execute(_CONTEXT, {"mid": message_id}).one_or_none()
        if msg is None:
            return None
        rows = conn.execute(_TURNS, {"sid": msg.session_id, "before": msg.seq}).all()
        texts = conn.execute(_FILE_TEXTS, {"mid": message_id}).scalars().all() if has_files else []
        prior = _prior(conn, msg, rows)
        conn.rollback()  # read only (nothing to end in autocommit)
    return Context(
        message_id=message_id,
        session_id=msg.session_id,
        question=msg.content,
        history=[Turn(r.role, r.content) for r in reversed(rows[:HISTORY_TURNS])],
        attachments=[t for t in texts if t],
        attempts=msg.attempts,
        owner=msg.owner,
        requested=(msg.metadata or {}).get("request") == "person",
        prior=prior,
        asked_at=msg.created_at,
    )


def _prior(conn: Connection, msg, rows: list) -> list[PriorTurn]:  # type: ignore[no-untyped-def]
    """The policy's prior turns (the customer's and bot's since the bot last took the
    conversation) from the turns already read, when those are sure to hold all of them."""
    since = msg.owner_since_seq
    candidates = [r for r in rows if r.role in ("user", "assistant") and r.seq > since]
    complete = (
        len(rows) < _TURN_ROWS  # every earlier turn was read
        or len(candidates) >= PRIOR_TURNS
        or (rows and rows[-1].seq <= since)  # the read reaches back past `since`
    )
    if complete:
        return prior_from_rows(candidates[:PRIOR_TURNS])
    return prior_turns(conn, msg.session_id, msg.seq, since)


class LeaseKeeper:
    """Renews the leases of the messages this process is answering, every third of the lease,
    even while an engine is silent (a model thinking before its first token), so the lease can
    stay short and a dead worker's message is taken over quickly.

    One thread per process for every answer, started on first use (after the fork), rather
    than a thread started and joined around each answer: that start and join were two thread
    hand-offs per answer, about 7 % of a pool process's CPU with the offline engine, whose
    answers finish long before any renewal is due.
    """

    def __init__(self) -> None:
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()
        self._pid: int | None = None

    @contextmanager
    def hold(self, message_id: str) -> Iterator[None]:
        """Keep `message_id`'s lease alive while the block runs."""
        self._ensure_thread()
        with self._lock:
            self._held[message_id] = self._held.get(message_id, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._held.pop(message_id) - 1
                if left:
                    self._held[message_id] = left

    def held(self) -> list[str]:
        """The messages whose leases are being kept now."""
        with self._lock:
            return list(self._held)

    def _ensure_thread(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid != os.getpid():
                self._held.clear()  # a forked child holds nothing of its parent's
                thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
                thread.start()
                self._pid = os.getpid()

    def _run(self) -> None:
        while True:
            time.sleep(max(get_settings().agent_lease_seconds / 3, 0.5))
            for message_id in self.held():
                try:
                    renew_lease(message_id)
                except Exception:  # a missed beat only risks a harmless duplicate attempt
                    log.warning("lease renewal failed", exc_info=True)


leases = LeaseKeeper()


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
        with leases.hold(ctx.message_id):
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
    """One transaction under the session-row lock; the owner read there is the truth (on
    PostgreSQL a plain answer is one statement, `_store_reply_at_once`, the same writes under
    the same lock; anything else, or a conversation the bot no longer owns, goes this way).

    Redis is only spoken to after the commit (never while SQLite's write lock is held): the
    held stream, the persisted events and the metrics leave in one pipeline.
    """
    if answer is not None and _at_once_possible(decision, answer[1]):
        try:
            at_once = _store_reply_at_once(ctx, decision, *answer)
        except IntegrityError:
            log.info("reply already stored by another worker", extra={"message_id": ctx.message_id})
            return
        if at_once is not None:
            events, stored = at_once
            stream = streamer.take() if streamer is not None else []
            measure = _measure(ctx, stored, answer[2], answer[1].escalation_reason)
            publish_all(stream + events, measure)
            return
    db = new_session()
    stored: Message | None = None
    try:
        events: list[dict] = []
        seq = None
        if answer is not None:
            # The usual case in one statement: the session row's lock and the reply's seq,
            # allocated only while the bot owns the conversation.
            seq = db.execute(_BOT_SEQ, {"sid": ctx.session_id}).scalar_one_or_none()
        if seq is not None:
            owner = Owner.BOT.value
        else:
            owner, _status = lock_session(db, ctx.session_id)
            if answer is not None and owner == Owner.BOT:  # the owner changed back meanwhile
                seq = next_seq(db, ctx.session_id)
        if owner != Owner.BOT:
            change = stay_silent(db, ctx.message_id, ctx.session_id, owner, decision)
        elif answer is None:
            change = hand_over(db, ctx.message_id, ctx.session_id, decision)
        else:
            assert seq is not None
            events, change, stored = _write_reply(db, ctx, decision, *answer, seq=seq)
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


_BOT_SEQ = (
    update(_S)
    .where(_S.c.id == bindparam("sid"), _S.c.owner == Owner.BOT.value)
    .values(last_seq=_S.c.last_seq + 1)
    .returning(_S.c.last_seq)
)
_INSERT_MESSAGE = insert(_M)


def _write_reply(
    db,  # type: ignore[no-untyped-def]
    ctx: Context,
    decision: Decision,
    reply_id: str,
    reply: Reply,
    seconds: float,
    *,
    seq: int,
) -> tuple[list[dict], Change | None, Message]:
    """Store the reply (a Core INSERT: the row is never loaded back), close the customer's
    message and log `complete`; the unique reply index refuses a second reply right here."""
    msg = _reply_message(ctx, reply_id, reply, seconds, seq)
    db.execute(_INSERT_MESSAGE, message_row(msg))
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
    events = [append_event(db, ctx.session_id, "complete", seq=seq, message=message_json(msg))]
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


def _reply_message(ctx: Context, reply_id: str, reply: Reply, seconds: float, seq: int) -> Message:
    """The reply as an unsaved Message (for a Core INSERT and the `complete` event)."""
    meta = {
        "engine": reply.engine,
        "requires_escalation": reply.requires_escalation,
        "escalation_reason": reply.escalation_reason,
        **reply.metadata,
    }
    return Message(
        id=reply_id,
        session_id=ctx.session_id,
        seq=seq,
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


def _at_once_possible(decision: Decision, reply: Reply) -> bool:
    """An answer `_store_reply_at_once` may store: on PostgreSQL, a plain one (no offer of a
    person, which logs a second event, and not the give-up text, which opens a ticket)."""
    return (
        get_engine().dialect.name == "postgresql"
        and decision.action == "none"
        and not is_low_confidence(reply)
        and reply.escalation_reason != "processing_failed"
    )


_AT_ONCE: dict[tuple[str, ...], Insert] = {}


def _store_reply_at_once(
    ctx: Context, decision: Decision, reply_id: str, reply: Reply, seconds: float
) -> tuple[list[dict], Message] | None:
    """PostgreSQL, a plain answer while the bot owns the conversation: the reply's whole
    transaction as ONE autocommitted statement (the seq under the session-row lock, the reply,
    the customer's message closed, the `complete` event logged); None when it wrote nothing
    (the bot does not own the conversation, or the session is gone), for `_commit_outcome`'s
    transaction to decide as before. IntegrityError (a reply stored already) rolls the whole
    statement back, seq included.

    Why: the transaction was BEGIN, four statements and COMMIT, six round trips, each a wait
    and a wake-up on a shared two-core box (bench/README.md, "Session 11: PostgreSQL's answer
    path"). Durability is unchanged: the statement returns after its commit, WAL flush
    included, and `complete` is published only after it returns. The event's JSON is built in
    Python with a placeholder seq and completed by the statement with the seq it took, so the
    stored payload is the published event with its seq.
    """
    msg = _reply_message(ctx, reply_id, reply, seconds, SEQ_PLACEHOLDER)
    event, logged = event_row(
        ctx.session_id, "complete", SEQ_PLACEHOLDER, message=message_json(msg)
    )
    engine = get_engine()
    pieces = seq_pieces(engine.dialect, event)
    if pieces is None:  # not the two seq keys expected: the transaction's way
        return None
    values = with_defaults(message_row(msg))
    params = row_params(values, logged)
    params.update(
        pieces,
        sid=ctx.session_id,
        mid=ctx.message_id,
        now=logged["created_at"],
        escalation=decision.to_dict(),
    )
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        seq = conn.execute(_at_once_statement(tuple(values)), params).scalar()
    if seq is None:
        return None
    msg.seq = event["seq"] = event["message"]["seq"] = seq
    return [event], msg


def _at_once_statement(columns: tuple[str, ...]) -> Insert:
    """`WITH bumped AS (UPDATE chat_sessions SET last_seq = last_seq + 1 WHERE id = :sid AND
    owner = 'bot' RETURNING last_seq), closed AS (UPDATE messages SET status = 'done', ...
    WHERE id = :mid AND still open AND EXISTS (SELECT FROM bumped)), logged AS (INSERT INTO
    session_events SELECT ..., the JSON completed with the seq, FROM bumped) INSERT INTO
    messages SELECT ..., bumped.last_seq, ... FROM bumped RETURNING seq`, built once per set
    of message columns.
    `bumped` is `_BOT_SEQ`, `closed` is `finish` with the decision: every write hangs on the
    seq, so a conversation a person owns gets none of them."""
    stmt = _AT_ONCE.get(columns)
    if stmt is not None:
        return stmt
    bumped = (  # `_BOT_SEQ`, with its `updated_at` given (an UPDATE inside a CTE gets none)
        update(_S)
        .where(_S.c.id == bindparam("sid"), _S.c.owner == Owner.BOT.value)
        .values(last_seq=_S.c.last_seq + 1, updated_at=bindparam("now"))
        .returning(_S.c.last_seq)
        .cte("bumped")
    )
    closed = (
        update(_M)
        .where(
            _M.c.id == bindparam("mid"),
            *REPLY.scope,
            one_of(_M.c.status, _OPEN_STATES),
            exists(select(bumped.c.last_seq)),  # only when the seq was taken
        )
        .values(
            status="done",
            lease_until=None,
            escalation=bindparam("escalation", type_=_M.c.escalation.type),
        )
        .returning(_M.c.id)
        .cte("closed")
    )
    stmt = message_and_event(bumped, columns, closed)
    _AT_ONCE[columns] = stmt
    return stmt
