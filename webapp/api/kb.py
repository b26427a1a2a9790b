"""Knowledge-base documents (staff): add (JSON or file), list and search, read, delete,
re-index."""

from __future__ import annotations

import json
import re

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import func, select

from models import jobs
from models.kb import KBDocument
from models.schemas import KBDocumentIn, KBDocumentOut, KBListQuery
from models.work import DOCUMENT, WorkState, queue
from webapp.api import STAFF, errors
from webapp.auth import require_staff
from webapp.config import current_settings
from webapp.db import get_db
from webapp.errors import abort
from webapp.kb import delete_document, upsert_document
from webapp.uploads import MemorySink, stream_form

blp = Blueprint("kb", __name__, url_prefix="/api/kb", description="Knowledge-base documents")

_TOTAL_HEADER = {
    "X-Total-Count": {
        "description": "documents matching the filter, all pages",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    }
}

_FILE_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": KBDocumentIn},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "title": {"type": "string"},
                        "external_id": {"type": "string"},
                        "metadata": {"type": "string", "description": "a JSON object"},
                    },
                    "required": ["file"],
                }
            },
        },
    }
}


def _from_request() -> dict:
    """JSON body or multipart form into upsert_document's arguments. A file is streamed as it
    arrives (webapp/uploads.py, as attachments are): refused with 413 or 415 as soon as it is
    too large or not an accepted type, without waiting for the rest of the body."""
    if request.mimetype == "multipart/form-data":
        settings = current_settings()
        form = stream_form(
            "file",
            lambda _name, _fields: MemorySink(),
            settings.max_upload_bytes,
            settings.max_upload_mb,
        )
        assert isinstance(form.sink, MemorySink)
        try:
            meta = json.loads(form.fields.get("metadata") or "{}")
        except ValueError:
            abort(422, "metadata must be a JSON object", details={"metadata": ["Not JSON."]})
        fields = KBDocumentIn().load(
            {
                "title": form.fields.get("title") or "",
                "metadata": meta,
                "external_id": form.fields.get("external_id") or None,
                "text": None,
            }
        )
        return {
            **fields,
            "raw": bytes(form.sink.data),
            "filename": form.filename or "document",
            "content_type": form.content_type,
        }
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400, "send a JSON object or multipart/form-data with a file", "invalid_json")
    fields = KBDocumentIn().load(body)
    if not (fields.get("text") or "").strip():
        abort(422, "text is required", details={"text": ["Missing data for required field."]})
    return fields


@blp.route("/documents")
class Documents(MethodView):
    @blp.doc(**_FILE_DOC)
    @blp.response(202, KBDocumentOut, description="stored; indexing queued")
    @blp.alt_response(
        200, schema=KBDocumentOut, description="unchanged (same content again)", success=True
    )
    @blp.doc(**STAFF)
    @errors(blp, 400, 401, 413, 415, 422)
    def post(self) -> tuple[KBDocument, int]:
        """Add or replace (same external_id) a document; indexing runs in the worker."""
        require_staff()
        db = get_db()
        limit = current_settings().max_upload_bytes
        doc, changed = upsert_document(db, **_from_request(), max_bytes=limit)
        db.commit()
        if changed:
            jobs.send_ingest(doc.id)
        return doc, 202 if changed else 200

    @blp.arguments(KBListQuery, location="query")
    @blp.response(200, KBDocumentOut(many=True), headers=_TOTAL_HEADER)
    @blp.doc(**STAFF)
    @errors(blp, 401, 422)
    def get(self, args: dict) -> tuple[list[KBDocument], int, dict[str, str]]:
        """Documents with their status and chunk counts."""
        require_staff()
        db = get_db()
        stmt = select(KBDocument)
        if args.get("status"):
            stmt = stmt.where(KBDocument.status == args["status"])
        for word in (args.get("q") or "").split()[:10]:
            pattern = "%" + re.sub(r"([\\%_])", r"\\\1", word) + "%"
            stmt = stmt.where(
                KBDocument.title.ilike(pattern, escape="\\")
                | KBDocument.external_id.ilike(pattern, escape="\\")
                | KBDocument.source.ilike(pattern, escape="\\")
            )
        total = db.scalar(select(func.count()).select_from(stmt.subquery()))
        rows = db.scalars(
            stmt.order_by(KBDocument.created_at).limit(args["limit"]).offset(args["offset"])
        ).all()
        return rows, 200, {"X-Total-Count": str(total)}


@blp.route("/documents/<document_id>")
class Document(MethodView):
    @blp.response(200, KBDocumentOut)
    @blp.doc(**STAFF)
    @errors(blp, 401, 404)
    def get(self, document_id: str) -> KBDocument:
        """One document."""
        require_staff()
        doc = get_db().get(KBDocument, document_id)
        if doc is None:
            abort(404, "unknown document", "unknown_document")
        return doc

    @blp.response(204)
    @blp.doc(**STAFF)
    @errors(blp, 401, 404)
    def delete(self, document_id: str) -> None:
        """Delete a document and its chunks from every index."""
        require_staff()
        db = get_db()
        doc = db.get(KBDocument, document_id)
        if doc is None:
            abort(404, "unknown document", "unknown_document")
        delete_document(db, doc)
        db.commit()


@blp.route("/documents/<document_id>/reindex", methods=["POST"])
@blp.response(202, KBDocumentOut, description="queued for indexing again")
@blp.doc(**STAFF)
@errors(blp, 401, 404, (409, "the document is being indexed already (`already_indexing`)"))
def reindex(document_id: str) -> KBDocument:
    """Index a document again from its stored text (or its file, if it never got that far):
    after a failure, or when the splitting or the index changed."""
    require_staff()
    db = get_db()
    doc = db.get(KBDocument, document_id)
    if doc is None:
        abort(404, "unknown document", "unknown_document")
    if doc.status in (WorkState.QUEUED.value, WorkState.PROCESSING.value):
        abort(409, "the document is being indexed already", "already_indexing")
    if doc.text is None and doc.raw is None:
        abort(409, "the document has nothing stored to index from", "nothing_to_index")
    queue(doc, DOCUMENT)
    doc.error = None
    db.commit()
    jobs.send_ingest(doc.id)
    return doc
