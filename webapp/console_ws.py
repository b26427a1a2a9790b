"""The agent console's queue socket: `/ws/console?token=stf.…` streams every ticket change.

Ticket changes ride on the staff feed (a pseudo-session channel, so each web process keeps
its single pub/sub subscription). The database is the record: after connecting, and whenever
the feed may have missed something (a Redis gap), the console is told to `resync` and
re-reads `GET /api/tickets`. While the socket is open its agent counts as online.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from flask import request
from simple_websocket import ConnectionClosed

from models import presence
from models.events import envelope
from models.ownership import STAFF_FEED
from webapp.auth import STAFF_TOKEN_PREFIX, Actor, check_origin, staff_from_token
from webapp.errors import ApiError
from webapp.events import GOING_AWAY, GOING_AWAY_CODE, RESYNC, get_hub
from webapp.extensions import sock
from webapp.metrics import socket_closed, socket_opened
from webapp.ws import refuse
from webapp.wsserver import Outbox

log = logging.getLogger(__name__)

CHECK_IN_EVERY = presence.TTL / 3


class ConsoleFeed(Outbox):
    """One console socket: the hub pushes, a writer greenlet sends while there is something
    to send (`Outbox`, as for customers' sockets)."""

    __slots__ = ("ws", "actor", "client_id")

    def __init__(self, ws: Any, actor: Actor) -> None:
        super().__init__()  # held until `start`: `connected` is the first event out
        self.ws = ws
        self.actor = actor
        self.client_id = uuid.uuid4().hex[:12]

    def push(self, event: dict) -> None:
        """The hub's entry point: queue it."""
        self.put(event)

    def deliver(self, event: dict) -> None:
        if event is GOING_AWAY:
            self.finish()
            try:
                self.ws.close(reason=GOING_AWAY_CODE, message="server restarting")
            except Exception:  # already closed by the client: nothing left to tell
                pass
            return
        if event is RESYNC:
            event = envelope("resync", STAFF_FEED)
        self.ws.send(json.dumps(event))


def _authenticate() -> Actor:
    check_origin()
    token = request.args.get("token") or ""
    if not token.startswith(STAFF_TOKEN_PREFIX):
        raise ApiError(401, "a staff socket token is required (POST /api/console/token)")
    return staff_from_token(token)


@sock.route("/ws/console")
def console_socket(ws: Any) -> None:
    """Ticket changes for the agent console; `ping` is answered with `pong`."""
    try:
        actor = _authenticate()
    except ApiError as err:
        return refuse(ws, err, STAFF_FEED)
    feed = ConsoleFeed(ws, actor)
    hub = get_hub()
    hub.add(STAFF_FEED, feed)
    socket_opened()
    hub.wait_connected(2.0)
    presence.check_in(feed.client_id, actor.name or "Support")
    feed.push(
        envelope("connected", STAFF_FEED, client_id=feed.client_id, agent={"name": actor.name})
    )
    feed.start()
    try:
        _read(ws, feed)
    except ConnectionClosed:
        pass
    finally:
        hub.remove(STAFF_FEED, feed)
        socket_closed()
        presence.check_out(feed.client_id, actor.name or "Support")
        feed.finish()


def _read(ws: Any, feed: ConsoleFeed) -> None:
    """Answer pings and keep this agent's presence fresh while the socket stays open."""
    while True:
        raw = ws.receive(timeout=CHECK_IN_EVERY)
        presence.check_in(feed.client_id, feed.actor.name or "Support")
        if raw is None:
            continue
        try:
            data = json.loads(raw)
        except (ValueError, TypeError):
            data = None
        if isinstance(data, dict) and data.get("type") == "ping":
            feed.push(envelope("pong", STAFF_FEED, id=data.get("id")))
