"""Marshmallow schemas: what the API takes and returns (the OpenAPI document is built on them)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_dump, pre_load, validate

from models.events import iso
from models.textcheck import MAX_INT, MAX_OBJECT_BYTES, find_problems, object_too_large


class Timestamp(fields.DateTime):
    """ISO 8601 in UTC with its offset (`…Z`) on both databases (SQLite hands back naive UTC
    values): the one format of every timestamp clients see, events and webhooks included."""

    def _serialize(self, value, attr, obj, **kwargs):  # type: ignore[no-untyped-def]
        return None if value is None else iso(value)


class _In(Schema):
    """Inputs ignore unknown fields (older clients send extras) but validate known ones, and
    refuse text neither database can store, deep nesting and oversized free-form objects."""

    class Meta:
        unknown = EXCLUDE

    @pre_load
    def _storable(self, data, **_kw):  # type: ignore[no-untyped-def]
        # Query strings arrive as a MultiDictProxy (a Mapping, not a dict): checked the same way.
        plain = data if isinstance(data, dict) else None
        if plain is None and isinstance(data, Mapping):
            plain = {key: data[key] for key in data}
        problems = find_problems(plain) if plain is not None else {}
        if isinstance(data, dict) and isinstance(data.get("metadata"), dict):
            if object_too_large(data["metadata"]):
                problems["metadata"] = f"is larger than {MAX_OBJECT_BYTES} bytes"
        if problems:
            raise ValidationError({k: [v] for k, v in problems.items()})
        return data


def _count(maximum: int = MAX_INT) -> validate.Range:
    """Offsets and sequence numbers: bounded so both databases can compare them."""
    return validate.Range(0, maximum)


# How the OpenAPI document marks an alias that only the original system's client reads.
ORIGINAL = "kept for the original client (customer-support-agent)"


class ErrorBody(Schema):
    code = fields.String(
        required=True, metadata={"description": "machine-readable, e.g. `malformed_session_id`"}
    )
    message = fields.String(required=True, metadata={"description": "for people"})
    details = fields.Raw(
        required=True,
        allow_none=True,
        metadata={"description": "more about it: invalid fields by name, limits; or null"},
    )


class ApiErrorSchema(Schema):
    """Every error the API sends, whatever its status (HTTP and socket `error` events)."""

    error = fields.Nested(ErrorBody, required=True)


class SessionCreate(_In):
    user_id = fields.String(allow_none=True, validate=validate.Length(max=255))
    metadata = fields.Dict(keys=fields.String(), load_default=dict)


class SessionOut(Schema):
    session_id = fields.String(attribute="id", required=True)
    id = fields.Function(  # a second field on attribute `id` (marshmallow forbids two)
        lambda chat: chat.id,
        required=True,
        metadata={"type": "string", "description": f"= `session_id`; {ORIGINAL}"},
    )
    token = fields.String(metadata={"description": "only returned when the session is created"})
    user_id = fields.String(allow_none=True)
    status = fields.String(required=True)
    created_at = Timestamp(required=True)
    updated_at = Timestamp()
    metadata = fields.Dict(attribute="metadata_")
    last_seq = fields.Integer()
    owner = fields.String(metadata={"description": "bot, waiting (for a person) or person"})
    agent = fields.String(attribute="agent_name", allow_none=True)
    ticket_id = fields.String(allow_none=True, dump_default=None)
    contact_email = fields.String(allow_none=True, dump_default=None)
    rated = fields.Boolean(dump_default=False, metadata={"description": "a rating was given"})


class SessionPatch(_In):
    status = fields.String(required=True, validate=validate.OneOf(["ended"]))


class SessionListQuery(_In):
    user_id = fields.String()
    status = fields.String(validate=validate.OneOf(["active", "ended"]))
    owner = fields.String(validate=validate.OneOf(["bot", "waiting", "person"]))
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 200))
    offset = fields.Integer(load_default=0, validate=_count())


class SessionList(Schema):
    sessions = fields.List(fields.Nested(SessionOut))
    total = fields.Integer()


class MessageIn(_In):
    message = fields.String(required=True)
    client_msg_id = fields.String(validate=validate.Length(1, 128), allow_none=True)
    attachment_ids = fields.List(fields.String(), load_default=list)


class WaitQuery(_In):
    wait = fields.Float(validate=validate.Range(0, 30))


class MessageAccepted(Schema):
    """A stored message (`webapp.chat.Accepted`): a resend of its client_msg_id is a duplicate."""

    message_id = fields.String(attribute="message.id", required=True)
    seq = fields.Integer(attribute="message.seq", required=True)
    status = fields.String(attribute="message.status", required=True)
    client_msg_id = fields.String(attribute="message.client_msg_id", allow_none=True)
    duplicate = fields.Method("_duplicate", required=True, metadata={"type": "boolean"})

    def _duplicate(self, accepted) -> bool:  # type: ignore[no-untyped-def]
        return not accepted.created


class SourceMetadata(Schema):
    """The original client's `metadata` of a source (`source`, `page`), with our ids beside."""

    source = fields.String(allow_none=True, metadata={"description": f"the title; {ORIGINAL}"})
    page = fields.Integer(
        allow_none=True, metadata={"description": f"null: articles have no pages; {ORIGINAL}"}
    )
    chunk_id = fields.String()
    document_id = fields.String()
    external_id = fields.String(allow_none=True)
    title = fields.String()
    section = fields.String(allow_none=True)


