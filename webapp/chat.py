"""The web side of the message loop: validate, store, enqueue, acknowledge (in that order).

Shared by the REST endpoints and the WebSocket so both behave identically.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Insert, bindparam, case, func, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from models import jobs, metrics, storage
from models.base import new_id, utcnow
from models.chat import Attachment, ChatSession, Message, SessionEvent, message_row
from models.events import append_event, event_row, next_seq, publish_all
from models.filetypes import UnsupportedFileType, safe_filename, sniff_content_type
from models.ownership import Owner
from models.seqwrite import (
    SEQ_PLACEHOLDER,
    message_and_event,
    row_params,
    seq_pieces,
    typed,
    with_defaults,
)
from models.serialize import attachment_json, message_json
from models.textcheck import text_problem
from models.work import ATTACHMENT, REPLY, queue
from webapp.auth import Actor
from webapp.config import current_settings
from webapp.errors import ApiError, abort
from webapp.limits import check_message

if TYPE_CHECKING:
    from webapp.uploads import Received

log = logging.getLogger(__name__)

# What a customer's structured request for a person reads as in the history.
HANDOFF_REQUEST_TEXT = "I'd like to talk to a person."


@dataclass
class Accepted:
    """Result of accepting a message: `created` is False for a resend of a known client_msg_id."""

    message: Message
    created: bool
    event: dict | None = None
    uploaded: list[str] = field(default_factory=list)  # files that came with it: to parse


def validate_content(content: object) -> str:
    """Message text must be a non-empty string within MAX_MESSAGE_CHARS."""
    if not isinstance(content, str):
        abort(422, "message must be a string", details={"message": ["Not a valid string."]})
    problem = text_problem(content)
    if problem:
        abort(422, f"message {problem}", "invalid_text", details={"message": [problem]})
    text = content.strip()
    if not text:
        abort(422, "message is empty", "empty_message", details={"message": ["Empty message."]})
    limit = current_settings().max_message_chars
    if len(text) > limit:
        abort(
            413,
            f"message is longer than {limit} characters",
            "message_too_long",
            details={"limit": limit, "length": len(text)},
        )
    return text


# Built once: every message with a client_msg_id (the chat page sends one each time) runs it.
# It reads only the id (a Core statement): the message is loaded only for the rare resend.
_M = Message.__table__
_EXISTING = select(_M.c.id).where(
    _M.c.session_id == bindparam("sid"), _M.c.client_msg_id == bindparam("cid")
)
_INSERT_MESSAGE = insert(_M)
_S = ChatSession.__table__
_E = SessionEvent.__table__
_INSERT_EVENT = insert(_E)

# A socket message's session, and the id of a message already stored under its client_msg_id,
# in one round trip (they were two): the duplicate check runs on every message the chat page
# sends, and each statement on PostgreSQL is a context switch to a backend.
_CHAT_AND_DUPLICATE = select(
    ChatSession,
    select(_M.c.id)
    .where(_M.c.session_id == _S.c.id, _M.c.client_msg_id == bindparam("cid"))
    .scalar_subquery(),
).where(_S.c.id == bindparam("sid"))


def chat_for_message(
    db: Session, session_id: str, client_msg_id: str | None
) -> tuple[ChatSession | None, str | None]:
    """The session (None if gone) and the id of the message already stored under
    `client_msg_id` (None if new), for `accept_message(..., duplicate_of=...)`."""
    cid = client_msg_id or None  # an empty id is no id (as in `_existing`)
    row = db.execute(_CHAT_AND_DUPLICATE, {"sid": session_id, "cid": cid}).first()
    if row is None:
        return None, None
    return row[0], row[1]


def _existing(db: Session, session_id: str, client_msg_id: str | None) -> Message | None:
    if not client_msg_id:
        return None
    found = db.scalar(_EXISTING, {"sid": session_id, "cid": client_msg_id})
    return db.get(Message, found) if found is not None else None


_NOT_LOOKED_UP = "(not looked up)"  # `duplicate_of` when the caller has not read it


def _stored_under(
    db: Session, session_id: str, client_msg_id: str | None, duplicate_of: str | None
) -> Message | None:
    """The message a resend of `client_msg_id` stands for, read now unless the caller read its
    id with the session (`chat_for_message`)."""
    if duplicate_of == _NOT_LOOKED_UP:
        return _existing(db, session_id, client_msg_id)
    if duplicate_of is None or not client_msg_id:
        return None
    return db.get(Message, duplicate_of)


def _claim_attachments(db: Session, chat: ChatSession, ids: list[str]) -> list[Attachment]:
    """Attachments must belong to this session and not to another message already."""
    found: list[Attachment] = []
    if not all(isinstance(att_id, str) for att_id in ids):
        abort(422, "attachment_ids must be a list of ids", details={"attachment_ids": ["Not ids."]})
    for att_id in dict.fromkeys(ids):
        att = db.get(Attachment, att_id) if _is_uuid(att_id) else None
        if att is None or att.session_id != chat.id:
            abort(422, "unknown attachment", details={"attachment_ids": [f"unknown: {att_id}"]})
        if att.message_id is not None:
            abort(422, "attachment already sent", details={"attachment_ids": [att_id]})
        found.append(att)
    return found


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def accept_message(
    db: Session,
    chat: ChatSession,
    actor: Actor,
    content: object,
    client_msg_id: str | None = None,
    attachment_ids: list[str] | None = None,
    uploads: list[tuple[str, bytes]] | None = None,
    on_stored: Callable[[Message, bool], None] | None = None,
    request: str | None = None,
    duplicate_of: str | None = _NOT_LOOKED_UP,
) -> Accepted:
    """Store the message (and its files) and commit; then acknowledge, announce, enqueue.

    `on_stored(message, created)` runs after the commit and before the publish, so a socket can
    queue its acknowledgement ahead of the broadcast copy of the same message. `request` is a
    structured customer request ("person": the Talk-to-a-person button) stored on the message.
    `duplicate_of`: the id `chat_for_message` read with the session (None: no message has this
    client_msg_id yet); left out, the duplicate check is a query of its own.
    """
    accepted = store_message(
        db, chat, actor, content, client_msg_id, attachment_ids, uploads, request, duplicate_of
    )
    if on_stored is not None:
        on_stored(accepted.message, accepted.created)
    if accepted.created:
        announce([accepted])
        enqueue_all([accepted])
    return accepted


def store_message(
    db: Session,
    chat: ChatSession,
    actor: Actor,
    content: object,
    client_msg_id: str | None = None,
    attachment_ids: list[str] | None = None,
    uploads: list[tuple[str, bytes]] | None = None,
    request: str | None = None,
    duplicate_of: str | None = _NOT_LOOKED_UP,
    ip: str | None = None,
    rate_checked: bool = False,
) -> Accepted:
    """`accept_message` up to its commit: check, store, commit (or find the stored resend).

    The caller acknowledges, then `announce`s and `enqueue_all`s. `ip`: the sender's address for
    the rate limit when this runs outside the sender's request (a socket message stored by
    another socket's greenlet); `rate_checked`: the limit already counted this message (a batch
    redone one by one after a failure must not count it twice)."""
    text = _checked_text(chat, content, client_msg_id, request)
    existing = _stored_under(db, chat.id, client_msg_id, duplicate_of)
    if existing is not None:
        return Accepted(existing, created=False)
    _check_sender(chat, actor, request)
    if not rate_checked:
        check_message(chat.id, ip)
    attachments = _claim_attachments(db, chat, attachment_ids or [])
    uploaded = [store_upload(db, chat, name, data) for name, data in uploads or []]
    attachments += uploaded
    msg = _new_message(chat.id, actor, text, client_msg_id, request)
    try:
        event = _store(db, chat, msg, attachments)
        db.commit()
    except IntegrityError:
        # Two sends of one client_msg_id raced; the other one won and is the message.
        db.rollback()
        storage.remove([att.storage_key for att in uploaded])  # this copy's files, if on disk
        existing = _existing(db, chat.id, client_msg_id)
        if existing is None:
            raise
        return Accepted(existing, created=False)
    return Accepted(msg, created=True, event=event, uploaded=[att.id for att in uploaded])


def _checked_text(
    chat: ChatSession, content: object, client_msg_id: str | None, request: str | None
) -> str:
    """The checks that need nothing but the session row, in the order callers have always
    seen them (an ended session before the text); the text to store."""
    if chat.status == "ended":
        abort(409, "this session has ended", "session_not_active")
    text = HANDOFF_REQUEST_TEXT if request == "person" else validate_content(content)
    if client_msg_id is not None and text_problem(client_msg_id):
        why = text_problem(client_msg_id)
        abort(422, f"client_msg_id {why}", "invalid_text", details={"client_msg_id": [why]})
    return text


def _check_sender(chat: ChatSession, actor: Actor, request: str | None) -> None:
    """May this actor add this message now (checked after the resend check: a resend of a
    stored message is acknowledged whatever changed since)."""
    if actor.is_staff:
        _check_agent_holds(chat, actor)
    elif request == "person" and chat.owner != Owner.BOT:
        abort(
            409,
            "a person has already been asked for in this conversation",
            "already_with_person",
            details={"owner": chat.owner, "agent": chat.agent_name},
        )


def _new_message(
    session_id: str, actor: Actor, text: str, client_msg_id: str | None, request: str | None
) -> Message:
    return Message(
        id=new_id(),
        session_id=session_id,
        role="agent" if actor.is_staff else "user",
        content=text,
        client_msg_id=client_msg_id,
        status="done",
        metadata_=_message_meta(actor, request),
    )


def announce(accepted: list[Accepted]) -> None:
    """Broadcast the new messages' events and count them, in one Redis round trip (a batch of
    socket messages is one pipeline). Acknowledge first, enqueue after: no client sees a reply
    stream ahead of the message it answers; the stored messages and the sweeper cover a failed
    publish or enqueue."""
    events = [a.event for a in accepted if a.created and a.event is not None]
    roles = Counter(a.message.role for a in accepted if a.created)

    def counts(pipe: Any) -> None:
        for role, n in roles.items():
            metrics.count_into(pipe, "messages", role, n)

    publish_all(events, counts if roles else None)


def enqueue_all(accepted: list[Accepted]) -> None:
    """Send new messages' work to the worker: their files' parses, and each customer message's
    reply (every customer message goes to the worker, whoever owns the conversation: the
    escalation policy runs on it, and the worker stays silent when a person owns it). A group
    commit's batch has its reply tasks published together (`jobs.send_replies`: on Redis one
    round trip instead of one per message), in the batch's order."""
    for one in accepted:
        for att_id in one.uploaded:  # files uploaded earlier were queued by their upload
            jobs.send_parse(att_id)
    jobs.send_replies([a.message.id for a in accepted if a.created and a.message.role == "user"])


