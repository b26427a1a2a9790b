"""The socket route: accept, validate (then explain any refusal), replay, go live.

Each connection has an outbox drained by one writer at a time, so the shared pub/sub listener
never blocks on a slow client, and the writer alone decides what a client has seen: persisted
events leave in `seq` order with no gap and no duplicate. The writer is a short-lived greenlet
started when the outbox gets an event and gone once it is empty: an idle socket holds no writer
(10,000 idle sockets per web process is the target; see bench/README.md).
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from typing import Any

from flask import request
from simple_websocket import ConnectionClosed

from models.chat import Message
from models.db import new_session
from models.events import envelope, events_after, publish
from models.logs import request_id_var, session_id_var
from models.textcheck import (
    MAX_INT,
    find_problems,
    finite_float,
    reject_constant,
    text_problem,
)
from webapp.auth import Actor, authorize, check_origin
from webapp.chat import (
    Accepted,
    SocketSend,
    accept_message,
    announce,
    chat_for_message,
    enqueue_all,
    store_together,
)
from webapp.config import current_settings
from webapp.errors import ApiError, error_event
from webapp.events import GOING_AWAY, GOING_AWAY_CODE, RESYNC, get_hub
from webapp.extensions import sock
from webapp.limits import client_ip
from webapp.metrics import socket_closed, socket_opened
from webapp.wsserver import Outbox, text_frame

log = logging.getLogger(__name__)

# The process's batcher of socket accepts (SOCKET_ACCEPTS_AT_ONCE wide), made on first use so
# each forked web process has its own.
_BATCHER: AcceptBatcher | None = None


class _Waiting:
    """One socket message in the batcher's queue, and its reader waiting for it."""

    __slots__ = ("conn", "send", "woken", "leads", "done")

    def __init__(self, conn: Connection, send: SocketSend) -> None:
        self.conn = conn
        self.send = send
        self.woken = threading.Event()  # set when it is this one's turn to lead, or it is done
        self.leads = False
        self.done = False


class AcceptBatcher:
    """Group commit of socket accepts: the socket messages that arrive together in one web
    process are stored in one transaction and acknowledged right after its commit.

    Natural batching, no timer: a message that finds nobody storing leads at once (alone, so
    at low load nothing changes: one message, one transaction, as before); the messages that
    arrive while a transaction is in flight wait in line (yielding, under gevent; blocking
    their thread, with plain threads), and when it has committed the first of them leads the
    next batch: everything queued by then, up to `limit`. The leader stores the batch
    (`store_together`), writes every acknowledgement, hands the lead on, broadcasts the
    batch's events in one Redis pipeline, lets the batch's readers go, and publishes the
    batch's reply tasks together (`enqueue_all`: one more round trip, not one per message).

    Why: in a burst (every session's first message in the same instant) each message was its
    own transaction behind a gate of four, and the last one waited for all the others' commits
    (bench/README.md, "Session 7: group commit of socket accepts"). At most one transaction
    of socket accepts runs per process, so the burst needs one pooled connection."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()  # held for a few list operations only, never across I/O
        self._queue: list[_Waiting] = []
        self._busy = False  # a leader is storing (or about to)

    def accept(self, conn: Connection, send: SocketSend) -> None:
        """Store `send` with whatever else is waiting; returns once it is stored (or refused:
        `send.accepted` / `send.error`) and acknowledged, and its broadcast has gone out. Its
        reply task is sent by the batch's leader (after the broadcast), not by the caller."""
        me = _Waiting(conn, send)
        with self._lock:
            self._queue.append(me)
            me.leads = not self._busy
            self._busy = True
        if not me.leads:
            try:
                me.woken.wait()
            except BaseException:  # killed while waiting: never strand the line behind us
                self._leave(me)
                raise
            if me.done:
                return
        self._lead(me)

    def _lead(self, me: _Waiting) -> None:
        with self._lock:
            batch = self._queue[: self.limit]
            del self._queue[: self.limit]
        assert batch and batch[0] is me, "a leader stores its own message first"
        handed = False
        stored: list[Accepted] = []
        try:
            db = new_session()
            try:
                store_together(db, [w.send for w in batch])
            except Exception:
                log.exception("socket messages could not be stored")
                for w in batch:
                    if w.send.accepted is None and w.send.error is None:
                        w.send.error = ApiError(
                            500, "this frame could not be handled; try again", "server_error"
                        )
            finally:
                db.close()
            # Committed: acknowledge every message before any broadcast of the batch, and
            # before the next batch can publish anything.
            for w in batch:
                if w.send.accepted is not None:
                    w.conn._acknowledge(w.send.accepted.message, w.send.accepted.created)
            self._hand_on()
            handed = True
            stored = [w.send.accepted for w in batch if w.send.accepted is not None]
            announce(stored)
        finally:
            if not handed:
                self._hand_on()
            for w in batch:
                w.done = True
                if w is not me:
                    w.woken.set()
        # After the broadcast (no reply may stream ahead of the message it answers) and after
        # the readers are let go (their refusals need not wait for it): every new customer
        # message's reply task, in one publish. A lost one is re-sent by the sweeper.
        enqueue_all(stored)

    def _hand_on(self) -> None:
        """The next in line leads (whatever has queued by the time it runs is its batch)."""
        with self._lock:
            nxt = self._queue[0] if self._queue else None
            if nxt is None:
                self._busy = False
            else:
                nxt.leads = True
        if nxt is not None:
            nxt.woken.set()

    def _leave(self, me: _Waiting) -> None:
        """A waiting reader was killed: take its message out of the line, passing the lead on
        if it had just been given it."""
        with self._lock:
            if me.done:
                return
            if me in self._queue:
                self._queue.remove(me)
            leads = me.leads
        if leads:
            self._hand_on()


