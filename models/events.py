"""Event envelopes and the per-session log: the small typed protocol between web and worker.

Persisted events are appended to `session_events` with the session's next `seq` in the same
transaction as the row they describe; pub/sub then only rings the bell. Ephemeral events
(stream deltas, typing) carry no seq and are never stored.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import redis
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from models.base import utcnow
from models.chat import ChatSession, SessionEvent
from models.settings import get_settings

log = logging.getLogger(__name__)

# Types a client can see; persisted ones get a seq and are replayed after reconnect.
PERSISTED_TYPES = frozenset(
    {
        "user_message",
        "complete",
        "agent_message",
        "escalation",
        "attachment",
        "session_status",
        "agent_joined",
        "agent_left",
    }
)
EPHEMERAL_TYPES = frozenset({"start", "status", "sources", "text", "user_typing"})


def channel_for(session_id: str) -> str:
    """The pub/sub channel of one session; web processes psubscribe to the pattern."""
    return f"{get_settings().event_channel_prefix}:session:{session_id}"


def channel_pattern() -> str:
    """Pattern matching every session channel (one subscription per web process)."""
    return f"{get_settings().event_channel_prefix}:session:*"


def iso(ts: datetime) -> str:
    """ISO-8601 UTC timestamp as clients receive it (SQLite's naive values are UTC too)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def envelope(type_: str, session_id: str, seq: int | None = None, **fields: Any) -> dict:
    """Build an event: every event has type, session_id and timestamp; persisted ones a seq."""
    event: dict[str, Any] = {"type": type_, "session_id": session_id, "timestamp": iso(utcnow())}
    if seq is not None:
        event["seq"] = seq
    event.update(fields)
    return event


_SESSIONS = ChatSession.__table__
_EVENTS = SessionEvent.__table__
# Built once, executed with bound parameters: the hot path (every message, every answer) pays
# neither for building the statement nor for its cache key, and as Core statements on the
# tables they skip the ORM's bulk-UPDATE bookkeeping (no loaded object holds `last_seq`).
_NEXT_SEQ = (
    update(_SESSIONS)
    .where(_SESSIONS.c.id == bindparam("sid"))
    .values(last_seq=_SESSIONS.c.last_seq + 1)
    .returning(_SESSIONS.c.last_seq)
)
_INSERT_EVENT = insert(_EVENTS)


def next_seq(db: Session | Connection, session_id: str) -> int:
    """Allocate the session's next seq; the row lock orders concurrent writers (held to commit)."""
    seq = db.execute(_NEXT_SEQ, {"sid": session_id}).scalar_one_or_none()
    if seq is None:
        raise LookupError(f"session {session_id} does not exist")
    return int(seq)


def append_event(
    db: Session | Connection, session_id: str, type_: str, seq: int | None = None, **fields: Any
) -> dict:
    """Store a persisted event in the log (allocating a seq unless given) and return it.

    The row is inserted at once (a Core INSERT, not an ORM object waiting for the flush): the
    log is only ever read back through queries, never as a loaded object.
    """
    if seq is None:
        if type_ not in PERSISTED_TYPES:  # checked before the seq is spent
            raise ValueError(f"{type_} is not a persisted event type")
        seq = next_seq(db, session_id)
    event, row = event_row(session_id, type_, seq, **fields)
    db.execute(_INSERT_EVENT, row)
    return event


def event_row(session_id: str, type_: str, seq: int, **fields: Any) -> tuple[dict, dict]:
    """A persisted event and its `session_events` row, for a caller that inserts the row in a
    statement of its own making (webapp/chat.py stores a message, its seq and its event in one
    statement on PostgreSQL)."""
    if type_ not in PERSISTED_TYPES:
        raise ValueError(f"{type_} is not a persisted event type")
    event = envelope(type_, session_id, seq, **fields)
    row = {
        "session_id": session_id,
        "seq": seq,
        "type": type_,
        "payload": event,
        "created_at": utcnow(),
    }
    return event, row


def events_after(db: Session, session_id: str, after: int, upto: int | None = None) -> list[dict]:
    """Persisted events with after < seq (<= upto), in order: what a client missed."""
    stmt = select(SessionEvent.payload).where(
        SessionEvent.session_id == session_id, SessionEvent.seq > after
    )
    if upto is not None:
        stmt = stmt.where(SessionEvent.seq <= upto)
    return list(db.execute(stmt.order_by(SessionEvent.seq)).scalars())


_redis: redis.Redis | None = None


def redis_client() -> redis.Redis:
    """Shared publisher connection pool with short timeouts (nothing blocks forever)."""
    global _redis
    if _redis is None:
        from models.redisconn import client

        _redis = client(
            socket_timeout=5,
            socket_connect_timeout=2,
            health_check_interval=30,
        )
    return _redis


def reset_redis() -> None:
    """Forget the shared client (after fork, or when tests switch databases)."""
    global _redis
    _redis = None


def publish(event: dict, client: redis.Redis | None = None) -> bool:
    """Ring the bell for one event; False if Redis is unreachable (the database still has it)."""
    try:
        (client or redis_client()).publish(channel_for(event["session_id"]), json.dumps(event))
        return True
    except redis.RedisError as exc:
        log.warning(
            "publish failed",
            extra={
                "session_id": event.get("session_id"),
                "event_type": event.get("type"),
                "error": str(exc),
            },
        )
        return False


def _runs(events: list[dict]) -> Iterator[tuple[str, list[dict]]]:
    """Consecutive events of one session, grouped in order."""
    run: list[dict] = []
    for event in events:
        if run and event["session_id"] != run[0]["session_id"]:
            yield run[0]["session_id"], run
            run = []
        run.append(event)
    if run:
        yield run[0]["session_id"], run


def publish_all(
    events: list[dict],
    extra: Callable[[Any], None] | None = None,
    client: redis.Redis | None = None,
) -> bool:
    """Ring the bell for several events in one round trip, in order.

    A pipeline without MULTI: one write and one read on the socket instead of one of each per
    event. Consecutive events of one session leave as ONE message, a JSON array (an answer's
    stream is a dozen events): every web process's listener hears every session's messages, so
    each message saved is a PUBLISH here and a read, a parse and a dispatch in each web
    process. `extra(pipe)` may queue more commands (metrics) into the same round trip. False if
    Redis is unreachable; the database has every persisted event, and clients re-read it when
    they notice a gap.
    """
    if not events and extra is None:
        return True
    try:
        pipe = (client or redis_client()).pipeline(transaction=False)
        for session_id, run in _runs(events):
            payload = run[0] if len(run) == 1 else run
            pipe.publish(channel_for(session_id), json.dumps(payload))
        if extra is not None:
            extra(pipe)
        pipe.execute()
        return True
    except redis.RedisError as exc:
        log.warning(
            "publish failed",
            extra={
                "session_id": events[0].get("session_id") if events else None,
                "event_type": ",".join(sorted({e.get("type", "?") for e in events})),
                "error": str(exc),
            },
        )
        return False