@dataclass(eq=False)
class SocketSend:
    """One socket message (without files) to be stored together with others: what the socket
    read, and once `store_together` is done, what came of it (`accepted` or `error`)."""

    session_id: str
    actor: Actor
    content: object
    client_msg_id: str | None
    request: str | None
    ip: str
    accepted: Accepted | None = None
    error: ApiError | None = None
    rate_checked: bool = False
    rate_refusal: ApiError | None = None  # the limit said no before the session was read


def store_together(db: Session, sends: list[SocketSend]) -> None:
    """Store several socket messages in ONE transaction (group commit); fill in each one's
    outcome. The caller acknowledges the stored ones, then `announce`s and `enqueue_all`s.

    Why: on a burst (every session's first message in the same instant) each accept was its
    own transaction, a commit (a WAL flush) and four to seven round trips, one after the other
    at the accept gate; the burst's last message waited for all of them (bench/README.md,
    "Session 7"). Here a batch costs two reads, one UPDATE of the sessions' counters, two
    multi-row INSERTs and one commit, whatever its size.

    The checks are `store_message`'s, in its order, and refuse one message without touching
    the transaction (nothing is written before the last check). Seqs come from the UPDATE
    (`last_seq + k ... RETURNING last_seq`, which waits for the row lock of any other writer,
    so they are right whoever moved the counter since the read), k being the session's new
    messages in this batch, given in arrival order: no gap, no double. A client_msg_id stored
    already, or earlier in the same batch, is that message (`created` False). If the write
    fails (a resend racing another process into the unique key, a deadlock between two
    processes' batches), the transaction is rolled back and every message not refused is
    stored again one by one (`store_message`, its own transaction each, the rate limit not
    counted twice): rare, and cheaper than a SAVEPOINT per message (two more round trips each
    on PostgreSQL) in the common case."""
    if len(sends) == 1:
        _store_one(db, sends[0])
        return
    try:
        written = _write_together(db, sends)
    except (IntegrityError, OperationalError) as exc:
        db.rollback()
        log.info("batch redone one by one", extra={"error": str(exc)[:200]})
        written = False
    if written:
        return
    for send in sends:
        if send.error is None:
            send.accepted = None
            _store_one(db, send)


