"""Marshmallow schemas: what the API takes and returns (the OpenAPI document is built on them)."""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, validate


class _In(Schema):
    """Inputs ignore unknown fields (older clients send extras) but validate known ones."""

    class Meta:
        unknown = EXCLUDE


class ErrorBody(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    details = fields.Raw(allow_none=True)


class ApiErrorSchema(Schema):
    error = fields.Nested(ErrorBody, required=True)


class SessionCreate(_In):
    user_id = fields.String(allow_none=True, validate=validate.Length(max=255))
    metadata = fields.Dict(keys=fields.String(), load_default=dict)


class SessionOut(Schema):
    session_id = fields.String(attribute="id", required=True)
    token = fields.String(metadata={"description": "only returned when the session is created"})
    user_id = fields.String(allow_none=True)
    status = fields.String(required=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime()
    metadata = fields.Dict(attribute="metadata_")
    last_seq = fields.Integer()


class SessionPatch(_In):
    status = fields.String(required=True, validate=validate.OneOf(["active", "escalated", "ended"]))


class SessionListQuery(_In):
    user_id = fields.String()
    status = fields.String(validate=validate.OneOf(["active", "escalated", "ended"]))
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 200))
    offset = fields.Integer(load_default=0, validate=validate.Range(0))


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
    message_id = fields.String(required=True)
    seq = fields.Integer(required=True)
    status = fields.String(required=True)
    client_msg_id = fields.String(allow_none=True)
    duplicate = fields.Boolean()


class SourceOut(Schema):
    index = fields.Integer()
    chunk_id = fields.String()
    document_id = fields.String()
    external_id = fields.String(allow_none=True)
    title = fields.String()
    snippet = fields.String()
    score = fields.Float()


class ChatResponse(Schema):
    """The reply shape of the original system's REST clients."""

    message = fields.String(required=True)
    sources = fields.List(fields.Nested(SourceOut))
    requires_escalation = fields.Boolean()
    confidence = fields.Float(allow_none=True)
    session_id = fields.String()
    timestamp = fields.String()
    processing_time = fields.Float(allow_none=True)
    metadata = fields.Dict()


class AttachmentOut(Schema):
    attachment_id = fields.String(attribute="id")
    session_id = fields.String()
    message_id = fields.String(allow_none=True)
    filename = fields.String()
    content_type = fields.String()
    size = fields.Integer()
    size_mb = fields.Method("_size_mb")
    sha256 = fields.String()
    status = fields.String()
    processed = fields.Method("_processed")
    preview = fields.String(allow_none=True)
    error = fields.String(allow_none=True)
    created_at = fields.DateTime()

    def _size_mb(self, obj) -> float:  # type: ignore[no-untyped-def]
        return round(obj.size / (1024 * 1024), 3)

    def _processed(self, obj) -> bool:  # type: ignore[no-untyped-def]
        return obj.status == "processed"


class MessageOut(Schema):
    id = fields.String()
    seq = fields.Integer()
    role = fields.String()
    content = fields.String()
    status = fields.String()
    timestamp = fields.DateTime(attribute="created_at")
    client_msg_id = fields.String(allow_none=True)
    reply_to_id = fields.String(allow_none=True)
    attachments = fields.List(fields.Nested(AttachmentOut))
    sources = fields.List(fields.Nested(SourceOut))
    tools_used = fields.List(fields.String())
    confidence = fields.Float(allow_none=True)
    processing_time = fields.Float(allow_none=True)
    metadata = fields.Dict(attribute="metadata_")


class HistoryQuery(_In):
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 500))
    offset = fields.Integer(load_default=0, validate=validate.Range(0))
    after = fields.Integer(validate=validate.Range(0))


class MessageList(Schema):
    messages = fields.List(fields.Nested(MessageOut))
    total = fields.Integer()
    session_id = fields.String()


class UploadForm(_In):
    session_id = fields.String(required=True)


class SearchIn(_In):
    query = fields.String(required=True, validate=validate.Length(1, 1000))
    limit = fields.Integer(load_default=5, validate=validate.Range(1, 50))


class SearchResult(Schema):
    content = fields.String()
    metadata = fields.Dict()
    relevance_score = fields.Float()
    rank = fields.Integer()


class RatingIn(_In):
    score = fields.Integer(required=True, validate=validate.Range(1, 5))
    comment = fields.String(allow_none=True, validate=validate.Length(max=2000))


class RatingOut(Schema):
    id = fields.String()
    session_id = fields.String()
    score = fields.Integer()
    comment = fields.String(allow_none=True)
    created_at = fields.DateTime()


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
    metadata = fields.Dict()
    status = fields.String()
    error = fields.String(allow_none=True)
    chunk_count = fields.Integer()
    created_at = fields.String()
    updated_at = fields.String()


class KBListQuery(_In):
    status = fields.String(validate=validate.OneOf(["queued", "indexed", "failed"]))
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 1000))
    offset = fields.Integer(load_default=0, validate=validate.Range(0))
