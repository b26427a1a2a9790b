"""The server side of a WebSocket, lean enough to hold 10,000 idle ones in one web process.

flask-sock's server (simple_websocket) gives every socket a reader thread (a greenlet under
gevent) with its own selector and timer for keepalive pings, an Event, and the h11 handshake
state, and it accepts permessage-deflate, whose zlib state alone is tens of KB per socket. Here
a socket is its handler's greenlet and little else:

- the handler reads the socket itself (`receive`), so there is no reader thread;
- keepalive pings come from ONE thread per process (`Keepalive`) that pings every open socket
  each interval and closes (1008) the ones that did not answer the previous ping;
- the 101 response is written here (RFC 6455 section 4.2.2) and only the frame protocol of
  wsproto is kept; no extension is offered, so frames are never compressed (chat events are a
  few hundred bytes: deflate would save little and cost a zlib state per socket).

The interface is simple_websocket's (`send`, `receive`, `close`, `ConnectionClosed`), so the
socket routes read the same as before.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import select
import socket
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from flask_sock import Sock
from simple_websocket import ConnectionClosed
from wsproto.frame_protocol import CloseReason, Frame, FrameProtocol, Opcode, ParseFailed

log = logging.getLogger(__name__)

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
RECEIVE_BYTES = 4096
OPEN, LOCAL_CLOSING, CLOSED = 0, 1, 2


class NotAWebSocket(Exception):
    """The request asked for no WebSocket upgrade (or a version we do not speak)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a client's Sec-WebSocket-Key."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + GUID).digest()).decode()


def _has_token(value: str, token: str) -> bool:
    return token in (part.strip().lower() for part in value.split(","))