def _store_one(db: Session, send: SocketSend) -> None:
    """One socket message in its own transaction (`chat_for_message` + `store_message`); on
    PostgreSQL first autocommitted (`_store_autocommit`): a customer's plain message in one
    statement, anything else in two."""
    try:
        if db.get_bind().dialect.name == "postgresql" and _store_autocommit(db, send):
            return
        chat, duplicate_of = chat_for_message(db, send.session_id, send.client_msg_id)
        if chat is None:
            raise ApiError(404, "this session no longer exists", "unknown_session")
        send.accepted = store_message(
            db,
            chat,
            send.actor,
            send.content,
            send.client_msg_id,
            request=send.request,
            duplicate_of=duplicate_of,
            ip=send.ip,
            rate_checked=send.rate_checked,
        )
    except ApiError as err:
        db.rollback()
        send.error = err
    except Exception:  # this message only (the database refused it): never the others
        log.exception("socket message could not be stored")
        db.rollback()
        send.error = ApiError(500, "this frame could not be handled; try again", "server_error")


def _store_autocommit(db: Session, send: SocketSend) -> bool:
    """PostgreSQL: store one socket message in one round trip (`_store_unread`) or, when that
    cannot, in two instead of four; False when nothing was written and the transactional way
    must follow (the counter moved).

    Why: a lone message's transaction was BEGIN, the session read, the one statement that
    stores it (`_store_at_once`) and COMMIT, each a round trip to a backend competing for the
    same cores (bench/README.md, "fewer round trips per accept"). The read needs no
    transaction, and the store is one atomic statement: in autocommit it is committed, WAL
    flush included, when it returns, exactly as the COMMIT did. If another writer moved the
    session's counter since the read, that statement writes nothing and the caller takes the
    transactional way, whose `next_seq` waits for the row lock (the rate limit is not counted
    again). `db` must have no transaction open: its connection is taken here in autocommit
    and given back before returning."""
    db.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    try:
        if _store_unread(db, send):
            return True
        chat, duplicate_of = chat_for_message(db, send.session_id, send.client_msg_id)
        if chat is None:
            raise ApiError(404, "this session no longer exists", "unknown_session")
        text = _checked_text(chat, send.content, send.client_msg_id, send.request)
        existing = _stored_under(db, chat.id, send.client_msg_id, duplicate_of)
        if existing is not None:
            db.expunge(existing)  # kept loaded through the rollback below
            send.accepted = Accepted(existing, created=False)
            return True
        _check_sender(chat, send.actor, send.request)
        if send.rate_refusal is not None:
            raise send.rate_refusal
        if not send.rate_checked:
            check_message(chat.id, send.ip)
            send.rate_checked = True
        msg = _new_message(chat.id, send.actor, text, send.client_msg_id, send.request)
        try:
            event = _store_at_once(db, chat, msg)
        except IntegrityError:
            # A resend of this client_msg_id raced us in and won: it is the message.
            db.rollback()
            existing = _existing(db, chat.id, send.client_msg_id)
            if existing is None:
                raise
            db.expunge(existing)
            send.accepted = Accepted(existing, created=False)
            return True
        if event is None:
            return False
        send.accepted = Accepted(msg, created=True, event=event)
        return True
    finally:
        db.rollback()  # ends the autocommit use (the next statement takes a transaction) and
        # expires what it loaded, hence the expunge of a message handed back


