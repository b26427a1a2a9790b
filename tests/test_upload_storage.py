"""Uploads streamed into file storage (ATTACHMENT_STORAGE=file:///dir): one complete file per
accepted attachment, nothing left by a refused or aborted upload, files gone with their session.
A stack of its own (web + worker sharing the directory, as on one host); the main suite's stack
covers the default (file storage beside a SQLite database, the table on PostgreSQL) through
tests/test_attachments.py and tests/test_storage_default.py.

The streaming multipart reader and sniffer are also checked against every way a body can be cut
into pieces on its way in."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import random
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from models import storage
from models.chat import Attachment
from models.filetypes import StreamSniffer, UnsupportedFileType, sniff_content_type
from models.settings import Settings
from tests.client import Api, Socket
from tests.conftest import side_stack
from tests.test_attachments import docx_bytes, upload, upload_at_once
from webapp.uploads import MultipartStream, Part, PartEnd


def multipart_head(boundary: str, session_id: str, filename: str) -> bytes:
    """What a browser's FormData sends before the file's bytes: the session id field, then the
    file part's headers (the tests below send the rest themselves, whole, cut short or chunked)."""
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="session_id"\r\n\r\n'
        f"{session_id}\r\n--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n\r\n'
    ).encode()


@pytest.fixture(scope="module")
def files(logdir, tmp_path_factory) -> Iterator[tuple[Api, Path]]:  # type: ignore[no-untyped-def]
    directory = tmp_path_factory.mktemp("attachments")
    env = {"ATTACHMENT_STORAGE": f"file://{directory}", "MAX_UPLOAD_MB": "2"}
    with side_stack(logdir, "filestore", env, kb=False) as stack:
        api = Api(stack.urls[0])
        yield api, directory
        api.close()


def _names(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()} if directory.is_dir() else set()


def _settled(directory: Path, before: set[str], timeout: float = 5) -> set[str]:
    """The directory's new names once no `.part` is left (an aborted request ends a moment
    after its client has gone)."""
    deadline = time.monotonic() + timeout
    while True:
        new = _names(directory) - before
        if not any(n.endswith(".part") for n in new) or time.monotonic() > deadline:
            return new
        time.sleep(0.1)


def test_accepted_file_is_stored_once_and_parsed_from_disk(files):
    api, directory = files
    chat = api.create_session()
    sock = Socket(api.base_url, session_id=chat["session_id"], token=chat["token"])
    assert sock.recv()["type"] == "connected"
    data = docx_bytes("The invoice number is 4471.")
    before = _names(directory)
    resp = upload(api, chat, "invoice.docx", data)
    assert resp.status_code == 202, resp.text
    att_id = resp.json()["attachment_id"]
    assert _settled(directory, before) == {att_id}
    assert (directory / att_id).read_bytes() == data
    event = sock.until("attachment")[-1]
    assert event["status"] == "done" and "4471" in event["preview"]
    sock.close()