def accept_batcher(limit: int) -> AcceptBatcher:
    """The process's batcher for socket accepts, storing up to `limit` messages at once."""
    global _BATCHER
    if _BATCHER is None or _BATCHER.limit != limit:
        _BATCHER = AcceptBatcher(limit)
    return _BATCHER


# HTTP-style status of a refusal → WebSocket close code (documented in the README).
CLOSE_CODES = {400: 4001, 401: 4003, 403: 4003, 404: 4004, 409: 4009, 429: 4029}
# Guards every connection's "a writer is running" flag (held for a few instructions only).
# The hub hands one event dict to every socket of a session: serialise and frame it once.
# Keyed by id() with the dict itself kept alive in the entry, so an id is never reused while
# it is cached; the oldest entries go first.
_FRAMES: dict[int, tuple[dict, bytes]] = {}
_FRAMES_KEPT = 256


def framed(event: dict) -> bytes:
    """The text frame of an event, built once per event object."""
    hit = _FRAMES.get(id(event))
    if hit is not None and hit[0] is event:
        return hit[1]
    frame = text_frame(json.dumps(event))
    if len(_FRAMES) >= _FRAMES_KEPT:
        try:
            del _FRAMES[next(iter(_FRAMES))]
        except (StopIteration, KeyError, RuntimeError):  # another thread trimmed it first
            pass
    _FRAMES[id(event)] = (event, frame)
    return frame


# A typing frame's flag; `isTyping` is kept for the original client (customer-support-agent).
TYPING_KEYS = ("is_typing", "isTyping")
# A session that ends or is deleted closes its sockets after the event that says so.
ENDING = {"ended": (4009, "session ended"), "deleted": (4004, "session deleted")}
GOING_AWAY_MESSAGE = "server restarting: reconnect with after=<last seq>"


