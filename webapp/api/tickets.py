"""Human handoff for staff: the ticket queue, claim / release / resolve, takeover, deliveries.

Every change goes through models/ownership.py (one state machine, conditional UPDATEs), is
committed with its persisted events and webhook deliveries, and only then announced.
"""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import case, func, select

from models.chat import ChatSession, Ticket, WebhookDelivery
from models.ownership import ACTIVE_TICKET, Change, announce, claim, release, resolve, takeover
from models.schemas import (
    DeliveryList,
    DeliveryQuery,
    ResolveIn,
    StaffTokenOut,
    TicketList,
    TicketListQuery,
    TicketOut,
)
from webapp.api import STAFF, errors
from webapp.auth import STAFF_TOKEN_SECONDS, parse_session_id, require_staff, staff_socket_token
from webapp.db import get_db
from webapp.errors import abort

blp = Blueprint("tickets", __name__, url_prefix="/api", description="Human handoff (staff)")

_PRIORITY_ORDER = case(
    {"urgent": 0, "high": 1, "normal": 2, "low": 3}, value=Ticket.priority, else_=4
)


@blp.route("/tickets")
class Tickets(MethodView):
    @blp.arguments(TicketListQuery, location="query")
    @blp.response(200, TicketList)
    @blp.doc(**STAFF)
    @errors(blp, (400, "`session_id` is not a UUID"), 401, 422)
    def get(self, args: dict) -> dict:
        """The queue: open tickets first, by priority then age; `status=active` is the default."""
        require_staff()
        stmt = select(Ticket)
        status = args["status"]
        if status == "active":
            stmt = stmt.where(Ticket.status.in_(ACTIVE_TICKET))
        elif status != "all":
            stmt = stmt.where(Ticket.status == status)
        if args.get("session_id"):
            stmt = stmt.where(Ticket.session_id == parse_session_id(args["session_id"]))
        db = get_db()
        total = db.scalar(select(func.count()).select_from(stmt.subquery()))
        rows = db.scalars(
            stmt.order_by((Ticket.status != "open"), _PRIORITY_ORDER, Ticket.created_at, Ticket.id)
            .limit(args["limit"])
            .offset(args["offset"])
        ).all()
        return {"tickets": rows, "total": total}


@blp.route("/tickets/<ticket_id>")
class TicketItem(MethodView):
    @blp.response(200, TicketOut)
    @blp.doc(**STAFF)
    @errors(blp, 401, 404)
    def get(self, ticket_id: str) -> Ticket:
        """One ticket."""
        require_staff()
        ticket = get_db().get(Ticket, ticket_id)
        if ticket is None:
            abort(404, "unknown ticket", "unknown_ticket")
        return ticket


def _commit(change: Change) -> Ticket:
    get_db().commit()
    announce(change)
    return change.ticket


@blp.route("/tickets/<ticket_id>/claim", methods=["POST"])
@blp.response(200, TicketOut)
@blp.doc(**STAFF)
@errors(blp, 401, 404, (409, "already claimed or resolved"))
def claim_ticket(ticket_id: str) -> Ticket:
    """Take the ticket: the bot stays silent and the customer sees who joined."""
    actor = require_staff()
    return _commit(claim(get_db(), ticket_id, actor.name or "Support"))


@blp.route("/tickets/<ticket_id>/release", methods=["POST"])
@blp.response(200, TicketOut)
@blp.doc(**STAFF)
@errors(blp, 401, 404, (409, "not held by the caller"))
def release_ticket(ticket_id: str) -> Ticket:
    """Put the ticket back in the queue for another agent (the bot stays silent)."""
    actor = require_staff()
    return _commit(release(get_db(), ticket_id, actor.name or "Support"))


@blp.route("/tickets/<ticket_id>/resolve", methods=["POST"])
@blp.arguments(ResolveIn, required=False)
@blp.response(200, TicketOut)
@blp.doc(**STAFF)
@errors(blp, 400, 401, 404, (409, "resolved already, or held by another"), 422)
def resolve_ticket(body: dict, ticket_id: str) -> Ticket:
    """Close the ticket: the bot answers again, or (`end_session`) the conversation ends."""
    actor = require_staff()
    end = bool((body or {}).get("end_session"))
    return _commit(resolve(get_db(), ticket_id, actor.name or "Support", end_session=end))


@blp.route("/sessions/<session_id>/takeover", methods=["POST"])
@blp.response(201, TicketOut)
@blp.doc(**STAFF)
@errors(blp, 400, 401, 404, (409, "a person holds it, or it ended"))
def take_over(session_id: str) -> Ticket:
    """Take a conversation from the bot directly (a ticket is opened and claimed at once)."""
    actor = require_staff()
    db = get_db()
    chat = db.get(ChatSession, parse_session_id(session_id))
    if chat is None:
        abort(404, "unknown session", "unknown_session")
    return _commit(takeover(db, chat.id, actor.name or "Support"))


@blp.route("/console/token", methods=["POST"])
@blp.response(201, StaffTokenOut)
@blp.doc(**STAFF)
@errors(blp, 401)
def console_token() -> dict:
    """Exchange the staff key (header) for a short-lived token for the console's sockets."""
    actor = require_staff()
    return {
        "token": staff_socket_token(actor),
        "agent": {"name": actor.name},
        "expires_in": STAFF_TOKEN_SECONDS,
    }


@blp.route("/webhooks/deliveries", methods=["GET"])
@blp.arguments(DeliveryQuery, location="query")
@blp.response(200, DeliveryList)
@blp.doc(**STAFF)
@errors(blp, 401, 422)
def deliveries(args: dict) -> dict:
    """Every ticket notification with its outcome: nothing shows as sent that was not."""
    require_staff()
    stmt = select(WebhookDelivery)
    if args.get("status"):
        stmt = stmt.where(WebhookDelivery.status == args["status"])
    if args.get("ticket_id"):
        stmt = stmt.where(WebhookDelivery.ticket_id == args["ticket_id"])
    db = get_db()
    total = db.scalar(select(func.count()).select_from(stmt.subquery()))
    rows = db.scalars(
        stmt.order_by(WebhookDelivery.created_at.desc()).limit(args["limit"]).offset(args["offset"])
    ).all()
    return {"deliveries": rows, "total": total}
