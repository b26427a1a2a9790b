"""Knowledge-base search: the web asks the worker (it never loads an index itself)."""

from __future__ import annotations

from celery.exceptions import TimeoutError as CeleryTimeout
from flask_smorest import Blueprint

from models import jobs
from models.schemas import SearchIn, SourceOut
from webapp.api import CUSTOMER_OR_STAFF, errors
from webapp.auth import request_credentials, require_staff, token_owner
from webapp.db import get_db
from webapp.errors import abort

blp = Blueprint("search", __name__, url_prefix="/api/chat", description="Knowledge-base search")

SEARCH_TIMEOUT = 10.0


@blp.route("/search", methods=["POST"])
@blp.arguments(SearchIn)
@blp.response(200, SourceOut(many=True))
@blp.doc(**CUSTOMER_OR_STAFF)
@errors(blp, 400, (401, "no credentials, or a bad session token or staff key"), 422, 503)
def search(body: dict) -> list[dict]:
    """Ranked passages for a query; any valid session token, or staff."""
    token, key = request_credentials()
    if not key and not token:
        abort(
            401,
            "send a session token (Authorization: Bearer <token> from POST /api/sessions) "
            "or a staff X-API-Key",
            "missing_token",
        )
    if key:
        require_staff()
    elif token_owner(get_db(), token) is None:
        abort(401, "invalid session token", "invalid_token")
    try:
        rows = jobs.search(body["query"], body["limit"], timeout=SEARCH_TIMEOUT)
    except CeleryTimeout:
        abort(503, "no worker answered the search in time", headers={"Retry-After": "5"})
    except Exception as exc:  # broker down: kombu/redis raise various types
        abort(503, f"search is unavailable: {type(exc).__name__}", headers={"Retry-After": "5"})
    return rows