class Connection(Outbox):
    """One client socket: reader loop in the handler, a writer greenlet only while there is
    something to send (`Outbox`)."""

    __slots__ = ("ws", "session_id", "actor", "client_id", "last_seq", "settings")

    def __init__(self, ws: Any, session_id: str, actor: Actor, last_seq: int) -> None:
        super().__init__()  # the writer is held until the route has queued `connected` and
        # the resync that follows the subscription
        self.ws = ws
        self.session_id = session_id
        self.actor = actor
        self.client_id = uuid.uuid4().hex[:12]
        self.last_seq = last_seq
        self.settings = current_settings()

    # -- called by the hub and the reader; never blocks ----------------------------------
    def push(self, event: dict) -> None:
        if event.get("type") == "user_typing":
            if event.get("client_id") == self.client_id:
                return  # a typist never hears its own typing
            if event.get("is_typing") is True:
                # Kept for the original client, which shows "typing" for 3 s on any `typing`
                # event whatever it says: so only a start goes out under that name.
                self.put(event)
                self.put({**event, "type": "typing"})
                return
        self.put(event)

    def send_error(
        self, code: str, message: str, details: Any = None, client_msg_id: str | None = None
    ) -> None:
        """An `error` event; a refused message's `client_msg_id` lets the client mark it."""
        extra = {} if client_msg_id is None else {"client_msg_id": client_msg_id}
        self.put(error_event(self.session_id, code, message, details, **extra))

    # -- writer ---------------------------------------------------------------------------
    def cork(self) -> None:
        self.ws.cork()

    def uncork(self) -> None:
        self.ws.uncork()

    def _send(self, event: dict) -> None:
        self.ws.send_frame(framed(event))

    def _fill(self, upto: int | None) -> None:
        """Send persisted events after last_seq (up to `upto`) straight from the database."""
        db = new_session()
        try:
            missed = events_after(db, self.session_id, self.last_seq, upto)
        finally:
            db.close()
        for event in missed:
            self._send(event)
            self.last_seq = event["seq"]

    def _deliver(self, event: dict) -> None:
        if event is RESYNC:
            self._fill(None)
            return
        seq = event.get("_covers_seq", event.get("seq"))
        if seq is None:
            self._send(event)
            return
        if "_covers_seq" in event:  # our own acknowledgement stands in for user_message
            if seq > self.last_seq + 1:
                self._fill(seq - 1)
            self._send({k: v for k, v in event.items() if k != "_covers_seq"})
            self.last_seq = max(self.last_seq, seq)
            return
        if seq <= self.last_seq:
            return
        if seq > self.last_seq + 1:
            self._fill(seq - 1)
        self._send(event)
        self.last_seq = seq

    def deliver(self, event: dict) -> None:
        """Send one event in order; the end of the session or of the process closes the socket
        after it, with the code that says why (as a refusal at connect would)."""
        if event is GOING_AWAY:
            self.finish()
            self.ws.close(reason=GOING_AWAY_CODE, message=GOING_AWAY_MESSAGE)
            return
        self._deliver(event)
        if event.get("type") == "session_status" and event.get("status") in ENDING:
            code, why = ENDING[event["status"]]
            self.finish()
            self.ws.close(reason=code, message=why)

    # -- reader ---------------------------------------------------------------------------
    def handle(self, raw: str | bytes) -> None:
        if isinstance(raw, bytes):
            return self.send_error("binary_not_supported", "send JSON text frames")
        if len(raw.encode()) > self.settings.max_ws_frame_bytes:
            return self.send_error(
                "frame_too_large", f"frames are limited to {self.settings.max_ws_frame_bytes} bytes"
            )
        try:
            data = json.loads(raw, parse_constant=reject_constant, parse_float=finite_float)
        except (ValueError, RecursionError):
            return self.send_error("invalid_json", "the frame is not valid (finite, shallow) JSON")
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            return self.send_error("invalid_event", "an event is a JSON object with a 'type'")
        problems = find_problems(data)
        if problems:
            raw_id = data.get("client_msg_id")
            echo = raw_id if isinstance(raw_id, str) and not text_problem(raw_id) else None
            safe = {k.encode("utf-8", "replace").decode(): v for k, v in problems.items()}
            return self.send_error(
                "invalid_text", "the frame holds text we cannot store", safe, echo
            )
        kind = data["type"]
        if kind == "message":
            return self.on_message(data)
        if kind == "handoff":
            if self.actor.is_staff:
                return self.send_error("invalid_event", "agents take over with the ticket API")
            return self.on_message(data, request="person")
        if kind == "typing":
            return self.on_typing(data)
        if kind == "ping":
            ping_id = data.get("id")
            if not isinstance(ping_id, str | int | float | None) or isinstance(ping_id, bool):
                ping_id = None
            return self.put(envelope("pong", self.session_id, id=ping_id))
        return self.send_error("unknown_type", f"unknown event type {kind[:40]!r}")

    def on_typing(self, data: dict) -> None:
        """Tell the others: `is_typing` (or `isTyping`, the original client's spelling) must be
        true or false; a frame without one says nothing we could pass on, so it is an error
        (never read as typing)."""
        given = [data[key] for key in TYPING_KEYS if key in data]
        if not given or not all(isinstance(v, bool) for v in given) or len(set(given)) > 1:
            return self.send_error(
                "invalid_fields",
                "a typing event needs is_typing: true or false",
                {"is_typing": ["must be true or false (isTyping is accepted too)"]},
            )
        publish(
            envelope(
                "user_typing",
                self.session_id,
                client_id=self.client_id,
                role="agent" if self.actor.is_staff else "user",
                name=self.actor.name if self.actor.is_staff else None,
                is_typing=given[0],
            )
        )
        return None

    def _acknowledge(self, msg: Message, created: bool) -> None:
        """Queued before the broadcast copy of the message, so the sender hears this first."""
        self.put_now(
            envelope(
                "acknowledged",
                self.session_id,
                message_id=msg.id,
                client_msg_id=msg.client_msg_id,
                seq=msg.seq,
                duplicate=not created,
                _covers_seq=msg.seq,
            )
        )

    def on_message(self, data: dict, request: str | None = None) -> None:
        raw_id = data.get("client_msg_id")
        if raw_id is not None and (not isinstance(raw_id, str | int) or isinstance(raw_id, bool)):
            return self.send_error("invalid_fields", "client_msg_id must be a string")
        client_msg_id = str(raw_id)[:128] if raw_id is not None else None
        ids = data.get("attachment_ids") or []
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            return self.send_error(
                "invalid_fields",
                "attachment_ids must be a list of ids",
                client_msg_id=client_msg_id,
            )
        if ids:  # messages with files keep the one-message path (its own transaction)
            return self._accept_alone(data, client_msg_id, ids, request)
        send = SocketSend(
            self.session_id, self.actor, data.get("content"), client_msg_id, request, client_ip()
        )
        accept_batcher(self.settings.socket_accepts_at_once).accept(self, send)
        if send.error is not None:
            err = send.error
            return self.send_error(err.code, err.message, err.details, client_msg_id)
        return None  # acknowledged, broadcast and enqueued by the batch's leader

    def _accept_alone(
        self, data: dict, client_msg_id: str | None, ids: list[str], request: str | None
    ) -> None:
        """A message with attachment_ids: read, store, acknowledge, announce, enqueue."""
        db = new_session()
        try:
            # The session and the duplicate check in one statement (chat_for_message).
            chat, duplicate_of = chat_for_message(db, self.session_id, client_msg_id)
            if chat is None:
                return self.send_error(
                    "unknown_session",
                    "this session no longer exists",
                    client_msg_id=client_msg_id,
                )
            accept_message(
                db,
                chat,
                self.actor,
                data.get("content"),
                client_msg_id,
                ids,
                on_stored=self._acknowledge,
                request=request,
                duplicate_of=duplicate_of,
            )
        except ApiError as err:
            return self.send_error(err.code, err.message, err.details, client_msg_id)
        finally:
            db.close()
        return None