def text_frame(text: str) -> bytes:
    """A whole, unmasked text frame (RFC 6455 section 5.2), as a server sends it: the same
    bytes for every socket, so an event fanned out to many sockets is framed once."""
    payload = text.encode()
    n = len(payload)
    if n < 126:
        header = bytes((0x81, n))
    elif n < 65536:
        header = bytes((0x81, 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + n.to_bytes(8, "big")
    return header + payload


class LeanSocket:
    """One accepted WebSocket. `receive` must be called by one thread only (the handler's);
    `send` and `close` may come from any thread, serialised by a lock."""

    __slots__ = (
        "sock",
        "mode",
        "connected",
        "close_reason",
        "close_message",
        "max_message_size",
        "awaiting_pong",
        "_proto",
        "_state",
        "_inbox",
        "_partial",
        "_partial_len",
        "_send_lock",
        "_corked",
        "__weakref__",
    )

    def __init__(self, sock: Any, mode: str, max_message_size: int | None = None) -> None:
        self.sock = sock
        self.mode = mode
        self.connected = True
        self.close_reason: int = CloseReason.NO_STATUS_RCVD
        self.close_message: str | None = None
        self.max_message_size = max_message_size
        self.awaiting_pong = False
        # wsproto's frame protocol alone (its Connection wrapper adds an event deque per
        # socket); the closing handshake's state is ours: OPEN, then LOCAL_CLOSING once we sent
        # a close frame, CLOSED once both sides have (or the client broke the protocol).
        self._proto = FrameProtocol(False, [])
        self._state = OPEN
        self._inbox: list[str | bytes] = []
        self._partial: str | bytearray | bytes | None = None
        self._partial_len = 0
        self._send_lock = threading.Lock()
        # Frames held back while a writer drains several events (`cork`), sent in one write.
        self._corked: list[bytes] | None = None

    # -- opening ----------------------------------------------------------------------------
    @classmethod
    def accept(cls, environ: dict, max_message_size: int | None = None) -> LeanSocket:
        """Check the upgrade request, write the 101 and return the open socket."""
        if environ.get("REQUEST_METHOD") != "GET":
            raise NotAWebSocket("a WebSocket opens with GET", 405)
        if not _has_token(environ.get("HTTP_UPGRADE", ""), "websocket") or not _has_token(
            environ.get("HTTP_CONNECTION", ""), "upgrade"
        ):
            raise NotAWebSocket("this URL is a WebSocket: send Upgrade: websocket")
        if environ.get("HTTP_SEC_WEBSOCKET_VERSION", "").strip() != "13":
            raise NotAWebSocket("only WebSocket version 13 is spoken here", 426)
        key = environ.get("HTTP_SEC_WEBSOCKET_KEY", "").strip()
        try:
            if len(base64.b64decode(key, validate=True)) != 16:
                raise ValueError(key)
        except ValueError:
            raise NotAWebSocket("Sec-WebSocket-Key must be 16 bytes in base64") from None
        if "gunicorn.socket" in environ:
            sock, mode = environ["gunicorn.socket"], "gunicorn"
        elif "werkzeug.socket" in environ:
            sock, mode = environ["werkzeug.socket"], "werkzeug"
        else:
            raise RuntimeError("this server gives the application no socket to upgrade")
        sock.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept_key(key).encode() + b"\r\n\r\n"
        )
        ws = cls(sock, mode, max_message_size)
        KEEPALIVE.add(ws)
        return ws

    # -- writing ----------------------------------------------------------------------------
    def _write(self, build: Any, blocking: bool = True) -> bool:
        """Send what `build()` frames (called under the lock, so frames never interleave);
        False if the lock was busy and `blocking` is off."""
        if not self._send_lock.acquire(blocking):
            return False
        try:
            if self._state != OPEN:
                raise ConnectionClosed(self.close_reason, self.close_message)
            data = build()
            if self._corked:  # frames held back go first: the order of writes is kept
                data = b"".join(self._corked) + data
                self._corked.clear()
            self.sock.sendall(data)
        except OSError:
            self._lost()
            raise ConnectionClosed(self.close_reason, self.close_message) from None
        finally:
            self._send_lock.release()
        return True

    def send(self, data: str | bytes) -> None:
        """A text frame for `str`, a binary one for `bytes`."""
        if not self.connected:
            raise ConnectionClosed(self.close_reason, self.close_message)
        payload = data if isinstance(data, bytes) else str(data)
        self._write(lambda: self._proto.send_data(payload))

    def send_frame(self, frame: bytes) -> None:
        """Send a frame built by `text_frame` (one event framed once for all its sockets); while
        corked, it is held for `uncork`'s single write."""
        if not self.connected:
            raise ConnectionClosed(self.close_reason, self.close_message)
        with self._send_lock:
            if self._corked is not None:
                self._corked.append(frame)
                return
            self._sendall_locked(frame)

    def cork(self) -> None:
        """Hold data frames until `uncork`: an answer's stream arrives as a dozen events at
        once, and one write of all their frames is one system call (and one TCP segment)
        instead of a dozen. Pings, pongs and closes still go out at once, after what is held."""
        with self._send_lock:
            if self._corked is None:
                self._corked = []

    def uncork(self) -> None:
        """Send what `cork` held, in one write."""
        with self._send_lock:
            held, self._corked = self._corked, None
            if held and self.connected:
                self._sendall_locked(held[0] if len(held) == 1 else b"".join(held))

    def _sendall_locked(self, data: bytes) -> None:
        """Write `data` (the caller holds the send lock)."""
        if self._state != OPEN:
            raise ConnectionClosed(self.close_reason, self.close_message)
        try:
            self.sock.sendall(data)
        except OSError:
            self._lost()
            raise ConnectionClosed(self.close_reason, self.close_message) from None

    def close(self, reason: int | None = None, message: str | None = None) -> None:
        """Send a close frame (1000 unless told otherwise). The handler keeps reading until
        the client answers with its own close (closing the TCP connection at once could reset
        it before the client has read our frame); the keepalive round ends the wait for a
        client that never answers."""
        if not self.connected:
            raise ConnectionClosed(self.close_reason, self.close_message)
        self.connected = False
        code = reason or CloseReason.NORMAL_CLOSURE

        def frame() -> bytes:
            self._state = LOCAL_CLOSING
            return self._proto.close(code, message)

        try:
            self._write(frame)
        except ConnectionClosed:
            pass

    def _lost(self) -> None:
        self.connected = False
        self.close_reason = CloseReason.ABNORMAL_CLOSURE
        KEEPALIVE.discard(self)

    def _shutdown_reading(self) -> None:
        """Wake a handler blocked in `receive` (it then sees the socket closed)."""
        KEEPALIVE.discard(self)
        try:
            self.sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass

    # -- keepalive (called by the process's Keepalive thread) --------------------------------
    def keepalive(self) -> None:
        """Ping; a socket that never answered the previous ping is closed with 1008, and one
        closed by us whose client has not answered since the last round stops waiting."""
        if not self.connected:
            self._shutdown_reading()
            return
        if self.awaiting_pong:
            try:
                self.close(CloseReason.POLICY_VIOLATION, "Ping/Pong timeout")
            except ConnectionClosed:
                pass
            return
        try:
            if self._write(self._proto.ping, blocking=False):
                self.awaiting_pong = True
        except ConnectionClosed:
            self._shutdown_reading()

    # -- reading ----------------------------------------------------------------------------
    def receive(self, timeout: float | None = None) -> str | bytes | None:
        """The next message; None when `timeout` seconds pass without one."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._inbox:
            if not self.connected:
                raise ConnectionClosed(self.close_reason, self.close_message)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                    return None
            try:
                data = self.sock.recv(RECEIVE_BYTES)
            except OSError:
                data = b""
            if not data:
                if self.connected:
                    self._lost()
                raise ConnectionClosed(self.close_reason, self.close_message)
            self._take(data)
        return self._inbox.pop(0)

    def _take(self, data: bytes) -> None:
        """Feed received bytes to the frame protocol and act on what they carried."""
        out = []
        proto = self._proto
        proto.receive_bytes(data)
        try:
            for frame in proto.received_frames():
                opcode = frame.opcode
                if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                    if not self._collect(frame):
                        if self._state == OPEN:
                            out.append(
                                proto.close(CloseReason.MESSAGE_TOO_BIG, "Message is too big")
                            )
                        self._closed(CloseReason.MESSAGE_TOO_BIG)
                        break
                elif opcode is Opcode.PING:
                    if self._state == OPEN:
                        out.append(proto.pong(frame.payload))
                elif opcode is Opcode.PONG:
                    self.awaiting_pong = False
                elif opcode is Opcode.CLOSE:
                    # The client's close: answered with the same code unless we closed first.
                    code, reason = frame.payload  # type: ignore[misc]
                    if self._state == OPEN:
                        out.append(proto.close(code, reason))
                    self.close_reason, self.close_message = code, reason
                    self._closed(code)
                    break
        except ParseFailed as exc:
            # A protocol error (1002), invalid UTF-8 in a text frame (1007)...: RFC 6455 closes.
            if self._state == OPEN:
                out.append(proto.close(exc.code, str(exc)))
            self._closed(exc.code)
        if out:
            try:
                with self._send_lock:
                    self.sock.sendall(b"".join(out))
            except OSError:
                self._lost()

    def _closed(self, code: int) -> None:
        """The closing handshake is over (or the client broke the protocol): stop reading."""
        self._state = CLOSED
        if self.connected:
            self.connected = False
            if self.close_reason == CloseReason.NO_STATUS_RCVD:
                self.close_reason = code
        KEEPALIVE.discard(self)

    def _collect(self, frame: Frame) -> bool:
        """Join a fragmented message; False once it grows past max_message_size."""
        data = frame.payload
        assert isinstance(data, str | bytes | bytearray)
        self._partial_len += len(data)
        if self.max_message_size and self._partial_len > self.max_message_size:
            return False
        if self._partial is None:
            self._partial = data
        else:
            if not isinstance(self._partial, bytearray):
                first = self._partial
                self._partial = bytearray(first.encode() if isinstance(first, str) else first)
            self._partial += data.encode() if isinstance(data, str) else data
        if not frame.message_finished:
            return True
        whole = self._partial
        if isinstance(whole, bytearray):
            whole = whole.decode() if frame.opcode is Opcode.TEXT else bytes(whole)
        self._inbox.append(whole)
        self._partial, self._partial_len = None, 0
        return True


class Keepalive:
    """Pings every open socket of the process once per interval, from one thread.

    One thread for all sockets instead of a timer (and a selector) per socket. It yields every
    few hundred sockets so that a round over 10,000 never holds up chat.
    """

    def __init__(self) -> None:
        self.sockets: weakref.WeakSet[LeanSocket] = weakref.WeakSet()
        self.interval: float | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def configure(self, interval: float | None) -> None:
        self.interval = interval

    def add(self, ws: LeanSocket) -> None:
        self.sockets.add(ws)
        if self.interval and self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="ws-ping", daemon=True)
                    self._thread.start()

    def discard(self, ws: LeanSocket) -> None:
        self.sockets.discard(ws)

    def _run(self) -> None:
        while True:
            time.sleep(self.interval or 25.0)
            for i, ws in enumerate(list(self.sockets)):
                try:
                    ws.keepalive()
                except Exception:  # one socket's trouble must never stop the others' pings
                    log.exception("keepalive failed")
                if i % 200 == 199:
                    time.sleep(0)  # let chat run between batches (a greenlet switch)


KEEPALIVE = Keepalive()
_gevent: bool | None = None


def spawn(target: Callable[[], None]) -> None:
    """Run `target` in a short-lived greenlet (a raw one: no Greenlet object, no spawn-tree
    bookkeeping), or in a daemon thread when gevent is not patched in."""
    global _gevent
    if _gevent is None:
        from gevent import monkey

        _gevent = monkey.is_module_patched("threading")
    if _gevent:
        import gevent

        gevent.spawn_raw(target)
    else:
        threading.Thread(target=target, daemon=True).start()


class SocketRoutes(Sock):
    """flask-sock's extension (`@sock.route("/ws")`, `init_app`, its blueprint for routes
    declared before the app exists), handing each route a LeanSocket instead of a
    simple-websocket server: the one part of flask-sock that held three greenlets, a queue
    and a selector per idle socket. Options come from the app's SOCK_SERVER_OPTIONS
    (`ping_interval`, `max_message_size`), as in flask-sock."""

    def init_app(self, app: Flask) -> None:
        """flask-sock's registration, plus the process-wide keepalive's interval."""
        super().init_app(app)
        KEEPALIVE.configure(app.config.get("SOCK_SERVER_OPTIONS", {}).get("ping_interval"))

    def route(self, path: str, bp: Blueprint | None = None, **kwargs: Any) -> Callable:
        def decorator(handler: Callable[..., None]) -> Callable:
            @wraps(handler)
            def websocket_route(*args: Any, **view_args: Any) -> Response:
                options = current_app.config.get("SOCK_SERVER_OPTIONS", {})
                try:
                    ws = LeanSocket.accept(request.environ, options.get("max_message_size"))
                except NotAWebSocket as exc:
                    from webapp.errors import ApiError

                    raise ApiError(exc.status, str(exc), "websocket_required") from None
                try:
                    handler(ws, *args, **view_args)
                except ConnectionClosed:
                    pass
                finally:
                    KEEPALIVE.discard(ws)
                try:
                    ws.close()
                except ConnectionClosed:
                    pass
                return _Upgraded(ws.mode)

            kwargs["websocket"] = True
            if bp is not None:
                bp.route(path, **kwargs)(websocket_route)
            elif self.app is not None:
                self.app.route(path, **kwargs)(websocket_route)
            else:
                if self.bp is None:
                    self.bp = Blueprint("helpline_sockets", __name__)
                self.bp.route(path, **kwargs)(websocket_route)
            return websocket_route

        return decorator


class _Upgraded(Response):
    """What the view returns once the socket is done: nothing more may be written to it."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def __call__(self, environ: dict, start_response: Callable) -> Any:  # type: ignore[override]
        if self.mode == "gunicorn":
            raise StopIteration()  # gunicorn's sign that the app wrote the response itself
        return super().__call__(environ, start_response)


