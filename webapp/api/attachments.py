"""Attachments: upload a file to a session (parsed in the worker) and read its status."""

from __future__ import annotations

from collections.abc import Callable

from flask import jsonify, request
from flask_smorest import Blueprint

from models import jobs
from models.chat import Attachment
from models.schemas import AttachmentOut
from webapp.api import CUSTOMER_OR_STAFF, errors
from webapp.auth import authorize_request, request_credentials, staff_actor
from webapp.chat import accept_upload
from webapp.db import get_db
from webapp.errors import abort
from webapp.uploads import receive_file

blp = Blueprint("attachments", __name__, url_prefix="/api", description="File attachments")

_UPLOAD_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "session_id": {"type": "string"},
                    },
                    "required": ["file", "session_id"],
                }
            }
        },
    }
}


@blp.route("/chat/upload", methods=["POST"])
@blp.doc(**_UPLOAD_DOC)
@blp.response(202, AttachmentOut)
@blp.doc(**CUSTOMER_OR_STAFF)
@errors(blp, 400, 401, 403, 404, (409, "the session ended"), 413, 415, 422)
def upload():  # type: ignore[no-untyped-def]
    """Upload a file (txt, md, html, pdf, docx, images); text is extracted in the background."""
    if request.mimetype != "multipart/form-data":
        abort(415, "upload with multipart/form-data (fields: file, session_id)")
    db = get_db()
    # The body is streamed into storage as it arrives (webapp/uploads.py), never parsed as a
    # whole form: request.form / request.files would spool the file and copy it again.
    chat, received = receive_file(lambda session_id: authorize_request(db, session_id)[0])
    # accept_upload hands back the row already dumped by AttachmentOut (as the event log
    # has it); reading the row again could race the worker and show it "processing".
    resp = jsonify(accept_upload(db, chat, received))
    resp.status_code = 202
    # The parse is enqueued once the 202 is sent (the committed row is the promise; a failed or
    # lost enqueue is re-sent by the sweeper at the row's deadline, as for any queued work).
    resp.call_on_close(lambda: after_response(lambda: jobs.send_parse(received.attachment_id)))
    return resp


def after_response(send: Callable[[], object]) -> None:
    """Run `send` (an enqueue, which logs its own failure) once the response is written: in a
    greenlet of its own under gevent, so the connection's next request is read at once instead
    of after kombu's message building and the broker's round trip (1.6-4 ms p50 per send on the
    benchmark VM, bench/README.md "Session 11"); the greenlet runs when the next request waits
    (for the client, or for a piece being hashed and written in a native thread). A send lost
    with its process is re-sent by the sweeper, as before. Elsewhere (no gevent), inline."""
    from gevent import monkey

    if monkey.is_module_patched("threading"):
        import gevent

        gevent.spawn_raw(send)
    else:
        send()


@blp.route("/attachments/<attachment_id>", methods=["GET"])
@blp.response(200, AttachmentOut)
@blp.doc(**CUSTOMER_OR_STAFF)
@errors(blp, 401, 403, 404)
def get_attachment(attachment_id: str) -> Attachment:
    """An attachment's status, preview and error."""
    db = get_db()
    att = db.get(Attachment, attachment_id)
    if att is None:
        # Authenticate first so an unknown id and a foreign one look alike to strangers.
        token, key = request_credentials()
        if not token and staff_actor(key) is None:
            abort(401, "missing session token (Authorization: Bearer <token>)", "missing_token")
        abort(404, "unknown attachment", "unknown_attachment")
    authorize_request(db, att.session_id)
    return att