def refuse(ws: Any, err: ApiError, session_id: str | None = None) -> None:
    """Explain, then close with the documented code (the socket was accepted first)."""
    session_id = session_id or request.args.get("session_id") or ""
    event = error_event(session_id, err.code, err.message, err.details)
    code = CLOSE_CODES.get(err.status, 1011)
    try:
        ws.send(json.dumps(event))
        ws.close(reason=code, message=err.message[:120])
    except ConnectionClosed:
        pass


def _parse_after(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "after must be a whole number", "malformed_after") from None
    if not 0 <= value <= MAX_INT:
        raise ApiError(400, f"after must be between 0 and {MAX_INT}", "malformed_after")
    return value


def _admit(ws: Any) -> tuple[str, int, int | None, Actor] | None:
    """Check origin, `after` and credentials; (session id, its last seq, after, actor), or
    None once a refusal has been sent. A function of its own so that the ORM objects it reads
    (the session row, the database session) are gone before the socket goes live: an idle
    socket keeps only what it needs."""
    db = new_session()
    try:
        check_origin()
        after = _parse_after(request.args.get("after"))
        chat, actor = authorize(
            db,
            request.args.get("session_id"),
            request.args.get("token"),
            request.headers.get("X-API-Key"),  # staff keys only in headers, never in URLs
        )
        if chat.status == "ended":
            raise ApiError(409, "this session has ended", "session_not_active")
        return chat.id, chat.last_seq, after, actor
    except ApiError as err:
        refuse(ws, err)
    except Exception:  # database down, say: explain and close 1011, never a raw HTTP 500
        log.exception("socket setup failed")
        refuse(ws, ApiError(500, "the server could not open this conversation"))
    finally:
        db.close()
    return None


@sock.route("/ws")
def websocket(ws: Any) -> None:
    """GET /ws?session_id=&token=&after= (see the README for the event table)."""
    request_id_var.set(uuid.uuid4().hex[:16])
    admitted = _admit(ws)
    if admitted is None:
        return None
    session_id, current, after, actor = admitted
    del admitted
    session_id_var.set(session_id)
    start = current if after is None else min(after, current)
    conn = Connection(ws, session_id, actor, start)
    hub = get_hub()
    if hub.closing:  # accepted while the process stops: send it to another web process
        ws.close(reason=GOING_AWAY_CODE, message=GOING_AWAY_MESSAGE)
        return None
    limit = current_settings().max_sockets_per_session
    if hub.count(session_id) >= limit:
        return refuse(
            ws, ApiError(429, f"at most {limit} sockets per conversation", "too_many_sockets")
        )
    conn.put(envelope("connected", session_id, client_id=conn.client_id, last_seq=current))
    hub.add(session_id, conn)
    socket_opened()
    hub.wait_connected(2.0)  # the first socket of a process may arrive before the subscription
    conn.put(RESYNC)  # anything committed between our read and the subscription
    conn.start()
    try:
        while True:
            raw = ws.receive()
            if raw is None:
                continue
            try:
                conn.handle(raw)
            except ConnectionClosed:
                raise
            except Exception:  # one bad frame must never break the socket for the next
                log.exception("socket frame failed")
                conn.send_error("server_error", "this frame could not be handled; try again")
    except ConnectionClosed:
        pass
    finally:
        hub.remove(session_id, conn)
        socket_closed()
        conn.finish()
    return None