class SourceOut(Schema):
    """One knowledge-base passage, the same wherever a client meets it: search results, the
    socket's `sources` and `complete` events, `?wait=` replies and history. The original
    client's fields (`content`, `relevance_score`, `metadata`, `rank`) are derived here from
    ours, so no producer builds them."""

    index = fields.Integer(
        required=True, metadata={"description": "the [n] citing it in the reply; in search, rank"}
    )
    chunk_id = fields.String(required=True)
    document_id = fields.String(required=True)
    external_id = fields.String(allow_none=True)
    title = fields.String(required=True)
    snippet = fields.String(required=True, metadata={"description": "the passage, shortened"})
    score = fields.Float(allow_none=True, metadata={"description": "retrieval score"})
    content = fields.String(
        required=True,
        metadata={"description": f"the passage (search) or the text cited (replies); {ORIGINAL}"},
    )
    relevance_score = fields.Float(
        allow_none=True, metadata={"description": f"`score` rounded to 4 places; {ORIGINAL}"}
    )
    rank = fields.Integer(required=True, metadata={"description": f"= `index`; {ORIGINAL}"})
    metadata = fields.Nested(SourceMetadata, required=True, metadata={"description": ORIGINAL})
    url = fields.String(
        allow_none=True,
        dump_default=None,
        metadata={"description": "the article's address (metadata `url`), or null"},
    )

    @pre_dump
    def _original_fields(self, src, **_kw) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        score = src.get("score")
        return {
            **src,
            "content": src.get("content") or src.get("snippet", ""),
            "relevance_score": None if score is None else round(score, 4),
            "rank": src.get("index"),
            "metadata": {
                "source": src.get("title") or src.get("external_id"),
                "page": None,
                "chunk_id": src.get("chunk_id"),
                "document_id": src.get("document_id"),
                "external_id": src.get("external_id"),
                "title": src.get("title"),
                "section": src.get("section"),
            },
        }


class ChatResponse(Schema):
    """The reply shape of the original system's REST clients, dumped from the reply message; a
    customer message closed without a bot reply (handed to a person) gives the notice the
    customer was shown instead."""

    message = fields.String(required=True)
    sources = fields.List(fields.Nested(SourceOut), required=True)
    requires_escalation = fields.Boolean(required=True)
    confidence = fields.Float(allow_none=True, required=True)
    session_id = fields.String(required=True)
    timestamp = Timestamp(required=True)
    processing_time = fields.Float(allow_none=True, required=True)
    metadata = fields.Dict(
        required=True,
        metadata={
            "description": "the reply's; for a message handed to a person `escalation` and "
            f"`ticket_id`, with `reasons` and `priority` {ORIGINAL}"
        },
    )

    @pre_dump
    def _from_message(self, reply, **_kw) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        if reply.role == "user":
            outcome = dict(reply.escalation or {})
            return {
                "message": outcome.get("notice", ""),
                "sources": [],
                "requires_escalation": outcome.get("action") == "escalate"
                or "bot_silent" in outcome,
                "confidence": None,
                "session_id": reply.session_id,
                "timestamp": reply.created_at,
                "processing_time": None,
                "metadata": {
                    "escalation": outcome,
                    "ticket_id": outcome.get("ticket_id"),
                    # the original client's banner reads these two beside ticket_id
                    "reasons": list(outcome.get("reasons") or []),
                    "priority": outcome.get("priority"),
                },
            }
        meta = dict(reply.metadata_ or {})
        return {
            "message": reply.content,
            "sources": reply.sources or [],
            "requires_escalation": bool(meta.get("requires_escalation", False)),
            "confidence": reply.confidence,
            "session_id": reply.session_id,
            "timestamp": reply.created_at,
            "processing_time": reply.processing_time,
            "metadata": meta,
        }