def _unread_text(send: SocketSend) -> str | None:
    """The text of a message `_store_unread` may store without reading its session first: a
    customer's plain message whose own checks pass; None for everything else (an agent's
    message and a request for a person depend on who owns the conversation; a refused text
    must be reported after the session's own refusals, as the read path orders them)."""
    if send.actor.is_staff or send.request is not None:
        return None
    try:
        text = validate_content(send.content)
    except ApiError:
        return None
    if send.client_msg_id is not None and text_problem(send.client_msg_id):
        return None
    return text


def _store_unread(db: Session, send: SocketSend) -> bool:
    """PostgreSQL, a customer's lone socket message: store it in ONE autocommitted statement,
    without reading the session first; False when it wrote nothing (unknown or ended
    session, a `client_msg_id` stored already, a race) or may not be tried: the caller then
    reads the session and answers exactly as before.

    Why: at 100 sessions a lone accept's two round trips (the session read, then the store)
    took 3.3 and 6.3 ms of wall time in the web process against 0.1 and 0.3 ms on the server
    and ~0.5 ms of WAL flush: each is a yield to a hub busy with other sockets (bench/README.md,
    "Session 11"). The read only fed checks the statement can make itself: the session exists
    and has not ended, no message has this `client_msg_id` (the UPDATE's WHERE), and the seq
    is the counter's next value under the row lock (RETURNING), as `next_seq` takes it, so
    the event and the message get it there; no gap, no double. The event's JSON is built in
    Python with a placeholder seq and completed by the statement, to the byte what the read
    path stores. The rate limit is counted before the statement (a resend or a message to an
    ended session now counts one hit too); a refusal is kept and raised by the read path at
    its usual place, so a resend over the limit is still acknowledged."""
    text = _unread_text(send)
    if text is None:
        return False
    if not send.rate_checked:
        try:
            check_message(send.session_id, send.ip)
        except ApiError as err:
            send.rate_refusal = err
        send.rate_checked = True
    if send.rate_refusal is not None:
        return False
    msg = _new_message(send.session_id, send.actor, text, send.client_msg_id, send.request)
    kind = _describe(msg, SEQ_PLACEHOLDER, [])
    event, logged = event_row(send.session_id, kind, SEQ_PLACEHOLDER, message=message_json(msg, []))
    pieces = seq_pieces(db.get_bind().dialect, event)
    if pieces is None:  # not the envelope's seq and the message's: read first
        return False
    values = with_defaults(message_row(msg))
    params = row_params(values, logged)
    params.update(pieces, sid=send.session_id, cid=send.client_msg_id, now=logged["created_at"])
    try:
        seq = db.execute(_unread_statement(tuple(values)), params).scalar()
    except IntegrityError:  # a resend of this client_msg_id raced us in: the read path finds it
        db.rollback()
        db.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        return False
    if seq is None:
        return False
    msg.seq = event["seq"] = event["message"]["seq"] = seq
    send.accepted = Accepted(msg, created=True, event=event)
    return True


