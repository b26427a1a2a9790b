"""A socket's outbox: `put_now` sends at once when nothing is ahead, and never overtakes."""

from __future__ import annotations

import socket
import threading

from webapp.wsserver import LeanSocket, Outbox, text_frame


class Recorded(Outbox):
    """An outbox whose socket is a list; `gate`, when set, holds each delivery until opened."""

    __slots__ = ("sent", "gate", "entered")

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def deliver(self, event: dict) -> None:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        self.sent.append(event["name"])


def test_put_now_sends_from_the_caller_when_the_outbox_is_idle():
    box = Recorded()
    box.start()
    _wait_idle(box)
    box.put_now({"name": "ack"})
    assert box.sent == ["ack"]  # already on the socket when put_now returns
    assert box.writing is False  # and no writer is left holding the outbox


def test_put_now_waits_behind_a_held_outbox():
    box = Recorded()  # not started: the route's first events must go out first
    box.put({"name": "connected"})
    box.put_now({"name": "ack"})
    assert box.sent == []
    box.start()
    _wait_for(lambda: box.sent == ["connected", "ack"])


def _started_and_held() -> Recorded:
    """A started, idle outbox whose next delivery will wait for `gate`."""
    box = Recorded()
    box.start()
    _wait_idle(box)
    box.gate = threading.Event()
    return box


def test_put_now_queues_behind_a_running_writer():
    box = _started_and_held()
    box.put({"name": "reply"})  # a writer starts and is held inside its delivery
    assert box.entered.wait(10)
    box.put_now({"name": "ack"})
    assert box.sent == []  # not sent past the writer
    box.gate.set()
    _wait_for(lambda: box.sent == ["reply", "ack"])


def test_events_put_while_put_now_sends_get_a_writer():
    box = _started_and_held()
    caller = threading.Thread(target=box.put_now, args=({"name": "ack"},))
    caller.start()
    assert box.entered.wait(10)  # put_now is inside its delivery
    box.put({"name": "broadcast"})  # queued: put_now holds the writer flag
    box.gate.set()
    caller.join(10)
    _wait_for(lambda: box.sent == ["ack", "broadcast"])


def _wait_idle(box: Outbox) -> None:
    _wait_for(lambda: box.writing is False)


def _wait_for(check, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    done = threading.Event()
    deadline = 0.0
    while not check():
        deadline += 0.01
        assert deadline < timeout, "timed out"
        done.wait(0.01)


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of each unmasked server frame in `data` (payloads under 126 bytes)."""
    out = []
    while data:
        opcode, length = data[0] & 0x0F, data[1] & 0x7F
        assert length < 126
        out.append((opcode, data[2 : 2 + length]))
        data = data[2 + length :]
    return out


def _pending(sock: socket.socket) -> bytes:
    sock.setblocking(False)
    try:
        return sock.recv(65536)
    except BlockingIOError:
        return b""
    finally:
        sock.setblocking(True)


def test_a_corked_socket_writes_held_frames_at_once_in_order_before_a_close():
    ours, theirs = socket.socketpair()
    try:
        ws = LeanSocket(ours, "gunicorn")
        ws.cork()
        for n in range(3):
            ws.send_frame(text_frame(f"event {n}"))
        assert _pending(theirs) == b""  # held
        ws.uncork()
        assert _frames(_pending(theirs)) == [(1, f"event {n}".encode()) for n in range(3)]
        # A close while corked: what is held goes first, then the close frame.
        ws.cork()
        ws.send_frame(text_frame("last words"))
        ws.close(4009, "session ended")
        ws.uncork()  # nothing left to send, and no error
        sent = _frames(_pending(theirs))
        assert sent[0] == (1, b"last words") and sent[1][0] == 8 and len(sent) == 2
    finally:
        ours.close()
        theirs.close()