class AttachmentOut(Schema):
    attachment_id = fields.String(attribute="id")
    session_id = fields.String()
    message_id = fields.String(allow_none=True)
    filename = fields.String()
    content_type = fields.String()
    size = fields.Integer()
    size_mb = fields.Method("_size_mb", metadata={"type": "number"})
    sha256 = fields.String()
    status = fields.String(metadata={"description": "queued, processing, done or failed"})
    processed = fields.Method("_processed", metadata={"type": "boolean"})
    preview = fields.String(allow_none=True)
    error = fields.String(allow_none=True)
    created_at = Timestamp()

    def _size_mb(self, obj) -> float:  # type: ignore[no-untyped-def]
        return round(obj.size / (1024 * 1024), 3)

    def _processed(self, obj) -> bool:  # type: ignore[no-untyped-def]
        return obj.status == "done"


FEEDBACK_RATINGS = ("up", "down")
MAX_FEEDBACK_REASON = 500


class FeedbackIn(_In):
    rating = fields.String(required=True, validate=validate.OneOf(FEEDBACK_RATINGS))
    reason = fields.String(allow_none=True, validate=validate.Length(max=MAX_FEEDBACK_REASON))


class FeedbackOut(Schema):
    """A customer's verdict on a bot answer (the latest one; a new rating replaces it)."""

    rating = fields.String(required=True, metadata={"description": "up or down"})
    reason = fields.String(allow_none=True, required=True)
    at = Timestamp(required=True)


class MessageFeedbackOut(FeedbackOut):
    message_id = fields.String(required=True)
    session_id = fields.String(required=True)


class MessageOut(Schema):
    id = fields.String()
    seq = fields.Integer()
    role = fields.String()
    content = fields.String()
    status = fields.String()
    timestamp = Timestamp(attribute="created_at")
    client_msg_id = fields.String(allow_none=True)
    reply_to_id = fields.String(allow_none=True)
    attachments = fields.List(fields.Nested(AttachmentOut))
    sources = fields.List(fields.Nested(SourceOut))
    tools_used = fields.List(fields.String())
    confidence = fields.Float(allow_none=True)
    processing_time = fields.Float(allow_none=True)
    metadata = fields.Dict(attribute="metadata_")
    escalation = fields.Dict(allow_none=True)
    feedback = fields.Nested(
        FeedbackOut,
        allow_none=True,
        dump_default=None,
        metadata={"description": "the customer's thumbs up/down on a bot answer, or null"},
    )


class HistoryQuery(_In):
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 500))
    offset = fields.Integer(load_default=0, validate=_count())
    after = fields.Integer(validate=_count())


class MessageList(Schema):
    messages = fields.List(fields.Nested(MessageOut))
    total = fields.Integer()
    session_id = fields.String()


class UploadForm(_In):
    session_id = fields.String(required=True)


class SearchIn(_In):
    query = fields.String(required=True, validate=validate.Length(1, 1000))
    limit = fields.Integer(load_default=5, validate=validate.Range(1, 50))


class RatingIn(_In):
    score = fields.Integer(required=True, validate=validate.Range(1, 5))
    comment = fields.String(allow_none=True, validate=validate.Length(max=2000))


class RatingOut(Schema):
    id = fields.String()
    session_id = fields.String()
    score = fields.Integer()
    comment = fields.String(allow_none=True)
    handled_by = fields.String(metadata={"description": "bot, or person when an agent joined"})
    agent = fields.String(attribute="agent_name", allow_none=True)
    created_at = Timestamp()


class HandoffIn(_In):
    client_msg_id = fields.String(validate=validate.Length(1, 128), allow_none=True)


class ContactIn(_In):
    email = fields.Email(required=True, validate=validate.Length(max=320))


class ContactOut(Schema):
    ticket_id = fields.String(attribute="id")
    contact_email = fields.String()