_UNREAD_STATEMENTS: dict[tuple[str, ...], Insert] = {}


def _unread_statement(columns: tuple[str, ...]) -> Insert:
    """`WITH bumped AS (UPDATE chat_sessions SET last_seq = last_seq + 1 WHERE id = :sid AND
    status <> 'ended' AND NOT EXISTS (a message under :cid) RETURNING last_seq), logged AS
    (INSERT INTO session_events SELECT ..., the JSON completed with the seq, FROM bumped)
    INSERT INTO messages SELECT ..., bumped.last_seq, ... FROM bumped RETURNING seq`, built
    once per set of message columns."""
    stmt = _UNREAD_STATEMENTS.get(columns)
    if stmt is not None:
        return stmt
    stored = select(_M.c.id).where(
        _M.c.session_id == bindparam("sid"), _M.c.client_msg_id == bindparam("cid")
    )
    bumped = (
        update(_S)
        .where(_S.c.id == bindparam("sid"), _S.c.status != "ended", ~stored.exists())
        .values(last_seq=_S.c.last_seq + 1, updated_at=bindparam("now"))
        .returning(_S.c.last_seq)
        .cte("bumped")
    )
    stmt = message_and_event(bumped, columns)
    _UNREAD_STATEMENTS[columns] = stmt
    return stmt