_WRITERS = threading.Lock()


class Outbox(ABC):
    """Events waiting for one socket, drained by at most one writer greenlet, which exists
    only while there is something to send: an idle socket holds no writer. Until `start`, the
    writer is held, so the route's first events (`connected`, a resync) go out first.
    Subclasses send one event in `deliver`; a closed socket ends the drain for good."""

    __slots__ = ("outbox", "writing", "finished")

    def __init__(self) -> None:
        self.outbox: list = []  # a list: an empty deque costs ~600 bytes per socket
        self.writing = True  # held until `start`
        self.finished = False  # the socket is closed: nothing more is sent

    def start(self) -> None:
        """Let the outbox drain (and keep draining whenever an event arrives)."""
        self.writing = True
        spawn(self.writer)

    def put(self, event: dict) -> None:
        """Queue an event; start a writer unless one is already draining the outbox."""
        if self.finished:
            return
        self.outbox.append(event)
        with _WRITERS:
            if self.writing:
                return
            self.writing = True
        spawn(self.writer)

    def put_now(self, event: dict) -> None:
        """Send `event` from the calling greenlet if nothing is queued ahead of it and no writer
        is running; otherwise queue it behind the others (`put`).

        For the acknowledgement: a spawned writer runs only once the hub gets the CPU back, and
        in a burst every other socket's reader runs its own accept first, so queued acks all
        left at the end of the burst. Sent here, each leaves as soon as its message is stored.
        Order holds: the writer flag is taken as a writer would take it, and whatever arrives
        meanwhile goes to a writer afterwards."""
        with _WRITERS:
            idle = not (self.writing or self.outbox or self.finished)
            if idle:
                self.writing = True
        if not idle:
            self.put(event)
            return
        self._deliver_one(event)
        with _WRITERS:
            if not self.outbox or self.finished:
                self.writing = False
                return
        spawn(self.writer)  # events queued while we sent: drain them as usual

    def finish(self) -> None:
        """The socket is gone: drop what is queued and send nothing more."""
        self.finished = True
        self.outbox.clear()

    def writer(self) -> None:
        """Drain the outbox, then end (the next event starts a new writer).

        Whatever is queued when the writer looks is sent as one batch: its frames leave in one
        write of the socket (`LeanSocket.cork`), in order."""
        while True:
            with _WRITERS:
                if not self.outbox or self.finished:
                    self.writing = False
                    return
                batch, self.outbox = self.outbox, []
            if len(batch) == 1:
                self._deliver_one(batch[0])
                continue
            self.cork()
            try:
                for event in batch:
                    if self.finished:
                        break
                    self._deliver_one(event)
            finally:
                try:
                    self.uncork()
                except ConnectionClosed:
                    self.finish()

    def cork(self) -> None:  # noqa: B027  (optional hook: most outboxes cannot cork)
        """Hold the socket's frames until `uncork` (a subclass whose socket can; none here)."""

    def uncork(self) -> None:  # noqa: B027
        """Send what `cork` held."""

    def _deliver_one(self, event: dict) -> None:
        try:
            self.deliver(event)
        except ConnectionClosed:
            self.finish()
        except Exception:
            log.exception("socket writer failed")
            self.finish()

    @abstractmethod
    def deliver(self, event: dict) -> None:
        """Send one event (may call `finish` and close the socket)."""
