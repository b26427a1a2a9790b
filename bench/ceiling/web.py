"""The skeleton's web app: sessions in memory, a socket route that acknowledges at once and sends
one reply task, and the process's pub/sub listener forwarding the worker's events to sockets.

Only the part of Helpline's contract that bench/chat_latency.py's client speaks: POST
/api/sessions (201, `session_id` and `token`), GET /health/ready, and /ws?session_id=&token=
with the `connected`, `acknowledged` (echoing `client_msg_id`), `text` and `complete` events.
Reused from Helpline as they are: the socket server (webapp/wsserver.py: LeanSocket, Outbox,
one writer greenlet per busy socket, corked batches), the listener (webapp/events.EventHub, one
PSUBSCRIBE per process) and the task sender (models/jobs.send_reply: the shared producer, its
light send options, the kombu client shared per channel).

The acknowledgement here costs nothing: nothing is stored before it. Helpline's must be durable
(the message committed first), so this ack is a lower bound, not a like-for-like copy.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Flask, jsonify, request
from simple_websocket import ConnectionClosed

from models.jobs import send_reply
from models.logs import configure_logging
from models.settings import get_settings
from webapp.events import RESYNC, EventHub
from webapp.wsserver import Outbox, SocketRoutes, text_frame

log = logging.getLogger(__name__)

app = Flask(__name__)
app.config["SOCK_SERVER_OPTIONS"] = {"ping_interval": 25, "max_message_size": 1024 * 1024}
sock = SocketRoutes(app)
_settings = get_settings()
configure_logging(_settings.log_level, _settings.log_format)

# session id -> token; each web process knows the sessions it created, so a client must open its
# socket on the process it created the session on (chat_latency's client does).
SESSIONS: dict[str, str] = {}
_hub: EventHub | None = None
_hub_lock = threading.Lock()


def hub() -> EventHub:
    """This process's listener (made after the fork, on first use)."""
    global _hub
    with _hub_lock:
        if _hub is None:
            prefix = _settings.event_channel_prefix
            _hub = EventHub(_settings.redis_url, f"{prefix}:session:*")
        _hub.start()
        return _hub


def now() -> str:
    """An event's timestamp, as Helpline writes it."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class Connection(Outbox):
    """One socket: the hub pushes into the outbox, a writer greenlet drains it."""

    __slots__ = ("ws", "session_id", "seq")

    def __init__(self, ws: Any, session_id: str) -> None:
        super().__init__()
        self.ws = ws
        self.session_id = session_id
        self.seq = 0

    def push(self, event: dict) -> None:
        if event is not RESYNC:  # nothing is stored, so there is nothing to re-read
            self.put(event)

    def cork(self) -> None:
        self.ws.cork()

    def uncork(self) -> None:
        self.ws.uncork()

    def deliver(self, event: dict) -> None:
        self.ws.send_frame(text_frame(json.dumps(event)))

    def on_message(self, data: dict) -> None:
        """Acknowledge from this greenlet (as Helpline's `put_now` does), then send the task."""
        self.seq += 1
        message_id = f"{self.session_id}.{uuid.uuid4().hex[:16]}"
        self.put_now(
            {
                "type": "acknowledged",
                "session_id": self.session_id,
                "timestamp": now(),
                "message_id": message_id,
                "client_msg_id": data.get("client_msg_id"),
                "seq": self.seq,
                "duplicate": False,
            }
        )
        send_reply(message_id)


@app.get("/health/ready")
def ready() -> Any:
    return jsonify(status="ready", hub=hub().connected)


@app.post("/api/sessions")
def new_session() -> Any:
    session_id, token = uuid.uuid4().hex, uuid.uuid4().hex
    SESSIONS[session_id] = token
    return jsonify(session_id=session_id, token=token, status="active"), 201


@sock.route("/ws")
def websocket(ws: Any) -> None:
    session_id = request.args.get("session_id", "")
    if SESSIONS.get(session_id) != request.args.get("token") or not session_id:
        ws.send(json.dumps({"type": "error", "code": "unknown_session"}))
        ws.close(reason=4004, message="unknown session")
        return
    conn = Connection(ws, session_id)
    listener = hub()
    conn.put(
        {
            "type": "connected",
            "session_id": session_id,
            "timestamp": now(),
            "client_id": uuid.uuid4().hex[:12],
            "last_seq": 0,
        }
    )
    listener.add(session_id, conn)
    listener.wait_connected(2.0)
    conn.start()
    try:
        while True:
            raw = ws.receive()
            if raw is None:
                continue
            try:
                data = json.loads(raw)
                if isinstance(data, dict) and data.get("type") == "message":
                    conn.on_message(data)
            except ConnectionClosed:
                raise
            except Exception:  # a bad frame must not end the socket (nor the measurement)
                log.exception("skeleton frame failed")
    except ConnectionClosed:
        pass
    finally:
        listener.remove(session_id, conn)
        conn.finish()