def _write_together(db: Session, sends: list[SocketSend]) -> bool:
    """The batch's one transaction; False (nothing committed, rolled back) if a session vanished
    between the read and the write, so the caller redoes the batch one by one."""
    sids = {send.session_id for send in sends}
    chats = {c.id: c for c in db.scalars(select(ChatSession).where(ChatSession.id.in_(sids)))}
    cids = {send.client_msg_id for send in sends if send.client_msg_id}
    stored: dict[tuple[str, str | None], Message] = {}
    if cids:
        found = select(Message).where(Message.session_id.in_(sids), Message.client_msg_id.in_(cids))
        stored = {(m.session_id, m.client_msg_id): m for m in db.scalars(found)}
    new: list[tuple[SocketSend, ChatSession, Message]] = []
    resends: list[tuple[SocketSend, Message]] = []
    for send in sends:
        chat = chats.get(send.session_id)
        try:
            if chat is None:
                raise ApiError(404, "this session no longer exists", "unknown_session")
            text = _checked_text(chat, send.content, send.client_msg_id, send.request)
            key = (chat.id, send.client_msg_id)
            if send.client_msg_id and key in stored:  # stored before, or earlier in this batch
                resends.append((send, stored[key]))
                continue
            _check_sender(chat, send.actor, send.request)
            check_message(chat.id, send.ip)
            send.rate_checked = True
        except ApiError as err:
            send.error = err
            continue
        msg = _new_message(chat.id, send.actor, text, send.client_msg_id, send.request)
        if send.client_msg_id:
            stored[key] = msg
        new.append((send, chat, msg))
    done: list[tuple[SocketSend, Accepted]] = []
    if new:
        counts = Counter(chat.id for _send, chat, _msg in new)
        bumped = (
            update(_S)
            .where(_S.c.id.in_(list(counts)))
            .values(last_seq=_S.c.last_seq + case(counts, value=_S.c.id))
            .returning(_S.c.id, _S.c.last_seq)
        )
        next_of = {sid: last - counts[sid] + 1 for sid, last in db.execute(bumped)}
        if len(next_of) != len(counts):  # deleted since the read: the one-by-one path says so
            db.rollback()
            return False
        events = []
        by_columns: dict[tuple[str, ...], list[dict]] = {}
        for send, chat, msg in new:
            seq = next_of[chat.id]
            next_of[chat.id] = seq + 1
            kind = _describe(msg, seq, [])
            event, row = event_row(chat.id, kind, seq, message=message_json(msg, []))
            events.append(row)
            values = with_defaults(message_row(msg))
            by_columns.setdefault(tuple(sorted(values)), []).append(values)
            done.append((send, Accepted(msg, created=True, event=event)))
        db.execute(_INSERT_EVENT, events)
        for rows in by_columns.values():  # a customer's and an agent's rows differ in columns
            db.execute(_INSERT_MESSAGE, rows)
        db.commit()
    else:
        db.rollback()  # only reads: end the transaction
    # Outcomes only now, committed: a failed commit leaves every message to the redo.
    for send, accepted in done:
        send.accepted = accepted
    for send, msg in resends:
        send.accepted = Accepted(msg, created=False)
    return True


