"""Messages: post (JSON or multipart, optional `?wait=`), and history (offset or `after=<seq>`)."""

from __future__ import annotations

import time
import uuid

from flask import Response, request
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from models.base import utcnow
from models.chat import Message
from models.db import session_scope
from models.schemas import (
    ChatResponse,
    FeedbackIn,
    HistoryQuery,
    MessageAccepted,
    MessageFeedbackOut,
    MessageIn,
    MessageList,
)
from webapp.api import CUSTOMER, CUSTOMER_OR_STAFF, dumped, errors
from webapp.auth import authorize_request
from webapp.chat import Accepted, accept_message
from webapp.config import current_settings
from webapp.db import get_db
from webapp.errors import abort
from webapp.events import Waiter, get_hub

blp = Blueprint(
    "messages", __name__, url_prefix="/api/chat/sessions", description="Messages of a session"
)

_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": MessageIn},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "message": {"type": "string"},
                        "client_msg_id": {"type": "string"},
                        "attachments[]": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                        },
                    },
                    "required": ["message"],
                }
            },
        },
    },
    "parameters": [
        {
            "in": "query",
            "name": "wait",
            "schema": {"type": "number", "minimum": 0, "maximum": 30},
            "description": "seconds to wait for the reply; 200 with it if ready, else 202",
        }
    ],
}


def _read_body() -> tuple[dict, list[tuple[str, bytes]]]:
    """JSON or multipart into (fields, uploaded files)."""
    if request.mimetype == "multipart/form-data":
        fields = {
            "message": request.form.get("message"),
            "client_msg_id": request.form.get("client_msg_id") or None,
            "attachment_ids": request.form.getlist("attachment_ids"),
        }
        files = request.files.getlist("attachments[]") + request.files.getlist("attachments")
        return MessageIn().load(fields), [(f.filename or "file", f.read()) for f in files]
    body = request.get_json(silent=True)
    if body is None:
        if request.mimetype != "application/json" and request.data:
            abort(415, "send application/json or multipart/form-data", "unsupported_media_type")
        abort(400, "the request body is not valid JSON", "invalid_json")
    if not isinstance(body, dict):
        abort(400, "the request body must be a JSON object", "invalid_json")
    return MessageIn().load(body), []


def _wait_seconds() -> float | None:
    raw = request.args.get("wait")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        abort(422, "wait must be a number of seconds", details={"wait": ["Not a number."]})
    limit = current_settings().wait_max_seconds
    if not 0 <= value <= limit:
        abort(422, f"wait must be between 0 and {limit}", details={"wait": ["Out of range."]})
    return value


def _outcome(message_id: str) -> Message | None:
    """The stored reply, or the message itself once it is closed without one (handed to a
    person, or a person owns the conversation): either way there is nothing more to wait for.

    Each look borrows a connection for one query only: a waiting request must never hold a
    pooled connection (120 waiters would starve every other request of the process)."""
    with session_scope() as db:
        # The message first: once it reads closed, its reply (committed with or before the
        # close) is visible to the next query. The other order misses a reply committed
        # between the two reads and returned the bare message (an empty answer).
        msg = db.get(Message, message_id)
        closed = msg is not None and msg.status in ("done", "failed")
        reply = db.scalar(select(Message).where(Message.reply_to_id == message_id))
        if reply is not None:
            return reply
        return msg if closed else None


def wait_for_reply(session_id: str, message_id: str, seconds: float) -> Message | None:
    """Subscribe, then look, then sleep until the reply's event or the deadline."""
    hub = get_hub()
    hub.wait_connected(min(seconds, 2.0))
    waiter = Waiter(message_id)
    hub.add(session_id, waiter)
    try:
        deadline = time.monotonic() + seconds
        while True:
            reply = _outcome(message_id)
            if reply is not None:
                return reply
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            # Wake on the event; re-check the database at least every second in case
            # Redis dropped the publish (the database is the record).
            waiter.done.wait(min(left, 1.0))
            waiter.done.clear()
    finally:
        hub.remove(session_id, waiter)


@blp.route("/<session_id>/messages")
class Messages(MethodView):
    @blp.doc(**_BODY_DOC)
    @blp.response(202, MessageAccepted)
    @blp.alt_response(200, schema=ChatResponse, description="the reply, with ?wait=", success=True)
    @blp.doc(**CUSTOMER_OR_STAFF)
    @errors(
        blp,
        400,
        401,
        403,
        404,
        (409, "the session ended, or staff not holding its ticket (`not_claimed`)"),
        413,
        415,
        422,
        429,
    )
    def post(self, session_id: str) -> Accepted | Response:
        """Send a message; stored and queued before this returns."""
        db = get_db()
        chat, actor = authorize_request(db, session_id)
        wait = _wait_seconds()
        fields, files = _read_body()
        result = accept_message(
            db,
            chat,
            actor,
            fields["message"],
            fields.get("client_msg_id"),
            fields.get("attachment_ids"),
            files,
        )
        msg = result.message
        if wait and msg.role == "user":
            db.close()  # give the request's connection back before waiting
            reply = wait_for_reply(chat.id, msg.id, wait)
            if reply is not None:
                return dumped(ChatResponse(), reply, 200)
        return result

    @blp.arguments(HistoryQuery, location="query")
    @blp.response(200, MessageList)
    @blp.doc(**CUSTOMER_OR_STAFF)
    @errors(blp, 400, 401, 403, 404, 422)
    def get(self, args: dict, session_id: str) -> dict:
        """History in seq order: a page (`limit`, `offset`) or everything after a seq."""
        db = get_db()
        chat, _ = authorize_request(db, session_id)
        stmt = select(Message).where(Message.session_id == chat.id)
        if "after" in args:
            stmt = stmt.where(Message.seq > args["after"])
        total = db.scalar(select(func.count()).select_from(stmt.subquery()))
        rows = db.scalars(
            stmt.options(selectinload(Message.attachments))
            .order_by(Message.seq)
            .limit(args["limit"])
            .offset(args["offset"])
        ).all()
        return {"messages": rows, "total": total, "session_id": chat.id}


@blp.route("/<session_id>/messages/<message_id>/feedback", methods=["POST"])
@blp.arguments(FeedbackIn)
@blp.response(200, MessageFeedbackOut)
@blp.doc(**CUSTOMER)
@errors(
    blp,
    (400, "malformed JSON, or a session or message id that is not a UUID"),
    401,
    (403, "another session's token, or staff (only the customer rates answers)"),
    (404, "unknown session, or no such message in it"),
    (409, "the message is not a bot answer (`not_a_bot_answer`)"),
    422,
)
def feedback(body: dict, session_id: str, message_id: str) -> dict:
    """Thumbs up or down on a bot answer, with an optional reason; a new rating replaces the
    earlier one, so the customer can change their mind."""
    db = get_db()
    chat, actor = authorize_request(db, session_id)
    if actor.is_staff:
        abort(403, "only the customer rates an answer", "customer_only")
    try:
        message_id = str(uuid.UUID(message_id))
    except ValueError:
        abort(400, f"malformed message id {message_id[:64]!r}", "malformed_message_id")
    msg = db.get(Message, message_id)
    if msg is None or msg.session_id != chat.id:
        abort(404, "no such message in this session", "unknown_message")
    if msg.role != "assistant":
        abort(409, "only the bot's answers can be rated", "not_a_bot_answer")
    msg.feedback_rating = body["rating"]
    msg.feedback_reason = (body.get("reason") or "").strip() or None
    msg.feedback_at = utcnow()
    db.commit()
    return {"message_id": msg.id, "session_id": chat.id, **(msg.feedback or {})}
