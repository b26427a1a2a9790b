"""Sessions: create (anyone), read/end/delete (its token or staff), list (staff), rate."""

from __future__ import annotations

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import func, select

from models.base import new_id
from models.chat import ChatSession, Rating
from models.events import append_event, publish
from models.schemas import (
    ApiErrorSchema,
    RatingIn,
    RatingOut,
    SessionCreate,
    SessionList,
    SessionListQuery,
    SessionOut,
    SessionPatch,
)
from webapp.auth import authorize_request, new_token, require_staff
from webapp.db import get_db
from webapp.errors import abort

blp = Blueprint("sessions", __name__, url_prefix="/api/sessions", description="Chat sessions")


@blp.route("")
class Sessions(MethodView):
    @blp.arguments(SessionCreate)
    @blp.response(201, SessionOut)
    @blp.alt_response(422, schema=ApiErrorSchema)
    def post(self, body: dict) -> ChatSession:
        """Start a session; the token in the response is shown once and authorises it."""
        token, token_hash = new_token()
        chat = ChatSession(
            id=new_id(),
            token_hash=token_hash,
            user_id=body.get("user_id"),
            metadata_=body.get("metadata") or {},
        )
        db = get_db()
        db.add(chat)
        db.commit()
        chat.token = token  # shown once; only its hash is stored
        return chat

    @blp.arguments(SessionListQuery, location="query")
    @blp.response(200, SessionList)
    def get(self, args: dict) -> dict:
        """List sessions (staff)."""
        require_staff()
        stmt = select(ChatSession)
        if args.get("user_id"):
            stmt = stmt.where(ChatSession.user_id == args["user_id"])
        if args.get("status"):
            stmt = stmt.where(ChatSession.status == args["status"])
        db = get_db()
        total = db.scalar(select(func.count()).select_from(stmt.subquery()))
        rows = db.scalars(
            stmt.order_by(ChatSession.created_at.desc()).limit(args["limit"]).offset(args["offset"])
        ).all()
        return {"sessions": rows, "total": total}


def set_status(chat: ChatSession, status: str) -> None:
    """Change status and log it as an event (sockets learn the session ended)."""
    db = get_db()
    if chat.status == status:
        return
    chat.status = status
    event = append_event(db, chat.id, "session_status", status=status)
    db.commit()
    publish(event)


@blp.route("/<session_id>")
class SessionItem(MethodView):
    @blp.response(200, SessionOut)
    @blp.alt_response(404, schema=ApiErrorSchema)
    def get(self, session_id: str) -> ChatSession:
        """Read a session."""
        chat, _ = authorize_request(get_db(), session_id)
        return chat

    @blp.response(200, SessionOut)
    @blp.alt_response(422, schema=ApiErrorSchema)
    def patch(self, session_id: str) -> ChatSession:
        """End a session (`{"status": "ended"}` or `?status=ended`); staff may set any status."""
        db = get_db()
        chat, actor = authorize_request(db, session_id)
        if request.data:
            body = request.get_json(silent=True)
            if not isinstance(body, dict):
                abort(400, "the request body is not a JSON object", "invalid_json")
        else:
            body = dict(request.args)
        data = SessionPatch().load(body)
        if not actor.is_staff and data["status"] != "ended":
            abort(403, "customers can only end a session", "forbidden_status")
        set_status(chat, data["status"])
        return chat

    @blp.response(204)
    def delete(self, session_id: str) -> None:
        """Delete the session with its messages, files and events."""
        db = get_db()
        chat, _ = authorize_request(db, session_id)
        event = {"type": "session_status", "session_id": chat.id, "status": "deleted"}
        db.delete(chat)
        db.commit()
        publish(event)


@blp.route("/<session_id>/rating")
class SessionRating(MethodView):
    @blp.arguments(RatingIn)
    @blp.response(201, RatingOut)
    def post(self, body: dict, session_id: str) -> Rating:
        """Rate the conversation 1–5."""
        db = get_db()
        chat, _ = authorize_request(db, session_id)
        rating = Rating(session_id=chat.id, score=body["score"], comment=body.get("comment"))
        db.add(rating)
        db.commit()
        return rating