def _check_agent_holds(chat: ChatSession, actor: Actor) -> None:
    """An agent speaks only in a conversation whose ticket they hold (no talking over the bot)."""
    if chat.owner != Owner.PERSON or chat.agent_name != actor.name:
        holder = f"{chat.agent_name} holds it" if chat.owner == Owner.PERSON else None
        abort(
            409,
            "claim this conversation's ticket (or take it over) before replying"
            + (f"; {holder}" if holder else ""),
            "not_claimed",
            details={"owner": chat.owner, "agent": chat.agent_name},
        )


def _message_meta(actor: Actor, request: str | None) -> dict:
    if actor.is_staff:
        return {"agent": actor.name}
    return {"request": request} if request else {}


def _store(db: Session, chat: ChatSession, msg: Message, attachments: list[Attachment]) -> dict:
    """Insert the message with its seq and its event (not committed yet); return the event.

    On PostgreSQL a message without files goes in one statement (`_store_at_once`) when the
    session's counter is still what the session read saw; otherwise, and on SQLite, the seq,
    the event and the message are three statements (`_log_message`)."""
    if not attachments and db.get_bind().dialect.name == "postgresql":
        event = _store_at_once(db, chat, msg)
        if event is not None:
            return event
    event = _log_message(db, chat, msg, attachments)
    if attachments:
        db.add(msg)  # the ORM links the files to the message as it inserts it
    else:
        db.execute(_INSERT_MESSAGE, message_row(msg))  # the usual case, without the ORM
    return event


def _log_message(
    db: Session, chat: ChatSession, msg: Message, attachments: list[Attachment]
) -> dict:
    """Give the message its seq and log its event in the same transaction; return the event."""
    kind = _describe(msg, next_seq(db, chat.id), attachments)
    return append_event(db, chat.id, kind, seq=msg.seq, message=message_json(msg, attachments))


def _describe(msg: Message, seq: int, attachments: list[Attachment]) -> str:
    """Set the message's seq, time and work state; return its event's type."""
    msg.seq = seq
    msg.created_at = utcnow()
    if msg.role == "user":
        # If nobody has claimed it by its deadline, the worker's sweeper re-sends the task.
        queue(msg, REPLY, msg.created_at)
    msg.attachments = attachments  # links each attachment to this message
    return "agent_message" if msg.role == "agent" else "user_message"


def _store_at_once(db: Session, chat: ChatSession, msg: Message) -> dict | None:
    """PostgreSQL: the seq bump, the event and the message in one statement; None (nothing
    written) when the session's counter has moved since `chat` was read.

    Why: each statement is a round trip to the backend, and an accept was six or seven of them
    (bench/README.md, "fewer round trips per accept"). The seq is the one after the counter
    the session read saw; the UPDATE takes it only if the counter still holds that value
    (under the row lock, re-checked after any concurrent writer commits), and the two INSERTs
    select from the UPDATE's row, so they write nothing unless it did: no gap, no double. The
    caller then takes the locking way, which waits for the counter's row and reads it."""
    seq = chat.last_seq + 1
    kind = _describe(msg, seq, [])
    event, logged = event_row(chat.id, kind, seq, message=message_json(msg, []))
    values = with_defaults(message_row(msg))
    params = {f"m_{name}": value for name, value in values.items()}
    params.update({f"e_{name}": value for name, value in logged.items()})
    params.update(sid=chat.id, prev=chat.last_seq, now=logged["created_at"])
    stored = db.execute(_accept_statement(tuple(values)), params).first()
    return event if stored is not None else None


_ACCEPT_STATEMENTS: dict[tuple[str, ...], Insert] = {}