class TicketOut(Schema):
    id = fields.String(required=True)
    session_id = fields.String(required=True)
    status = fields.String(metadata={"description": "open, claimed or resolved"})
    priority = fields.String(metadata={"description": "low, normal, high or urgent"})
    category = fields.String(allow_none=True)
    reasons = fields.List(fields.String())
    summary = fields.String()
    agent = fields.String(attribute="assignee", allow_none=True)
    contact_email = fields.String(allow_none=True)
    trigger_message_id = fields.String(allow_none=True)
    resolution = fields.String(allow_none=True)
    created_at = Timestamp()
    updated_at = Timestamp()
    claimed_at = Timestamp(allow_none=True)
    resolved_at = Timestamp(allow_none=True)


class TicketList(Schema):
    tickets = fields.List(fields.Nested(TicketOut))
    total = fields.Integer()


class TicketListQuery(_In):
    status = fields.String(
        load_default="active",
        validate=validate.OneOf(["open", "claimed", "resolved", "active", "all"]),
        metadata={"description": "active = open and claimed"},
    )
    session_id = fields.String()
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 200))
    offset = fields.Integer(load_default=0, validate=_count())


class ResolveIn(_In):
    end_session = fields.Boolean(load_default=False)


class StaffTokenOut(Schema):
    token = fields.String(required=True)
    agent = fields.Dict()
    expires_in = fields.Integer()


class DeliveryOut(Schema):
    id = fields.String()
    ticket_id = fields.String(allow_none=True)
    event = fields.String()
    url = fields.String()
    status = fields.String()
    attempts = fields.Integer()
    response_status = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)
    created_at = Timestamp()
    delivered_at = Timestamp(allow_none=True)


class DeliveryList(Schema):
    deliveries = fields.List(fields.Nested(DeliveryOut))
    total = fields.Integer()


class DeliveryQuery(_In):
    status = fields.String(validate=validate.OneOf(["queued", "processing", "done", "failed"]))
    ticket_id = fields.String()
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 200))
    offset = fields.Integer(load_default=0, validate=_count())


class KBDocumentIn(_In):
    title = fields.String(load_default="", validate=validate.Length(max=500))
    text = fields.String(allow_none=True)
    metadata = fields.Dict(keys=fields.String(), load_default=dict)
    external_id = fields.String(allow_none=True, validate=validate.Length(1, 255))


class KBDocumentOut(Schema):
    id = fields.String()
    external_id = fields.String(allow_none=True)
    title = fields.String()
    source = fields.String(allow_none=True)
    content_type = fields.String(allow_none=True)
    metadata = fields.Dict(attribute="metadata_")
    status = fields.String(metadata={"description": "queued, processing, done or failed"})
    error = fields.String(allow_none=True)
    chunk_count = fields.Integer()
    created_at = Timestamp()
    updated_at = Timestamp()


class KBListQuery(_In):
    status = fields.String(validate=validate.OneOf(["queued", "processing", "done", "failed"]))
    q = fields.String(
        validate=validate.Length(1, 200),
        metadata={"description": "words in the title, external id or file name (any case)"},
    )
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 1000))
    offset = fields.Integer(load_default=0, validate=_count())


class CheckOut(Schema):
    ok = fields.Boolean(required=True)
    ms = fields.Float(metadata={"description": "how long the check took"})
    error = fields.String(metadata={"description": "why it failed"})
    workers = fields.Integer(metadata={"description": "workers that answered (worker check)"})
    warning = fields.String(
        metadata={"description": "ready, but a part is missing (worker check: no `files` worker)"}
    )
    transport = fields.String(metadata={"description": "amqp or redis (broker check)"})


class LiveOut(Schema):
    status = fields.String(required=True, metadata={"description": "ok"})


class ReadyOut(Schema):
    status = fields.String(required=True, metadata={"description": "ok or unavailable"})
    checks = fields.Dict(keys=fields.String(), values=fields.Nested(CheckOut), required=True)
    services = fields.Method(
        "_services",
        required=True,
        metadata={
            "type": "object",
            "additionalProperties": {"type": "string", "enum": ["healthy", "unhealthy"]},
            "description": f"each check as `healthy` or `unhealthy`; {ORIGINAL}",
        },
    )

    def _services(self, body: dict) -> dict[str, str]:
        checks = body["checks"].items()
        return {name: "healthy" if check["ok"] else "unhealthy" for name, check in checks}


