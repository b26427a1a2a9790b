"""Multipart uploads (POST /api/chat/upload, POST /api/kb/documents) streamed once from the
socket: decoded as they arrive, the file part handed piece by piece to where it is kept.

Under gunicorn the body of known length is received with `recv_into` straight into two reused
1 MiB buffers (`BodyReader`), so the kernel's copy is the only one before storage; any other
server's input is read and copied once into the same buffers. The multipart decoder scans each
buffer in place (the few bytes that could start a delimiter are carried to the front of the next
one) and hands out the file part's bytes as views of it: an attachment goes straight to its
final store (`models.storage`), hashed and sniffed on the way, checked against MAX_UPLOAD_MB as
it grows. No SpooledTemporaryFile, no second copy of the file, no parsing: the `files` worker
reads and parses it later. The form fields are small and bounded.

Everything refused (too large, wrong type, bad session, aborted body) discards what was written.
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, Protocol

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header

from models import storage
from models.base import new_id
from models.chat import ChatSession
from models.filetypes import StreamSniffer, UnsupportedFileType
from webapp.config import current_settings
from webapp.errors import abort

READ_SIZE = 1024 * 1024  # the most one receive asks for (a loopback recv gives up to ~1 MiB)
MAX_FIELD_BYTES = 64 * 1024  # every field but the file, together (a session id is 36)
MAX_HEADER_BYTES = 16 * 1024  # one part's header block
MAX_PARTS = 50


# What may follow a delimiter's boundary string: `--`, the line's end, or whitespace before it.
_AFTER_DELIMITER = frozenset(b"- \t\r")


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
        """The next piece of the body (any size, any cut). Data events are views of a buffer
        made for this call: the carry (a possible delimiter's start) joined to `piece`."""
        buf = self._carry + piece if self._carry else piece
        return self.scan(buf, len(buf))

    @property
    def carry(self) -> bytes:
        """What the next scan must begin with: the unfinished end of the previous one."""
        return self._carry

    def scan(self, buf: bytes | bytearray, end: int) -> list[object]:
        """Decode `buf[:end]`, which begins with `carry` (the caller put it there: a reader
        that fills its own buffer copies these few bytes instead of joining every piece to
        them). Data events are views of `buf`, valid until `buf` is filled again."""
        view = memoryview(buf)
        events: list[object] = []
        pos = 0
        delim = self._delim
        while self._state != "done":
            if self._state == "headers":
                if buf.startswith(b"\r\n", pos, end):
                    stop, block = pos, ""  # a part without headers
                else:
                    stop = buf.find(b"\r\n\r\n", pos, end)
                    if stop < 0:
                        if end - pos > MAX_HEADER_BYTES:
                            raise MalformedBody("a part's headers are too long")
                        break
                    block = bytes(buf[pos:stop]).decode("utf-8", "replace")
                    stop += 2
                events.append(self._part(block))
                pos, self._state = stop + 2, "body"
                continue
            found = buf.find(delim, pos, end)
            if found < 0:
                # Keep what could be the start of a delimiter; the rest is the part's data.
                keep = max(pos, end - len(delim) + 1)
                if self._state == "body" and keep > pos:
                    events.append(view[pos:keep])
                pos = keep
                break
            after = found + len(delim)
            if after < end and buf[after] not in _AFTER_DELIMITER:
                # The boundary string inside data, followed by more data: not a delimiter.
                if self._state == "body":
                    events.append(view[pos:after])
                pos = after
                continue
            line_end = buf.find(b"\r\n", after, end)
            if buf.startswith(b"--", after, end):
                if self._state == "body":
                    events.extend((view[pos:found], PartEnd()))
                self._state, pos = "done", end
                break
            if line_end < 0:  # the delimiter's line is not complete yet
                if end - after > 256:
                    raise MalformedBody("a boundary line is too long")
                if self._state == "body" and found > pos:
                    events.append(view[pos:found])
                pos = found
                break
            if bytes(buf[after:line_end]).strip(b" \t"):
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
        self._carry = bytes(buf[pos:end]) if pos < end else b""
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


# Receive buffers are reused from request to request: memory the process has touched before
# costs nothing to fill again, while a fresh 1 MiB block costs its page faults (about 0.5 ms a
# MiB on this VM: a 5 MB upload read into new buffers paid ~2.5 ms for them, and gunicorn's own
# reading path allocated and copied each piece four times more).
BUFFER_SIZE = READ_SIZE + MAX_HEADER_BYTES + 1024  # a piece plus the longest carry
_IDLE_BUFFERS: list[bytearray] = []
MAX_IDLE_BUFFERS = 8  # 8 MiB kept at most between requests


def _take_buffer() -> bytearray:
    try:  # pop() is atomic: safe under threaded workers too
        return _IDLE_BUFFERS.pop()
    except IndexError:
        return bytearray(BUFFER_SIZE)


def _give_buffer(buf: bytearray) -> None:
    if len(_IDLE_BUFFERS) < MAX_IDLE_BUFFERS:
        _IDLE_BUFFERS.append(buf)


class _Source(ABC):
    """Where the body's bytes come from: `read_into(view)` fills the front of `view` and says
    how many bytes it wrote, 0 at the end of the body."""

    @abstractmethod
    def read_into(self, view: memoryview) -> int: ...

    @abstractmethod
    def failed(self) -> None:
        """The body was not read to its end: the connection cannot carry another request."""


class _SocketSource(_Source):
    """gunicorn's socket, read directly with `recv_into` for exactly the body's remaining
    Content-Length, taking first what gunicorn already read past the headers.

    gunicorn's own reader (`Body` → `LengthReader` → `Unreader`) returns bytes it collected
    in BytesIO buffers: every piece allocated by `recv` and copied three to four times on the
    way. Here the only copy is the kernel's into our reused buffer. gunicorn is told the body is
    consumed (its `LengthReader` has nothing left, so its drain before the next request on the
    connection reads nothing), and marked failed if we stop early, so it closes the connection.
    """

    def __init__(self, body: Any, sock: Any) -> None:
        self._body = body
        reader = body.reader
        remaining = reader.length
        pending = body.reader.unreader.take_buffered()
        if len(pending) > remaining:  # a pipelined next request: give it back
            reader.unreader.unread(pending[remaining:])
            pending = pending[:remaining]
        reader.length = 0  # ours now, whatever happens
        self._pending = memoryview(pending)
        self._remaining = remaining
        self._sock = sock

    @classmethod
    def of(cls, environ: dict) -> _SocketSource | None:
        """For gunicorn's HTTP/1 body of known length, untouched so far; None otherwise (a
        chunked body, another server, a body someone already read from)."""
        body, sock = environ.get("wsgi.input"), environ.get("gunicorn.socket")
        reader = getattr(body, "reader", None)
        unreader = getattr(reader, "unreader", None)
        if (
            sock is None
            or type(body).__module__ != "gunicorn.http.body"
            or type(reader).__name__ != "LengthReader"
            or getattr(unreader, "sock", None) is not sock
            or not hasattr(unreader, "take_buffered")
            or not hasattr(sock, "recv_into")
            or not hasattr(body, "failed")
            or body.buf.tell()
            or not isinstance(reader.length, int)
        ):
            return None
        return cls(body, sock)

    def read_into(self, view: memoryview) -> int:
        if self._pending:
            n = min(len(view), len(self._pending))
            view[:n] = self._pending[:n]
            self._pending = self._pending[n:]
            self._remaining -= n
            return n
        if self._remaining <= 0:
            return 0
        n = self._sock.recv_into(view, min(len(view), self._remaining))
        if n == 0:  # the client closed its side with the body unfinished
            self.failed()
            return 0
        self._remaining -= n
        return n

    def failed(self) -> None:
        if self._remaining > 0:
            self._body.failed = True


class _StreamSource(_Source):
    """Any other WSGI input: read a piece, copy it into the buffer. gunicorn terminates its
    input (Content-Length or chunked), so its stream is read directly; otherwise werkzeug's
    bounded `request.stream`. MAX_CONTENT_LENGTH holds either way."""

    def __init__(self, limit: int | None) -> None:
        if "wsgi.input_terminated" in request.environ:
            self._stream = request.environ["wsgi.input"]
        else:
            self._stream = request.stream  # werkzeug's bounded wrapper
        self._limit = limit
        self._total = 0
        self._piece = memoryview(b"")

    def read_into(self, view: memoryview) -> int:
        if not self._piece:
            self._piece = memoryview(self._stream.read(min(len(view), READ_SIZE)))
            self._total += len(self._piece)
            if self._limit is not None and self._total > self._limit:
                raise RequestEntityTooLarge()
        n = min(len(view), len(self._piece))
        view[:n] = self._piece[:n]
        self._piece = self._piece[n:]
        return n

    def failed(self) -> None:
        """werkzeug's stream and gunicorn's chunked reader end the connection themselves."""


class BodyReader:
    """The request body into two reused buffers, filled in turn, so a piece handed to storage
    (hashed and written in a native thread) stays intact while the next one is received.

    `fill(carry)` puts `carry` (the parser's unfinished tail) at the front of the next buffer
    and receives after it; `before_fill(buffer)` runs first, so the caller can wait for any
    piece of that buffer still in flight. `close()` gives the buffers back: call it only when
    nothing reads them any more."""

    def __init__(self, before_fill: Callable[[bytearray], None] | None = None) -> None:
        limit = request.max_content_length
        length = request.content_length
        if length is not None and limit is not None and length > limit:
            raise RequestEntityTooLarge()
        self._source = _SocketSource.of(request.environ) or _StreamSource(limit)
        self._buffers = [_take_buffer(), _take_buffer()]
        self._turn = 0
        self.before_fill = before_fill
        self.ended = False

    def fill(self, carry: bytes) -> tuple[bytearray, int]:
        """The next buffer and where its bytes end: `carry` then at least one new byte, or
        `carry` alone once the body has ended (`ended` turns True)."""
        buf = self._buffers[self._turn]
        self._turn ^= 1
        if self.before_fill is not None:
            self.before_fill(buf)
        start = len(carry)
        buf[:start] = carry
        n = self._source.read_into(memoryview(buf)[start : READ_SIZE + start])
        if n == 0:
            self.ended = True
        return buf, start + n

    def drain(self) -> None:
        """Read what is left of the body (bounded by MAX_CONTENT_LENGTH), so that an early
        refusal reaches a client still sending instead of a connection reset; if that fails,
        the connection is not reused."""
        if self.ended:
            return
        view = memoryview(self._buffers[0])[:READ_SIZE]
        try:
            while self._source.read_into(view):
                pass
        except Exception:  # the client went away, or the body is over MAX_CONTENT_LENGTH
            self._source.failed()
        self.ended = True

    def close(self) -> None:
        for buf in self._buffers:
            _give_buffer(buf)
        self._buffers = []


@dataclass
class Received:
    """A complete, sniffed file part, written to storage but not yet kept (no row yet)."""

    attachment_id: str
    filename: str
    content_type: str
    upload: storage.Upload


class Sink(Protocol):
    """Where a file part's bytes go as they arrive (`models.storage.Upload`, or memory)."""

    size: int

    def write(self, chunk: memoryview) -> None: ...

    def release(self, buffer: bytearray) -> None: ...

    def end(self) -> None: ...

    def flush(self) -> None: ...

    def reopen(self) -> IO[bytes]: ...

    def discard(self) -> None: ...


class MemorySink:
    """A file part kept in memory (a knowledge-base document, stored in its row)."""

    def __init__(self) -> None:
        self.size = 0
        self.data = bytearray()

    def write(self, chunk: memoryview) -> None:
        self.size += len(chunk)
        self.data += chunk  # a copy: nothing refers to the receive buffer afterwards

    def release(self, buffer: bytearray) -> None:
        """Nothing in flight: writes are copies made at once."""

    def end(self) -> None:
        """Nothing to make durable: the bytes go into a row."""

    def flush(self) -> None:
        """Nothing in flight."""

    def reopen(self) -> IO[bytes]:
        return io.BytesIO(self.data)

    def discard(self) -> None:
        self.data = bytearray()


@dataclass
class Form:
    """A streamed multipart form: its small fields and its one file, complete and sniffed."""

    fields: dict[str, str]
    sink: Sink
    filename: str  # as sent (may be empty)
    content_type: str


def stream_form(
    file_field: str,
    begin: Callable[[str, dict[str, str]], Sink],
    max_file_bytes: int,
    max_file_mb: int,
    on_field: Callable[[str, str], None] | None = None,
) -> Form:
    """Read a multipart/form-data body once, as it arrives: small fields into `fields`, the
    first part named `file_field` that carries a file name into the sink `begin(filename,
    fields so far)` returns, checked against `max_file_bytes` (413 `file_too_large`) and
    sniffed (415 `file_type_not_allowed`) as it grows, so a refusal comes as soon as it is
    certain. `on_field(name, value)` sees each field as it completes (e.g. to authorize the
    request before a byte of the file is stored). Other file parts are skipped.

    Anything refused or cut short discards what the sink received (`Sink.discard`) and drains
    what is left of the body (at most MAX_CONTENT_LENGTH) so the client reads the JSON error.
    """
    boundary = request.mimetype_params.get("boundary", "").encode("latin-1", "replace")
    if not boundary or len(boundary) > 200:
        abort(400, "multipart/form-data without a valid boundary", "malformed_multipart")
    parser = MultipartStream(boundary)
    fields: dict[str, str] = {}
    field_name: str | None = None  # the form field being read, or None in a file part
    field_bytes = 0
    value = bytearray()
    sink: Sink | None = None
    sniffer: StreamSniffer | None = None
    filename = ""
    writing = False  # in the file part
    wrote = False  # a piece went to the sink since the last fill

    def before_fill(buffer: bytearray) -> None:
        # The buffer about to be filled held the pieces of two fills ago; a later write has
        # waited for them already, unless the last fill gave the sink nothing.
        if sink is not None and not wrote:
            sink.release(buffer)

    reader = BodyReader(before_fill)
    try:
        while not parser.done:
            buf, end = reader.fill(parser.carry)
            wrote = False
            if reader.ended:
                abort(400, "the multipart body ended early", "malformed_multipart")
            try:
                events = parser.scan(buf, end)
            except MalformedBody as exc:
                abort(400, f"malformed multipart/form-data body: {exc}", "malformed_multipart")
            for event in events:
                if isinstance(event, memoryview):
                    if writing:
                        assert sink is not None and sniffer is not None
                        if sink.size + len(event) > max_file_bytes:
                            abort(413, f"file is larger than {max_file_mb} MB", "file_too_large")
                        sink.write(event)
                        wrote = True
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
                    elif event.name == file_field and sink is None:
                        filename = event.filename
                        sink = begin(filename, fields)
                        sniffer = StreamSniffer(filename)
                        writing = True
                elif isinstance(event, PartEnd):
                    if field_name is not None and field_name not in fields:
                        fields[field_name] = value.decode("utf-8", "replace")
                        if on_field is not None:
                            on_field(field_name, fields[field_name])
                    field_name, writing = None, False
        if sink is not None:
            # Every byte has arrived: file storage starts its flushes as soon as the last
            # piece is written, while that piece's sha256 may still be running.
            sink.end()
            sink.flush()  # the last piece is written and hashed: no buffer is in use any more
        reader.drain()  # an epilogue after the closing delimiter
        if sink is None or sniffer is None:
            abort(422, "a file is required", details={"file": ["Missing data for required field."]})
        try:
            content_type = sniffer.finish(sink.reopen)
        except UnsupportedFileType as exc:
            abort(415, str(exc), "file_type_not_allowed")
        return Form(fields, sink, filename, content_type)
    except BaseException:
        if sink is not None:
            sink.discard()  # waits for a piece in flight: the buffers are free after it
        reader.drain()
        raise
    finally:
        reader.close()


def receive_file(authorize: Callable[[str | None], ChatSession]) -> tuple[ChatSession, Received]:
    """Stream the `file` part of the request into attachment storage; `authorize(session_id)`
    runs as soon as the session id is known (a query parameter, or the `session_id` field ahead
    of the file) so a stranger's bytes are never written. Returns the session and the file."""
    settings = current_settings()
    session_id = request.args.get("session_id")
    chat: ChatSession | None = None

    began = False

    def on_field(name: str, value: str) -> None:
        nonlocal chat, session_id
        if name == "session_id":
            session_id = value
            if chat is None and not began:
                chat = authorize(session_id)

    def begin(filename: str, fields: dict[str, str]) -> storage.Upload:
        nonlocal chat, began
        began = True
        if chat is None and session_id is not None:
            chat = authorize(session_id)
        if chat is not None and chat.status == "ended":
            abort(409, "this session has ended", "session_not_active")
        return storage.begin(new_id(), settings)

    form = stream_form(
        "file", begin, settings.max_upload_bytes, settings.max_upload_mb, on_field=on_field
    )
    upload = form.sink
    assert isinstance(upload, storage.Upload)
    try:
        upload.end()  # started by stream_form already (file storage: the flushes run on)
        if chat is None:
            chat = authorize(session_id)
        if chat.status == "ended":
            abort(409, "this session has ended", "session_not_active")
    except BaseException:
        upload.discard()
        raise
    filename = form.filename or "file"
    return chat, Received(upload.attachment_id, filename, form.content_type, upload)
