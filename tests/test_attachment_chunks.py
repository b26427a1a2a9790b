"""Database storage (the default) keeps an upload's bytes as `attachment_chunks` rows in the
attachment row's transaction (on PostgreSQL inserted as the body arrives): every accepted file
reads back whole, whatever cut its pieces arrived in; nothing of a refused, aborted or deleted
upload stays; files stored before migration 0008 (one
`attachment_blobs` row) stay readable, and the migration goes down and up on a database with
both kinds. On the suite's stack (web under gunicorn's gevent worker, real worker) and, for the
storage class itself, in this process; SQLite and PostgreSQL (TEST_DATABASE_URL)."""

from __future__ import annotations

import hashlib
import os
import random
import socket
import time
import uuid
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from models import storage
from models.chat import Attachment, AttachmentBlob, AttachmentChunk, ChatSession
from models.db import new_session, normalise_url
from tests.test_attachments import upload
from tests.test_upload_storage import multipart_head

PNG = b"\x89PNG\r\n\x1a\n"


def _pieces(db: Session, attachment_id: str) -> list[int]:
    """The sizes of an attachment's stored pieces, in order."""
    return list(
        db.scalars(
            sa.select(sa.func.length(AttachmentChunk.data))
            .where(AttachmentChunk.attachment_id == attachment_id)
            .order_by(AttachmentChunk.ordinal)
        )
    )


@pytest.fixture
def db(migrated_db: str) -> Iterator[Session]:
    session = new_session()
    try:
        yield session
    finally:
        session.close()


def _wait_settled(api, chat, attachment_id: str) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 20
    while True:
        got = api.http.get(f"/api/attachments/{attachment_id}", headers=api.auth(chat)).json()
        if got["status"] not in ("queued", "processing"):
            return got
        assert time.monotonic() < deadline, got
        time.sleep(0.1)


def test_accepted_upload_is_stored_in_pieces_and_parsed(api, chat, db):
    data = PNG + os.urandom(2_600_000)
    resp = upload(api, chat, "photo.png", data, "image/png")
    assert resp.status_code == 202, resp.text
    att_id = resp.json()["attachment_id"]
    att = db.get(Attachment, att_id)
    assert att is not None and att.storage_key == f"chunks:{att_id}"
    assert att.sha256 == hashlib.sha256(data).hexdigest() and att.size == len(data)
    sizes = _pieces(db, att_id)
    assert len(sizes) >= 3 and sum(sizes) == len(data)
    assert all(storage.MIN_CHUNK_BYTES <= n <= storage.CHUNK_BYTES for n in sizes[:-1])
    assert storage.load(db, att) == data
    assert db.get(AttachmentBlob, att_id) is None  # the old layout is only read
    assert _wait_settled(api, chat, att_id)["status"] == "done"


def test_docx_is_sniffed_from_its_stored_pieces_and_parsed(api, chat, db):
    """A ZIP's directory is read back from the pieces before the 202 (`reopen`)."""
    from tests.test_attachments import docx_bytes

    data = docx_bytes("The invoice for order 4410 is wrong. " + os.urandom(400_000).hex())
    resp = upload(api, chat, "invoice.docx", data)
    assert resp.status_code == 202, resp.text
    assert resp.json()["content_type"].endswith("wordprocessingml.document")
    got = _wait_settled(api, chat, resp.json()["attachment_id"])
    assert got["status"] == "done" and "order 4410" in got["preview"]


@pytest.mark.parametrize("with_session", [True, False])
def test_every_byte_is_stored_whatever_the_cut(api, db, with_session):
    """The storage class in this process (no gevent: statements inline; with the session on
    PostgreSQL, inserted as pieces arrive): pieces of any size arrive; rows are 256 KiB to
    1 MiB but the last; the bytes read back whole."""
    chat_id = api.create_session()["session_id"]
    rng = random.Random(10)
    size = 3 * storage.CHUNK_BYTES + 777
    data = rng.randbytes(size)
    cuts = [
        [size],
        [4096] * (size // 4096) + [size % 4096],
        [storage.MIN_CHUNK_BYTES - 1, 1, storage.CHUNK_BYTES + 5, 3],
        [rng.randint(1, 1_500_000) for _ in range(20)],
    ]
    for cut in cuts:
        up = storage.begin(str(uuid.uuid4()), db=db if with_session else None)
        view, done = memoryview(data), 0
        for n in cut:
            if done >= size:
                break
            up.write(view[done : done + n])
            done += n
        up.write(view[done:])
        assert up.reopen().read() == data
        att = Attachment(
            id=up.attachment_id,
            session_id=chat_id,
            filename="x.bin",
            content_type="application/octet-stream",
            size=up.size,
            sha256=up.sha256,
            status="done",
        )
        up.keep(db, att)
        db.add(att)
        db.commit()
        assert att.sha256 == hashlib.sha256(data).hexdigest()
        sizes = _pieces(db, att.id)
        assert sum(sizes) == size
        assert all(storage.MIN_CHUNK_BYTES <= n <= storage.CHUNK_BYTES for n in sizes[:-1])
        assert storage.load(db, att) == data


@pytest.mark.parametrize("with_session", [True, False])
def test_discarded_upload_leaves_no_pieces(api, db, with_session):
    up = storage.begin(str(uuid.uuid4()), db=db if with_session else None)
    up.write(os.urandom(700_000))
    up.write(os.urandom(100_000))
    up.end()
    up.discard()
    db.commit()
    assert _pieces(db, up.attachment_id) == []


def test_a_missing_piece_is_reported_not_parsed_short(api, chat, db):
    resp = upload(api, chat, "photo.png", PNG + os.urandom(1_200_000), "image/png")
    att_id = resp.json()["attachment_id"]
    _wait_settled(api, chat, att_id)
    db.execute(
        sa.delete(AttachmentChunk).where(
            AttachmentChunk.attachment_id == att_id, AttachmentChunk.ordinal == 1
        )
    )
    db.commit()
    with pytest.raises(storage.StoredFileMissing, match="incomplete"):
        storage.load(db, db.get(Attachment, att_id))


def test_aborted_upload_leaves_no_row_and_no_pieces(api, chat, db):
    """The client goes away with 1.5 of 2.5 MB sent: the transaction that held the pieces
    (PostgreSQL: inserted as they came) is rolled back; no attachment row, no pieces."""
    rows = db.scalar(sa.select(sa.func.count()).select_from(Attachment))
    pieces = db.scalar(sa.select(sa.func.count()).select_from(AttachmentChunk))
    db.rollback()
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
            + b"part of it " * 140_000
        )
        time.sleep(0.5)  # past the first pieces
    time.sleep(0.5)
    assert db.scalar(sa.select(sa.func.count()).select_from(Attachment)) == rows
    assert db.scalar(sa.select(sa.func.count()).select_from(AttachmentChunk)) == pieces
    # the server is fine afterwards
    assert upload(api, chat, "ok.txt", b"fine " * 1000).status_code == 202


