"""Sessions: create (anyone), read/end/delete (its token or staff), list (staff), rate,
ask for a person, leave an email for a reply."""

from __future__ import annotations

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from models import storage
from models.base import new_id
from models.chat import Attachment, ChatSession, Message, Rating, Ticket
from models.events import envelope, publish
from models.ownership import (
    STAFF_FEED,
    Owner,
    active_ticket,
    announce,
    end_session,
    save_contact,
    ticket_updated,
)
from models.schemas import (
    ContactIn,
    ContactOut,
    HandoffIn,
    MessageAccepted,
    RatingIn,
    RatingOut,
    SessionCreate,
    SessionList,
    SessionListQuery,
    SessionOut,
    SessionPatch,
)
from models.serialize import ticket_json
from webapp.api import CUSTOMER, CUSTOMER_OR_STAFF, PUBLIC, STAFF, errors
from webapp.auth import authorize_request, new_token, require_staff
from webapp.chat import Accepted, accept_message
from webapp.db import get_db, retry_conflicts
from webapp.errors import abort
from webapp.limits import check_new_session

blp = Blueprint("sessions", __name__, url_prefix="/api/sessions", description="Chat sessions")

# PATCH reads its body itself (JSON, or nothing and `?status=ended`): documented here.
_PATCH_DOC = {
    "requestBody": {
        "required": False,
        "content": {"application/json": {"schema": SessionPatch}},
    },
    "parameters": [
        {
            "in": "query",
            "name": "status",
            "schema": {"type": "string", "enum": ["ended"]},
            "description": "instead of a body",
        }
    ],
}


@blp.route("")
class Sessions(MethodView):
    @blp.arguments(SessionCreate)
    @blp.response(201, SessionOut)
    @blp.doc(**PUBLIC)
    @errors(blp, 400, 422, 429)
    def post(self, body: dict) -> ChatSession:
        """Start a session; the token in the response is shown once and authorises it."""
        check_new_session()
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
    @blp.doc(**STAFF)
    @errors(blp, 401, 422)
    def get(self, args: dict) -> dict:
        """List sessions (staff)."""
        require_staff()
        stmt = select(ChatSession)
        if args.get("user_id"):
            stmt = stmt.where(ChatSession.user_id == args["user_id"])
        if args.get("status"):
            stmt = stmt.where(ChatSession.status == args["status"])
        if args.get("owner"):
            stmt = stmt.where(ChatSession.owner == args["owner"])
        db = get_db()
        total = db.scalar(select(func.count()).select_from(stmt.subquery()))
        rows = db.scalars(
            stmt.order_by(ChatSession.created_at.desc()).limit(args["limit"]).offset(args["offset"])
        ).all()
        return {"sessions": rows, "total": total}


def _with_ticket(chat: ChatSession) -> ChatSession:
    """Attach what a reloaded page restores: the open ticket, the email left, a given rating."""
    db = get_db()
    ticket = active_ticket(db, chat.id)
    chat.ticket_id = ticket.id if ticket else None
    chat.contact_email = ticket.contact_email if ticket else None
    chat.rated = db.scalar(select(Rating.id).where(Rating.session_id == chat.id)) is not None
    return chat


@blp.route("/<session_id>")
class SessionItem(MethodView):
    @blp.response(200, SessionOut)
    @blp.doc(**CUSTOMER_OR_STAFF)
    @errors(blp, 400, 401, 403, 404)
    def get(self, session_id: str) -> ChatSession:
        """Read a session, with who owns it (bot, waiting, person) and the agent's name."""
        chat, _ = authorize_request(get_db(), session_id)
        return _with_ticket(chat)

    @blp.doc(**_PATCH_DOC)
    @blp.response(200, SessionOut)
    @blp.doc(**CUSTOMER_OR_STAFF)
    @errors(blp, 400, 401, 403, 404, 422)
    def patch(self, session_id: str) -> ChatSession:
        """End a session (`{"status": "ended"}` or `?status=ended`); an open ticket closes too."""
        return _end(session_id)

    @blp.response(204)
    @blp.doc(**CUSTOMER_OR_STAFF)
    @errors(blp, 400, 401, 403, 404)
    @retry_conflicts
    def delete(self, session_id: str) -> None:
        """Delete the session with its messages, files and events."""
        db = get_db()
        chat, _ = authorize_request(db, session_id)
        event = envelope("session_status", chat.id, status="deleted")
        ticket = active_ticket(db, chat.id)
        gone = ticket_json(ticket) if ticket is not None else None
        stored = list(
            db.scalars(select(Attachment.storage_key).where(Attachment.session_id == chat.id))
        )
        db.delete(chat)
        db.commit()
        storage.remove(stored)  # files on disk go once no row names them (rows go with the session)
        publish(event)
        if gone is not None:  # consoles drop the ticket of a deleted conversation
            publish(envelope("ticket", STAFF_FEED, change="deleted", ticket=gone))