class HealthOut(ReadyOut):
    sockets = fields.Integer(required=True, metadata={"description": "this process's sockets"})
    pubsub_connected = fields.Boolean(required=True)


class ReportQuery(_In):
    """A period of calendar days in a time zone (default: the last 30 days, SUPPORT_TIMEZONE)."""

    from_ = fields.Date(
        data_key="from",
        validate=validate.Range(date(1970, 1, 1), date(2999, 12, 31)),
        metadata={"description": "first day (YYYY-MM-DD), default 29 days before `to`"},
    )
    to = fields.Date(
        validate=validate.Range(date(1970, 1, 1), date(2999, 12, 31)),
        metadata={"description": "last day, included (YYYY-MM-DD), default today"},
    )
    tz = fields.String(
        validate=validate.Length(1, 64),
        metadata={
            "description": "IANA time zone of the days, e.g. `Europe/Paris`; "
            "default SUPPORT_TIMEZONE"
        },
    )


class ToDoQuery(ReportQuery):
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 500))


class ReportPeriod(Schema):
    from_ = fields.String(data_key="from", attribute="from", required=True)
    to = fields.String(required=True)
    tz = fields.String(required=True)


class _DayCounts(Schema):
    conversations = fields.Integer(
        required=True, metadata={"description": "started, with a customer message"}
    )
    bot_only = fields.Integer(
        required=True, metadata={"description": "of those, answered by the bot, no person asked"}
    )
    escalated = fields.Integer(
        required=True, metadata={"description": "of those, a person was asked for (a ticket)"}
    )
    answers = fields.Integer(required=True, metadata={"description": "bot answers written"})
    abstentions = fields.Integer(
        required=True, metadata={"description": "bot answers saying it could not answer"}
    )
    thumbs_up = fields.Integer(required=True)
    thumbs_down = fields.Integer(required=True)
    tickets = fields.Integer(required=True, metadata={"description": "tickets opened"})


class ReportDay(_DayCounts):
    date = fields.String(required=True, metadata={"description": "YYYY-MM-DD in `tz`"})


class ReportTotals(_DayCounts):
    deflection_rate = fields.Float(
        allow_none=True, required=True, metadata={"description": "bot_only / conversations"}
    )
    abstention_rate = fields.Float(
        allow_none=True, required=True, metadata={"description": "abstentions / answers"}
    )
    thumbs_up_rate = fields.Float(
        allow_none=True, required=True, metadata={"description": "up / (up + down)"}
    )


class ReasonCount(Schema):
    reason = fields.String(required=True)
    count = fields.Integer(required=True)


class RatingSummary(Schema):
    handled_by = fields.String(required=True, metadata={"description": "bot or person"})
    count = fields.Integer(required=True)
    average = fields.Float(allow_none=True, required=True)
    scores = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        required=True,
        metadata={"description": 'how many of each score, "1" to "5"'},
    )


class ReportSummaryOut(Schema):
    period = fields.Nested(ReportPeriod, required=True)
    totals = fields.Nested(ReportTotals, required=True)
    days = fields.List(fields.Nested(ReportDay), required=True)
    escalation_reasons = fields.List(
        fields.Nested(ReasonCount),
        required=True,
        metadata={"description": "reasons of the tickets opened (a ticket may have several)"},
    )
    ratings = fields.List(fields.Nested(RatingSummary), required=True)


class ToDoItem(Schema):
    question = fields.String(required=True, metadata={"description": "the customer's words"})
    count = fields.Integer(required=True, metadata={"description": "times asked (same words)"})
    abstained = fields.Integer(required=True, metadata={"description": "times the bot abstained"})
    thumbs_down = fields.Integer(required=True)
    reasons = fields.List(fields.String(), required=True, metadata={"description": "why, if said"})
    last_at = Timestamp(required=True)
    session_id = fields.String(required=True, metadata={"description": "the latest conversation"})
    message_id = fields.String(required=True, metadata={"description": "its bot answer"})
    answer = fields.String(required=True, metadata={"description": "that answer (300 chars)"})


class ToDoOut(Schema):
    period = fields.Nested(ReportPeriod, required=True)
    items = fields.List(fields.Nested(ToDoItem), required=True)
    total = fields.Integer(required=True)
