"""POST /api/chat/upload's body, streamed once from the socket into attachment storage.

The multipart body is decoded as it arrives (1 MiB reads: the size gunicorn reads ahead, so no
read leaves a remainder to be copied back; the part's bytes are views of what was read) and the
file part goes straight to its final store (`models.storage`), hashed and sniffed on the way,
checked against MAX_UPLOAD_MB as it grows. No SpooledTemporaryFile, no second copy of the file, no
parsing: the `files` worker reads and parses it later. The form fields are small and bounded.

Everything refused (too large, wrong type, bad session, aborted body) discards what was written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header

from models import storage
from models.base import new_id
from models.chat import ChatSession
from models.filetypes import StreamSniffer, UnsupportedFileType
from webapp.config import current_settings
from webapp.errors import abort

READ_SIZE = 1024 * 1024  # gunicorn's largest read-ahead: each read is one piece, no remainder
MAX_FIELD_BYTES = 64 * 1024  # every field but the file, together (a session id is 36)
MAX_HEADER_BYTES = 16 * 1024  # one part's header block
MAX_PARTS = 50


class MalformedBody(ValueError):
    """The body is not the multipart/form-data it says it is."""


@dataclass
class Part:
    """The start of a part: its field name and, for a file, its file name."""

    name: str
    filename: str | None


class PartEnd:
    """The end of the current part."""


class MultipartStream:
    """multipart/form-data decoded as pieces arrive; a part's bytes come out as views of the
    piece they arrived in (no copy), so a file part can go straight to storage.

    Each `feed(piece)` returns the events it completed: `Part`, `memoryview` data, `PartEnd`;
    `done` turns True at the closing delimiter (what follows it, the epilogue, is ignored).
    """

    def __init__(self, boundary: bytes) -> None:
        self._delim = b"\r\n--" + boundary
        # The first delimiter has no line break before it: give it one.
        self._carry = b"\r\n"
        self._state = "preamble"  # preamble | headers | body | done
        self._parts = 0

    @property
    def done(self) -> bool:
        return self._state == "done"

    def feed(self, piece: bytes) -> list[object]:
        buf = self._carry + piece if self._carry else piece
        view = memoryview(buf)
        events: list[object] = []
        pos = 0
        delim = self._delim
        while self._state != "done":
            if self._state == "headers":
                if buf.startswith(b"\r\n", pos):
                    end, block = pos, ""  # a part without headers
                else:
                    end = buf.find(b"\r\n\r\n", pos)
                    if end < 0:
                        if len(buf) - pos > MAX_HEADER_BYTES:
                            raise MalformedBody("a part's headers are too long")
                        break
                    block = buf[pos:end].decode("utf-8", "replace")
                    end += 2
                events.append(self._part(block))
                pos, self._state = end + 2, "body"
                continue
            found = buf.find(delim, pos)
            if found < 0:
                # Keep what could be the start of a delimiter; the rest is the part's data.
                keep = max(pos, len(buf) - len(delim) + 1)
                if self._state == "body" and keep > pos:
                    events.append(view[pos:keep])
                pos = keep
                break
            after = found + len(delim)
            if buf[after : after + 1] not in (b"", b"-", b" ", b"\t", b"\r"):
                # The boundary string inside data, followed by more data: not a delimiter.
                if self._state == "body":
                    events.append(view[pos:after])
                pos = after
                continue
            line_end = buf.find(b"\r\n", after)
            if buf.startswith(b"--", after):
                if self._state == "body":
                    events.extend((view[pos:found], PartEnd()))
                self._state, pos = "done", len(buf)
                break
            if line_end < 0:  # the delimiter's line is not complete yet
                if len(buf) - after > 256:
                    raise MalformedBody("a boundary line is too long")
                if self._state == "body" and found > pos:
                    events.append(view[pos:found])
                pos = found
                break
            if buf[after:line_end].strip(b" \t"):
                # The boundary string inside data, followed by more data: not a delimiter.
                if self._state == "body":
                    events.append(view[pos:after])
                pos = after
                continue
            if self._state == "body":
                events.extend((view[pos:found], PartEnd()))
            self._parts += 1
            if self._parts > MAX_PARTS:
                raise MalformedBody(f"more than {MAX_PARTS} parts")
            pos, self._state = line_end + 2, "headers"
        self._carry = buf[pos:] if pos < len(buf) else b""
        return events

    @staticmethod
    def _part(block: str) -> Part:
        disposition = ""
        for line in block.split("\r\n"):
            key, _, value = line.partition(":")
            if key.strip().lower() == "content-disposition":
                disposition = value.strip()
        kind, options = parse_options_header(disposition)
        if kind != "form-data" or "name" not in options:
            raise MalformedBody("a part without Content-Disposition: form-data; name=...")
        return Part(options["name"], options.get("filename"))


def _reader() -> Callable[[], bytes]:
    """The body, a piece at a time. gunicorn terminates its input (Content-Length or chunked),
    so its own stream is read directly: werkzeug's LimitedStream would copy every piece once
    more. MAX_CONTENT_LENGTH holds either way (RequestEntityTooLarge, the JSON 413)."""
    limit = request.max_content_length
    length = request.content_length
    if length is not None and limit is not None and length > limit:
        raise RequestEntityTooLarge()
    if "wsgi.input_terminated" not in request.environ:
        stream = request.stream  # werkzeug's bounded wrapper
        return lambda: stream.read(READ_SIZE)
    raw = request.environ["wsgi.input"]
    total = 0

    def read() -> bytes:
        nonlocal total
        piece = raw.read(READ_SIZE)
        total += len(piece)
        if limit is not None and total > limit:
            raise RequestEntityTooLarge()
        return piece

    return read


@dataclass
class Received:
    """A complete, sniffed file part, written to storage but not yet kept (no row yet)."""

    attachment_id: str
    filename: str
    content_type: str
    upload: storage.Upload


def _drain(read: Callable[[], bytes]) -> None:
    """Read what is left of the body (bounded by MAX_CONTENT_LENGTH), so that an early refusal
    reaches a client still sending instead of a connection reset."""
    while read():
        pass


def receive_file(authorize: Callable[[str | None], ChatSession]) -> tuple[ChatSession, Received]:
    """Stream the `file` part of the request into storage; `authorize(session_id)` runs as soon
    as the session id is known (a query parameter, or the `session_id` field ahead of the file)
    so a stranger's bytes are never written. Returns the session and the received file."""
    boundary = request.mimetype_params.get("boundary", "").encode("latin-1", "replace")
    if not boundary or len(boundary) > 200:
        abort(400, "multipart/form-data without a valid boundary", "malformed_multipart")
    settings = current_settings()
    limit = settings.max_upload_bytes
    session_id = request.args.get("session_id")
    chat: ChatSession | None = None
    parser = MultipartStream(boundary)
    field_name: str | None = None  # the form field being read, or None in a file part
    field_bytes = 0
    value = bytearray()
    upload: storage.Upload | None = None
    sniffer: StreamSniffer | None = None
    filename = "file"
    writing = False  # in the `file` part (the first one; other file parts are skipped)
    read = _reader()
    try:
        while not parser.done:
            piece = read()
            if not piece:
                abort(400, "the multipart body ended early", "malformed_multipart")
            try:
                events = parser.feed(piece)
            except MalformedBody as exc:
                abort(400, f"malformed multipart/form-data body: {exc}", "malformed_multipart")
            for event in events:
                if isinstance(event, memoryview):
                    if writing:
                        assert upload is not None and sniffer is not None
                        if upload.size + len(event) > limit:
                            abort(
                                413,
                                f"file is larger than {settings.max_upload_mb} MB",
                                "file_too_large",
                            )
                        upload.write(event)
                        try:  # refused as soon as the verdict is certain (e.g. from the head)
                            sniffer.feed(event)
                        except UnsupportedFileType as exc:
                            abort(415, str(exc), "file_type_not_allowed")
                    elif field_name is not None:
                        field_bytes += len(event)
                        if field_bytes > MAX_FIELD_BYTES:
                            raise RequestEntityTooLarge("the form fields are too large")
                        value += event
                elif isinstance(event, Part):
                    field_name, value, writing = None, bytearray(), False
                    if event.filename is None:
                        field_name = event.name
                    elif event.name == "file" and upload is None:
                        if chat is None and session_id is not None:
                            chat = authorize(session_id)
                        if chat is not None and chat.status == "ended":
                            abort(409, "this session has ended", "session_not_active")
                        filename = event.filename or "file"
                        upload = storage.begin(new_id(), settings)
                        sniffer = StreamSniffer(filename)
                        writing = True
                elif isinstance(event, PartEnd):
                    if field_name == "session_id":
                        session_id = value.decode("utf-8", "replace")
                        if chat is None and upload is None:
                            chat = authorize(session_id)
                    field_name, writing = None, False
        if chat is None:
            chat = authorize(session_id)
        if upload is None or sniffer is None:
            abort(422, "a file is required", details={"file": ["Missing data for required field."]})
        if chat.status == "ended":
            abort(409, "this session has ended", "session_not_active")
        try:
            content_type = sniffer.finish(upload.reopen)
        except UnsupportedFileType as exc:
            abort(415, str(exc), "file_type_not_allowed")
        return chat, Received(upload.attachment_id, filename, content_type, upload)
    except BaseException:
        if upload is not None:
            upload.discard()
        if not parser.done:
            try:
                _drain(read)
            except Exception:  # the client went away, or the body is over MAX_CONTENT_LENGTH
                pass
        raise