@blp.route("/<session_id>/status", methods=["PATCH"])
@blp.doc(**_PATCH_DOC)
@blp.response(200, SessionOut)
@blp.doc(**CUSTOMER_OR_STAFF)
@errors(blp, 400, 401, 403, 404, 422)
def session_status(session_id: str) -> ChatSession:
    """End a session (kept for the original client).

    The same as `PATCH /api/sessions/<id>`: same body, credentials and answer. The original
    client (customer-support-agent) ends its sessions here."""
    return _end(session_id)


@retry_conflicts
def _end(session_id: str) -> ChatSession:
    """Both PATCH routes: `{"status": "ended"}` or `?status=ended`; an open ticket closes too."""
    db = get_db()
    chat, _ = authorize_request(db, session_id)
    if request.data:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            abort(400, "the request body is not a JSON object", "invalid_json")
    else:
        body = dict(request.args)
    SessionPatch().load(body)
    change = end_session(db, chat.id)
    db.commit()
    announce(change)
    db.refresh(chat)
    return _with_ticket(chat)


@blp.route("/<session_id>/rating")
class SessionRating(MethodView):
    @blp.arguments(RatingIn)
    @blp.response(201, RatingOut)
    @blp.doc(**CUSTOMER)
    @errors(blp, 400, 401, (403, "staff do not rate"), 404, (409, "already rated"), 422)
    def post(self, body: dict, session_id: str) -> Rating:
        """Rate the conversation 1–5, once; recorded with who handled it (bot or person)."""
        db = get_db()
        chat, actor = authorize_request(db, session_id)
        if actor.is_staff:
            abort(403, "only the customer rates a conversation", "customer_only")
        agent = _last_agent(chat.id)
        rating = Rating(
            session_id=chat.id,
            score=body["score"],
            comment=body.get("comment"),
            handled_by="person" if agent else "bot",
            agent_name=agent,
        )
        db.add(rating)
        try:
            db.commit()
        except IntegrityError:
            db.rollback()
            abort(409, "this conversation has already been rated", "already_rated")
        return rating


def _last_agent(session_id: str) -> str | None:
    """The last agent who wrote in the conversation (None: the bot handled it alone)."""
    meta = get_db().scalar(
        select(Message.metadata_)
        .where(Message.session_id == session_id, Message.role == "agent")
        .order_by(Message.seq.desc())
        .limit(1)
    )
    if meta is None:
        return None
    return (meta or {}).get("agent") or "Support"


@blp.route("/<session_id>/handoff", methods=["POST"])
@blp.arguments(HandoffIn, required=False)
@blp.response(202, MessageAccepted)
@blp.doc(**CUSTOMER)
@errors(
    blp,
    400,
    401,
    (403, "staff take a conversation over instead"),
    404,
    (409, "the session ended, or a person was already asked for"),
    422,
    429,
)
def handoff(body: dict, session_id: str) -> Accepted:
    """Ask for a person (the page's button): stored as a customer request, handed over by the
    worker's escalation policy like a typed request, with no text to misread."""
    db = get_db()
    chat, actor = authorize_request(db, session_id)
    if actor.is_staff:
        abort(
            403, "agents take a conversation with POST /api/sessions/<id>/takeover", "customer_only"
        )
    return accept_message(
        db, chat, actor, None, (body or {}).get("client_msg_id"), request="person"
    )


@blp.route("/<session_id>/contact", methods=["POST"])
@blp.arguments(ContactIn)
@blp.response(200, ContactOut)
@blp.doc(**CUSTOMER_OR_STAFF)
@errors(blp, 400, 401, 403, 404, (409, "no person was asked for"), 422)
def contact(body: dict, session_id: str) -> Ticket:
    """Leave an email address for a reply when nobody can answer in the chat now."""
    db = get_db()
    chat, _ = authorize_request(db, session_id)
    if chat.owner == Owner.BOT:
        abort(409, "no person has been asked for in this conversation", "no_ticket")
    ticket = save_contact(db, chat.id, body["email"])
    change = ticket_updated(db, ticket)
    db.commit()
    announce(change)
    return ticket