def _accept_statement(columns: tuple[str, ...]) -> Insert:
    """`WITH bumped AS (UPDATE chat_sessions ... RETURNING), logged AS (INSERT INTO
    session_events SELECT ... FROM bumped) INSERT INTO messages SELECT ... FROM bumped`, built
    once per set of message columns (a customer's and an agent's message differ)."""
    stmt = _ACCEPT_STATEMENTS.get(columns)
    if stmt is not None:
        return stmt
    bumped = (
        update(_S)
        .where(_S.c.id == bindparam("sid"), _S.c.last_seq == bindparam("prev"))
        .values(last_seq=_S.c.last_seq + 1, updated_at=bindparam("now"))
        .returning(_S.c.id)
        .cte("bumped")
    )
    event_columns = ["session_id", "seq", "type", "payload", "created_at"]
    logged = (
        insert(_E)
        .from_select(
            event_columns,
            _typed(_E, "e_", event_columns).select_from(bumped),
            include_defaults=False,
        )
        .returning(_E.c.id)
        .cte("logged")
    )
    stmt = (
        insert(_M)
        .from_select(
            list(columns),
            _typed(_M, "m_", list(columns)).select_from(bumped),
            include_defaults=False,  # `with_defaults` gave them
        )
        .add_cte(logged)
        .returning(_M.c.id)
    )
    _ACCEPT_STATEMENTS[columns] = stmt
    return stmt


def _typed(table: Any, prefix: str, columns: list[str]) -> Any:
    """SELECT of bound values, each cast to its column's type (a parameter in a select list
    has no type of its own for PostgreSQL to convert from)."""
    return select(*[typed(table, prefix, name) for name in columns])


def _check_quota(db: Session, chat: ChatSession, size: int) -> None:
    """A conversation's files together stay within MAX_UPLOAD_MB_PER_SESSION."""
    settings = current_settings()
    used = db.scalar(
        select(func.coalesce(func.sum(Attachment.size), 0)).where(Attachment.session_id == chat.id)
    )
    quota = settings.max_upload_mb_per_session * 1024 * 1024
    if used + size > quota:
        abort(
            413,
            f"this conversation's files are limited to {settings.max_upload_mb_per_session} MB",
            "upload_quota_exceeded",
            details={"used_bytes": used, "limit_bytes": quota},
        )


def _new_attachment(
    chat: ChatSession, att_id: str, filename: str, content_type: str, size: int, sha256: str
) -> Attachment:
    att = Attachment(
        id=att_id,
        session_id=chat.id,
        filename=safe_filename(filename or "file"),
        content_type=content_type,
        size=size,
        sha256=sha256,
    )
    queue(att, ATTACHMENT)
    return att


def store_upload(db: Session, chat: ChatSession, filename: str, data: bytes) -> Attachment:
    """A file that came with a multipart message (already in memory): check size, quota and
    type, then keep the bytes in attachment storage within the message's transaction."""
    settings = current_settings()
    if len(data) > settings.max_upload_bytes:
        abort(413, f"file is larger than {settings.max_upload_mb} MB", "file_too_large")
    _check_quota(db, chat, len(data))
    try:
        content_type = sniff_content_type(data, filename or "")
    except UnsupportedFileType as exc:
        abort(415, str(exc), "file_type_not_allowed")
    att = _new_attachment(
        chat, new_id(), filename, content_type, len(data), hashlib.sha256(data).hexdigest()
    )
    storage.store_bytes(db, att, data, settings)
    db.add(att)
    return att


def accept_upload(db: Session, chat: ChatSession, received: Received) -> dict:
    """Standalone upload (POST /api/chat/upload), its bytes already streamed to storage: check
    the quota, keep the file (durable before the row names it), commit. The caller enqueues
    the parse (`jobs.send_parse`) once the 202 is on its way."""
    upload = received.upload
    try:
        _check_quota(db, chat, upload.size)
        att = _new_attachment(
            chat,
            received.attachment_id,
            received.filename,
            received.content_type,
            upload.size,
            upload.sha256,
        )
        upload.keep(db, att)
        db.add(att)
        db.commit()
    except BaseException:
        db.rollback()
        upload.discard()
        raise
    return attachment_json(att)