def test_deleting_the_session_deletes_its_pieces(api, db):
    chat = api.create_session()
    ids = [
        upload(api, chat, f"n{i}.png", PNG + os.urandom(400_000), "image/png").json()[
            "attachment_id"
        ]
        for i in (1, 2)
    ]
    assert all(_pieces(db, i) for i in ids)
    db.rollback()
    resp = api.http.delete(f"/api/sessions/{chat['session_id']}", headers=api.auth(chat))
    assert resp.status_code == 204
    assert not any(_pieces(db, i) for i in ids)


def test_multipart_message_files_are_stored_in_pieces(api, chat, db):
    resp = api.http.post(
        f"/api/chat/sessions/{chat['session_id']}/messages",
        data={"message": "see the note"},
        files=[("attachments[]", ("note.txt", b"order 5521 arrived broken", "text/plain"))],
        headers=api.auth(chat),
    )
    assert resp.status_code == 202, resp.text
    att = db.scalars(sa.select(Attachment).where(Attachment.session_id == chat["session_id"])).one()
    assert att.storage_key == f"chunks:{att.id}"
    assert storage.load(db, att) == b"order 5521 arrived broken"


def test_migration_0008_keeps_old_blobs_readable_and_goes_down_and_up(api):
    """On a database with a file in the old layout: readable after the upgrade; a file stored
    in pieces after it, and the old one, both readable as blobs after the downgrade."""
    from alembic import command

    from models.migrate import alembic_config, upgrade
    from tests.conftest import database_url, drop_postgres, recreate_postgres

    url = database_url("_mig0008")
    pg = bool(os.environ.get("TEST_DATABASE_URL"))
    if pg:
        recreate_postgres(url)
    engine = sa.create_engine(normalise_url(url))
    old_bytes, new_bytes = os.urandom(300_000), os.urandom(2 * storage.CHUNK_BYTES + 5)

    def attachment(chat_id: str, data: bytes, key: str) -> Attachment:
        att_id = str(uuid.uuid4())
        return Attachment(
            id=att_id,
            session_id=chat_id,
            filename="f.bin",
            content_type="application/octet-stream",
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            storage_key=f"{key}:{att_id}",
            status="done",
        )

    try:
        upgrade(url, "0007_chunk_language")
        with Session(engine) as db:
            chat = ChatSession(token_hash="x" * 64)
            db.add(chat)
            db.flush()
            old = attachment(chat.id, old_bytes, "db")
            db.add(old)
            db.flush()
            db.add(AttachmentBlob(attachment_id=old.id, data=old_bytes))
            db.commit()
            chat_id, old_id = chat.id, old.id
        upgrade(url)
        with Session(engine) as db:
            assert storage.load(db, db.get(Attachment, old_id)) == old_bytes
            new = attachment(chat_id, new_bytes, "chunks")
            for ordinal, start in enumerate(range(0, len(new_bytes), storage.CHUNK_BYTES)):
                piece = new_bytes[start : start + storage.CHUNK_BYTES]
                db.add(AttachmentChunk(attachment_id=new.id, ordinal=ordinal, data=piece))
            db.add(new)
            db.commit()
            new_id = new.id
            assert storage.load(db, db.get(Attachment, new_id)) == new_bytes
        command.downgrade(alembic_config(url), "0007_chunk_language")
        with engine.connect() as conn:
            assert "attachment_chunks" not in sa.inspect(conn).get_table_names()
        with Session(engine) as db:
            for att_id, data in ((old_id, old_bytes), (new_id, new_bytes)):
                att = db.get(Attachment, att_id)
                assert att.storage_key == f"db:{att_id}"
                assert bytes(db.get(AttachmentBlob, att_id).data) == data
        upgrade(url)
        with Session(engine) as db:
            assert storage.load(db, db.get(Attachment, new_id)) == new_bytes
            assert db.scalar(sa.select(sa.func.count()).select_from(AttachmentChunk)) == 0
    finally:
        engine.dispose()
        if pg:
            drop_postgres(url)