def test_session_id_after_the_file_and_in_the_query(files):
    api, directory = files
    chat = api.create_session()
    boundary = "b" + uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="late.txt"\r\n'
        f"\r\nwritten before the session was known\r\n"
        f'--{boundary}\r\nContent-Disposition: form-data; name="session_id"\r\n\r\n'
        f"{chat['session_id']}\r\n--{boundary}--\r\n"
    ).encode()
    headers = api.auth(chat) | {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    resp = api.http.post("/api/chat/upload", content=body, headers=headers)
    assert resp.status_code == 202, resp.text
    assert (directory / resp.json()["attachment_id"]).read_bytes().startswith(b"written before")
    resp = api.http.post(
        "/api/chat/upload",
        params={"session_id": chat["session_id"]},
        files={"file": ("q.txt", b"session id in the query")},
        headers=api.auth(chat),
    )
    assert resp.status_code == 202, resp.text


def test_chunked_body_without_content_length(files):
    api, directory = files
    chat = api.create_session()
    boundary = "b" + uuid.uuid4().hex
    data = b"\x89PNG\r\n\x1a\n" + os.urandom(1_500_000)
    body = (
        multipart_head(boundary, chat["session_id"], "chunked.png")
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    pieces = (body[i : i + 300_000] for i in range(0, len(body), 300_000))  # sent chunked
    headers = api.auth(chat) | {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    resp = api.http.post("/api/chat/upload", content=pieces, headers=headers)
    assert resp.status_code == 202, resp.text
    assert resp.json()["content_type"] == "image/png"
    assert (directory / resp.json()["attachment_id"]).read_bytes() == data


@pytest.mark.parametrize(
    ("name", "data", "status", "code"),
    [
        ("big.txt", b"a" * (2 * 1024 * 1024 + 1), 413, "file_too_large"),
        ("tool.pdf", b"\x7fELF" + b"\x00" * 5000, 415, "file_type_not_allowed"),
        # Decided while the body is still arriving (past the first 64 KiB):
        ("tool.pdf", b"\x7fELF" + b"\x00" * 300_000, 415, "file_type_not_allowed"),
        ("setup.exe", b"plain words " * 30_000, 415, "file_type_not_allowed"),
        ("bad.txt", b"plain words " * 30_000 + b"\xc3\x28" * 100, 415, "file_type_not_allowed"),
        ("notes.txt", b"text\x00with a NUL " * 9000, 415, "file_type_not_allowed"),
    ],
)
def test_refused_upload_leaves_nothing(files, name, data, status, code):
    api, directory = files
    chat = api.create_session()
    before = _names(directory)
    resp = upload(api, chat, name, data)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == code
    assert _settled(directory, before) == set()


def test_stranger_and_ended_session_write_nothing(files):
    api, directory = files
    chat, other = api.create_session(), api.create_session()
    before = _names(directory)
    resp = api.http.post(
        "/api/chat/upload",
        data={"session_id": chat["session_id"]},
        files={"file": ("a.txt", b"not yours " * 50_000)},
        headers=api.auth(other),
    )
    assert resp.status_code == 403
    api.http.patch(
        f"/api/sessions/{chat['session_id']}", json={"status": "ended"}, headers=api.auth(chat)
    )
    assert upload(api, chat, "b.txt", b"too late " * 50_000).status_code == 409
    assert _settled(directory, before) == set()


def test_aborted_upload_leaves_no_half_written_file(files):
    api, directory = files
    chat = api.create_session()
    before = _names(directory)
    boundary = "b" + uuid.uuid4().hex
    head = multipart_head(boundary, chat["session_id"], "cut.txt")
    url = urlparse(api.base_url)
    with socket.create_connection((url.hostname, url.port)) as conn:
        conn.sendall(
            (
                "POST /api/chat/upload HTTP/1.1\r\n"
                f"Host: {url.netloc}\r\nAuthorization: Bearer {chat['token']}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                "Content-Length: 2500000\r\n\r\n"
            ).encode()
            + head
            + b"part of it " * 140_000  # 1.5 of 2.5 MB: past the first 1 MiB read
        )
        deadline = time.monotonic() + 5
        while not any(n.endswith(".part") for n in _names(directory) - before):
            assert time.monotonic() < deadline, "the upload never started writing"
            time.sleep(0.05)
    assert _settled(directory, before) == set()


def test_sweeper_removes_parts_left_by_a_dead_process(files):
    api, directory = files
    directory.mkdir(parents=True, exist_ok=True)
    stale, fresh = directory / f".{uuid.uuid4()}.part", directory / f".{uuid.uuid4()}.part"
    stale.write_bytes(b"a web process died here")
    fresh.write_bytes(b"an upload still arriving")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    deadline = time.monotonic() + 15  # SWEEP_INTERVAL is 1 s in the suite
    while stale.exists():
        assert time.monotonic() < deadline, "the sweeper left a stale .part"
        time.sleep(0.2)
    assert fresh.exists()
    fresh.unlink()


def test_deleting_the_session_deletes_its_files(files):
    api, directory = files
    chat = api.create_session()
    ids = [
        upload(api, chat, f"n{i}.txt", b"keep me %d" % i).json()["attachment_id"] for i in (1, 2)
    ]
    assert all((directory / i).exists() for i in ids)
    assert (
        api.http.delete(f"/api/sessions/{chat['session_id']}", headers=api.auth(chat)).status_code
        == 204
    )
    assert not any((directory / i).exists() for i in ids)


def test_multipart_message_files_go_to_disk_too(files):
    api, directory = files
    chat = api.create_session()
    resp = api.http.post(
        f"/api/chat/sessions/{chat['session_id']}/messages",
        data={"message": "see the note"},
        files=[("attachments[]", ("note.txt", b"order 5521 arrived broken", "text/plain"))],
        headers=api.auth(chat),
    )
    assert resp.status_code == 202, resp.text
    got = api.http.get(
        f"/api/chat/sessions/{chat['session_id']}/messages", headers=api.auth(chat)
    ).json()
    [att] = [a for m in got["messages"] for a in m.get("attachments") or []]
    att_id = att["attachment_id"]
    assert (directory / att_id).read_bytes() == b"order 5521 arrived broken"


# -- the streaming pieces, cut every way --------------------------------------------------------
def _body(parts: list[tuple[str, str | None, bytes]], boundary: bytes) -> bytes:
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (
            f'; filename="{filename}"' if filename is not None else ""
        )
        out += b"--" + boundary + f"\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        out += data + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


def test_multipart_stream_reads_any_cut_of_a_body():
    rng = random.Random(7)
    for _ in range(150):
        boundary = b"----" + os.urandom(6).hex().encode()
        parts: list[tuple[str, str | None, bytes]] = [("session_id", None, b"abc")]
        for i in range(rng.randint(0, 3)):
            data = os.urandom(rng.choice([0, 1, 40, 5000, 70_000, 300_000]))
            if rng.random() < 0.4:  # the boundary's text inside the data, not as a delimiter
                data += b"\r\n--" + boundary + b"x" + data[:9]
            parts.append((rng.choice(["file", "other"]), f"f{i}.bin", data))
        body = _body(parts, boundary)
        if rng.random() < 0.3:
            body = b"a preamble\r\n" + body + b"an epilogue"
        stream, got, pos = MultipartStream(boundary), [], 0
        current: list = []
        while pos < len(body) and not stream.done:
            step = rng.choice([1, 7, 64, 1000, 65_536, 1 << 20])
            for event in stream.feed(body[pos : pos + step]):
                if isinstance(event, Part):
                    current = [event.name, event.filename, bytearray()]
                elif isinstance(event, PartEnd):
                    got.append((current[0], current[1], bytes(current[2])))
                else:
                    current[2] += event
            pos += step
        assert stream.done and got == parts


def _verdict(pieces: list[bytes], name: str) -> str:
    sniffer = StreamSniffer(name)
    try:
        for piece in pieces:
            sniffer.feed(piece)
        return sniffer.finish(lambda: io.BytesIO(b"".join(pieces)))
    except UnsupportedFileType as exc:
        return f"refused: {exc}"


def test_streamed_sniffing_matches_whole_file_sniffing():
    texts = ["plain words\n" * 9000, "naïve café ✓\n" * 9000, "<html><p>hi</p></html>", " \n "]
    samples = [t.encode(enc) for t in texts for enc in ("utf-8", "utf-8-sig", "utf-16", "utf-32")]
    samples += [
        b"",
        b"text\x00" * 20_000,
        b"\x01\x02" * 400 + b"x" * 70_000,
        ("é" * 40_000).encode()[:-1],  # a character cut in half at the very end
        b"\x89PNG\r\n\x1a\n" + os.urandom(80_000),
        b"%PDF-1.7" + os.urandom(80_000),
        b"\x7fELF" + bytes(90_000),
        docx_bytes("hello"),
        os.urandom(100_000),
    ]
    for data in samples:
        for name in ("a.txt", "b.md", "c.html", "d.pdf", "e.docx", "f.png", "g.sh", "noext"):
            try:
                whole = sniff_content_type(data, name)
            except UnsupportedFileType as exc:
                whole = f"refused: {exc}"
            for size in (1, 997, 65_536):
                if size == 1 and len(data) > 20_000:
                    continue
                pieces = [data[i : i + size] for i in range(0, len(data), size)]
                assert _verdict(pieces, name) == whole, (name, size, data[:20])


# -- the body read from gunicorn's socket, the file written unbuffered ---------------------------
def _responses(conn: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """`count` HTTP/1.1 responses (status, body) read off one connection, in order."""
    got: list[tuple[int, bytes]] = []
    data = b""
    while len(got) < count:
        while b"\r\n\r\n" not in data:
            more = conn.recv(65536)
            assert more, f"the connection closed after {len(got)} responses"
            data += more
        head, _, data = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next(
            int(line.split(":", 1)[1])
            for line in lines
            if line.lower().startswith("content-length:")
        )
        while len(data) < length:
            more = conn.recv(65536)
            assert more, "the connection closed inside a response"
            data += more
        got.append((int(lines[0].split()[1]), data[:length]))
        data = data[length:]
    return got


def test_requests_behind_an_upload_on_one_connection(files):
    """The upload's body is read straight from gunicorn's socket: what follows it on the same
    connection (the multipart epilogue, then pipelined requests) is still gunicorn's to read."""
    api, directory = files
    chat = api.create_session()
    url = urlparse(api.base_url)
    data = b"\x89PNG\r\n\x1a\n" + os.urandom(1_300_000)
    boundary = "b" + uuid.uuid4().hex
    body = (
        multipart_head(boundary, chat["session_id"], "p.png")
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    epilogue = b"an epilogue: ignored, but part of the body"
    body += epilogue
    request = (
        "POST /api/chat/upload HTTP/1.1\r\n"
        f"Host: {url.netloc}\r\nAuthorization: Bearer {chat['token']}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    follow = (
        f"GET /api/sessions/{chat['session_id']} HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Authorization: Bearer {chat['token']}\r\n\r\n"
    ).encode()
    with socket.create_connection((url.hostname, url.port)) as conn:
        # The epilogue after a pause (the server has the whole form before it arrives), then
        # the next requests behind it, pipelined.
        conn.sendall(request[: -len(epilogue)])
        time.sleep(0.5)
        conn.sendall(epilogue + follow + request + follow)
        answers = _responses(conn, 4)
    assert [status for status, _ in answers] == [202, 200, 202, 200]
    first, second = (json.loads(answers[i][1]) for i in (0, 2))
    assert first["attachment_id"] != second["attachment_id"]
    for att in (first, second):
        assert (directory / att["attachment_id"]).read_bytes() == data
    assert json.loads(answers[1][1])["session_id"] == chat["session_id"]


def test_a_body_shorter_than_its_length_closes_the_connection(files):
    """The client stops sending (half-close) before Content-Length: 400, nothing stored, and
    the connection is not reused (where a next request would start is unknown)."""
    api, directory = files
    chat = api.create_session()
    before = _names(directory)
    url = urlparse(api.base_url)
    boundary = "b" + uuid.uuid4().hex
    head = multipart_head(boundary, chat["session_id"], "short.txt")
    with socket.create_connection((url.hostname, url.port)) as conn:
        conn.sendall(
            (
                "POST /api/chat/upload HTTP/1.1\r\n"
                f"Host: {url.netloc}\r\nAuthorization: Bearer {chat['token']}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                "Content-Length: 900000\r\n\r\n"
            ).encode()
            + head
            + b"only some of it " * 20_000
        )
        conn.shutdown(socket.SHUT_WR)
        [(status, payload)] = _responses(conn, 1)
        assert status == 400
        assert json.loads(payload)["error"]["code"] == "malformed_multipart"
        conn.settimeout(10)
        assert conn.recv(1) == b""  # closed by the server
    assert _settled(directory, before) == set()


def test_concurrent_uploads_keep_their_own_bytes(files):
    """Receive buffers are reused from request to request and a piece is written while the next
    one arrives: uploads at once, each of several pieces, must each store exactly their bytes."""
    api, directory = files
    results, errors = upload_at_once(api, 4, 1_800_000, "c")
    assert not errors
    assert len(results) == 12
    for data, att in results:
        assert (directory / att["attachment_id"]).read_bytes() == data


@pytest.mark.parametrize("direct", [True, False])
def test_file_upload_writes_every_byte_whatever_the_cut(tmp_path, direct):
    """Direct I/O writes whole blocks from an aligned stage and the tail buffered; the file is
    the bytes given, for sizes around the block and stage sizes, cut into any pieces, read back
    before `keep` (a ZIP's directory) and after. A discarded upload leaves nothing."""
    settings = dataclasses.replace(
        Settings.from_env(),
        attachment_storage=f"file://{tmp_path}",
        attachment_direct_io=direct,
    )
    rng = random.Random(11)
    block, stage = 4096, storage.STAGE_SIZE
    sizes = [0, 1, block - 1, block, block + 1, stage - 1, stage, stage + 1, 3 * stage + 7]
    for size in sizes:
        data = rng.randbytes(size)
        upload_ = storage.begin(str(uuid.uuid4()), settings)
        pos = 0
        while pos < size:
            step = rng.choice([1, 100, block - 3, block, 70_000, stage + 5])
            upload_.write(memoryview(data)[pos : pos + step])
            pos += step
        with upload_.reopen() as f:
            assert f.read() == data
        att = Attachment(id=upload_.attachment_id)
        upload_.keep(None, att)  # type: ignore[arg-type]  (file storage writes no row)
        assert att.storage_key == f"file:{att.id}"
        assert (tmp_path / att.id).read_bytes() == data
        assert upload_.sha256 == hashlib.sha256(data).hexdigest()
    gone = storage.begin(str(uuid.uuid4()), settings)
    gone.write(memoryview(rng.randbytes(stage + 123)))
    gone.discard()
    assert not any(p.name.endswith(".part") for p in tmp_path.iterdir())
    assert len(list(tmp_path.iterdir())) == len(sizes)


def test_a_file_is_named_when_complete_and_removed_if_then_refused(tmp_path):
    """`end` (every byte in) gives the file its final name while the request still checks the
    session and quota; the row comes later, in `keep`. An upload refused after that (the quota,
    an ended session) must take the named file away, and the bytes read back are complete."""
    settings = dataclasses.replace(Settings.from_env(), attachment_storage=f"file://{tmp_path}")
    data = random.Random(5).randbytes(storage.STAGE_SIZE + 4099)
    refused = storage.begin(str(uuid.uuid4()), settings)
    refused.write(memoryview(data))
    refused.end()
    assert _names(tmp_path) == {refused.attachment_id}
    with refused.reopen() as f:
        assert f.read() == data
    refused.discard()
    assert _names(tmp_path) == set()

    kept = storage.begin(str(uuid.uuid4()), settings)
    kept.write(memoryview(data))
    kept.end()
    att = Attachment(id=kept.attachment_id)
    kept.keep(None, att)  # type: ignore[arg-type]  (file storage writes no row)
    assert _names(tmp_path) == {att.id}
    assert (tmp_path / att.id).read_bytes() == data


def _page_states(fd: int) -> tuple[int, int, int] | None:
    """(cached, dirty, under writeback) pages of the file `fd`, from Linux's `cachestat`
    (6.5 and later); None where the call is missing."""
    import ctypes
    import platform
    import sys

    numbers = {"x86_64": 451, "aarch64": 451}
    if not sys.platform.startswith("linux") or platform.machine() not in numbers:
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    span = (ctypes.c_uint64 * 2)(0, 0)  # offset 0, length 0: the whole file
    stat = (ctypes.c_uint64 * 5)()  # cache, dirty, writeback, evicted, recently evicted
    if libc.syscall(numbers[platform.machine()], fd, span, stat, 0) != 0:
        return None
    return stat[0], stat[1], stat[2]


def _dirty_until_flushed(directory: Path) -> bool:
    """Whether `cachestat` shows this filesystem's written pages dirty until `fdatasync` (not
    on tmpfs, which has no device to write them to)."""
    probe = directory / "probe"
    fd = os.open(probe, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"x" * 8192)
        written = _page_states(fd)
        os.fdatasync(fd)
        flushed = _page_states(fd)
    finally:
        os.close(fd)
        probe.unlink()
    return written is not None and flushed is not None and written[1] > 0 and flushed[1] == 0


def test_buffered_pieces_are_sent_to_the_device_as_they_are_written(tmp_path):
    """Buffered writes (the default) with ATTACHMENT_FSYNC: each piece's writeback starts as it
    is written, so the device writes while the next piece arrives and the final `fdatasync`
    before the row finds little left; without it the pages stay dirty (the kernel's own
    writeback waits up to 30 s) and that flush writes all of them. After `keep`, before any
    row is committed, no page of the file is dirty or still on its way to the device."""
    if not _dirty_until_flushed(tmp_path):
        pytest.skip("needs Linux's cachestat and a filesystem with a device (not tmpfs)")
    settings = dataclasses.replace(
        Settings.from_env(),
        attachment_storage=f"file://{tmp_path}",
        attachment_direct_io=False,
        attachment_fsync=True,
    )
    piece = 1024 * 1024
    data = random.Random(3).randbytes(4 * piece)
    upload_ = storage.begin(str(uuid.uuid4()), settings)
    for start in range(0, len(data), piece):
        upload_.write(memoryview(data)[start : start + piece])
    upload_.flush()
    fd = os.open(tmp_path / f".{upload_.attachment_id}{storage.PART_SUFFIX}", os.O_RDONLY)
    try:
        states = _page_states(fd)
        assert states is not None
        cached, dirty, _ = states
        assert cached > 0  # buffered: the bytes went through the page cache
        assert dirty < len(data) // 4096 // 4, states  # sent on their way, not left dirty
        att = Attachment(id=upload_.attachment_id)
        upload_.keep(None, att)  # type: ignore[arg-type]  (file storage writes no row)
        assert _page_states(fd)[1:] == (0, 0)  # type: ignore[index]
    finally:
        os.close(fd)
    assert (tmp_path / att.id).read_bytes() == data
