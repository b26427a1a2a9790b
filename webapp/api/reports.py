"""Reports for staff: the numbers behind the console's report page, as JSON (models/reports.py
computes them from the stored conversations)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask_smorest import Blueprint

from models import reports
from models.schemas import ReportQuery, ReportSummaryOut, ToDoOut, ToDoQuery
from webapp.api import STAFF, errors
from webapp.auth import require_staff
from webapp.config import current_settings
from webapp.db import get_db
from webapp.errors import abort

blp = Blueprint("reports", __name__, url_prefix="/api/reports", description="Reports (staff)")

DEFAULT_DAYS = 30


def period_of(args: dict) -> reports.Period:
    """The period asked for, or 422 naming the field: a known IANA zone, from ≤ to, at most
    MAX_DAYS days; the default is the last 30 days in SUPPORT_TIMEZONE."""
    name = args.get("tz") or current_settings().support_timezone
    try:
        zone = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        abort(422, f"unknown time zone {name[:64]!r}", details={"tz": ["Unknown IANA zone."]})
    end = args.get("to") or datetime.now(zone).date()
    start = args.get("from_") or end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        abort(422, "`from` is after `to`", details={"from": ["Must not be after `to`."]})
    if (end - start).days + 1 > reports.MAX_DAYS:
        abort(
            422,
            f"a report covers at most {reports.MAX_DAYS} days",
            details={"from": [f"At most {reports.MAX_DAYS} days before `to`."]},
        )
    return reports.Period(start, end, zone)


@blp.route("/summary", methods=["GET"])
@blp.arguments(ReportQuery, location="query")
@blp.response(200, ReportSummaryOut)
@blp.doc(**STAFF)
@errors(blp, 401, (422, "a bad date or time zone, `from` after `to`, over 366 days"))
def summary(args: dict) -> dict:
    """Conversations per day, deflection (answered by the bot alone), abstentions, tickets by
    reason, answer feedback and ratings by bot vs person, over a period of local days."""
    require_staff()
    return reports.summary(get_db(), period_of(args))


@blp.route("/unanswered", methods=["GET"])
@blp.arguments(ToDoQuery, location="query")
@blp.response(200, ToDoOut)
@blp.doc(**STAFF)
@errors(blp, 401, (422, "a bad date or time zone, `from` after `to`, over 366 days"))
def unanswered(args: dict) -> dict:
    """The knowledge base's to-do list: questions the bot could not answer or whose answer got
    a thumbs-down, most asked first."""
    require_staff()
    return reports.to_do(get_db(), period_of(args), args["limit"])
