"""Where attachment bytes go when ATTACHMENT_STORAGE is unset: beside a SQLite database file (in
`<database file>-attachments`, which web and workers already share with the database), in the
database with PostgreSQL (web and workers may share no disk). And rows stored the other way
stay readable, parsed and deleted: `db:` rows under the file default (a SQLite deployment
upgraded from the old default), `file:` rows after ATTACHMENT_STORAGE=db is set explicitly.

The main suite's stack runs the default (files on SQLite, the table on PostgreSQL); a side stack
runs `ATTACHMENT_STORAGE=db` explicitly. Old rows are planted from this process as the web
stored them, with a deadline already past, so the stack's own sweeper sends their parse.
"""

from __future__ import annotations

import hashlib
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.base import new_id, utcnow
from models.chat import Attachment, AttachmentBlob
from models.db import make_engine
from models.settings import Settings, sqlite_attachments_dir
from models.work import ATTACHMENT, queue
from tests.client import Api
from tests.test_attachments import upload

SQLITE = not os.environ.get("TEST_DATABASE_URL")


# -- the choice ----------------------------------------------------------------------------------
@pytest.fixture
def bare_env(monkeypatch):  # type: ignore[no-untyped-def]
    for name in ("ATTACHMENT_STORAGE", "DATABASE_URL", "KB_STORE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_unset_storage_follows_the_database(bare_env, tmp_path):
    bare_env.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/data/site.db")
    assert Settings.from_env().attachment_storage == f"file://{tmp_path}/data/site.db-attachments"

    bare_env.chdir(tmp_path)  # a relative file is where SQLAlchemy opens it: the working directory
    bare_env.setenv("DATABASE_URL", "sqlite:///rel/x.db")
    assert Settings.from_env().attachment_storage == f"file://{tmp_path}/rel/x.db-attachments"

    bare_env.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/q.db?timeout=5")
    assert Settings.from_env().attachment_storage == f"file://{tmp_path}/q.db-attachments"

    for url in (
        "postgresql://u@db.example/helpline",
        "postgres://u:p@db.example/helpline",  # Heroku's spelling
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite:///file:mem?mode=memory&uri=true",
    ):
        bare_env.setenv("DATABASE_URL", url)
        assert Settings.from_env().attachment_storage == "db", url

    bare_env.delenv("DATABASE_URL")  # the built-in default, instance/helpline.db
    default = Settings.from_env()
    assert default.attachment_storage == "file://" + str(
        sqlite_attachments_dir(default.database_url)
    )
    assert default.attachment_storage.endswith("/instance/helpline.db-attachments")


def test_explicit_storage_wins_over_the_database(bare_env, tmp_path):
    bare_env.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/site.db")
    bare_env.setenv("ATTACHMENT_STORAGE", "db")
    assert Settings.from_env().attachment_storage == "db"
    bare_env.setenv("ATTACHMENT_STORAGE", f"file://{tmp_path}/elsewhere/")
    assert Settings.from_env().attachment_storage == f"file://{tmp_path}/elsewhere"
    bare_env.setenv("DATABASE_URL", "postgresql://u@db.example/helpline")
    bare_env.setenv("ATTACHMENT_STORAGE", "/srv/shared")
    assert Settings.from_env().attachment_storage == "file:///srv/shared"


# -- the running stack ---------------------------------------------------------------------------
def _sessions(url: str) -> tuple[sessionmaker[Session], object]:
    engine = make_engine(url)
    return sessionmaker(engine, expire_on_commit=False), engine


def _plant(
    factory: sessionmaker[Session],
    session_id: str,
    name: str,
    data: bytes,
    *,
    in_db: bool,
    att_id: str | None = None,
) -> str:
    """An attachment row as the web stored it under another setting (`db:` with its blob row,
    or `file:` naming a file already in place), overdue, so the stack's sweeper sends its parse."""
    att_id = att_id or new_id()
    att = Attachment(
        id=att_id,
        session_id=session_id,
        filename=name,
        content_type="text/plain",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        created_at=utcnow(),
        storage_key=f"db:{att_id}" if in_db else f"file:{att_id}",
    )
    queue(att, ATTACHMENT, utcnow() - timedelta(hours=1))
    with factory.begin() as db:
        db.add(att)
        if in_db:
            db.flush()  # the blob's foreign key names it
            db.add(AttachmentBlob(attachment_id=att_id, data=data))
    return att_id


def _parsed(api: Api, chat: dict, att_id: str, timeout: float = 60) -> dict:
    """The attachment once its parse ended (the sweeper sends it within a second or two)."""
    deadline = time.monotonic() + timeout
    while True:
        body = api.http.get(f"/api/attachments/{att_id}", headers=api.auth(chat)).json()
        if body["status"] in ("done", "failed") or time.monotonic() > deadline:
            return body
        time.sleep(0.3)


def _delete(api: Api, chat: dict) -> None:
    resp = api.http.delete(f"/api/sessions/{chat['session_id']}", headers=api.auth(chat))
    assert resp.status_code == 204, resp.text


def test_the_suite_stack_stores_by_default_where_its_database_says(stack, api):
    """On SQLite a new upload is a file beside the database and no blob row; on PostgreSQL a
    blob row and no directory. Either way the worker parses it and the delete removes it."""
    url = stack.env["DATABASE_URL"]
    beside = sqlite_attachments_dir(url)
    chat = api.create_session()
    data = b"Order 7731: the lid arrived cracked."
    resp = upload(api, chat, "default.txt", data)
    assert resp.status_code == 202, resp.text
    att_id = resp.json()["attachment_id"]
    factory, engine = _sessions(url)
    try:
        with factory() as db:
            att = db.get(Attachment, att_id)
            assert att is not None
            blob = db.get(AttachmentBlob, att_id)
            if SQLITE:
                assert beside is not None
                assert att.storage_key == f"file:{att_id}" and blob is None
                assert (beside / att_id).read_bytes() == data
            else:
                assert beside is None
                assert att.storage_key == f"db:{att_id}" and bytes(blob.data) == data
        body = _parsed(api, chat, att_id)
        assert body["status"] == "done" and "7731" in body["preview"], body
        _delete(api, chat)
        with factory() as db:
            assert db.get(Attachment, att_id) is None and db.get(AttachmentBlob, att_id) is None
        if beside is not None:
            assert not (beside / att_id).exists()
    finally:
        engine.dispose()  # type: ignore[attr-defined]


def test_rows_stored_in_the_database_stay_readable_under_the_default(stack, api):
    """A SQLite deployment upgraded to the file default keeps its old `db:` rows: the worker
    parses them from their blob rows, and deleting the conversation removes both the old row's
    bytes and the new file (on PostgreSQL both are `db:`; the same holds)."""
    url = stack.env["DATABASE_URL"]
    beside = sqlite_attachments_dir(url)
    chat = api.create_session()
    factory, engine = _sessions(url)
    try:
        old = _plant(
            factory, chat["session_id"], "old.txt", b"Invoice 5518 was kept in a table.", in_db=True
        )
        resp = upload(api, chat, "new.txt", b"Invoice 5519 is stored the new way.")
        assert resp.status_code == 202, resp.text
        new = resp.json()["attachment_id"]
        old_body = _parsed(api, chat, old)
        assert old_body["status"] == "done" and "5518" in old_body["preview"], old_body
        new_body = _parsed(api, chat, new)
        assert new_body["status"] == "done" and "5519" in new_body["preview"], new_body
        if beside is not None:
            assert (beside / new).exists() and not (beside / old).exists()
        _delete(api, chat)
        with factory() as db:
            left = db.scalars(
                select(AttachmentBlob.attachment_id).where(
                    AttachmentBlob.attachment_id.in_([old, new])
                )
            ).all()
            assert left == [] and db.get(Attachment, old) is None
        if beside is not None:
            assert not (beside / new).exists()
    finally:
        engine.dispose()  # type: ignore[attr-defined]


def test_explicit_db_storage_keeps_bytes_in_the_table(db_storage_stack):
    """ATTACHMENT_STORAGE=db on any database: the bytes are a blob row, and no directory is
    made beside a SQLite file."""
    stack, api = db_storage_stack
    url = stack.env["DATABASE_URL"]
    chat = api.create_session()
    data = b"Parcel 6604 is in the table."
    resp = upload(api, chat, "table.txt", data)
    assert resp.status_code == 202, resp.text
    att_id = resp.json()["attachment_id"]
    factory, engine = _sessions(url)
    try:
        with factory() as db:
            att = db.get(Attachment, att_id)
            blob = db.get(AttachmentBlob, att_id)
            assert att is not None and att.storage_key == f"db:{att_id}"
            assert blob is not None and bytes(blob.data) == data
        beside = sqlite_attachments_dir(url)
        assert beside is None or not beside.exists()
        body = _parsed(api, chat, att_id)
        assert body["status"] == "done" and "6604" in body["preview"], body
        _delete(api, chat)
        with factory() as db:
            assert db.get(AttachmentBlob, att_id) is None
    finally:
        engine.dispose()  # type: ignore[attr-defined]


@pytest.mark.skipif(not SQLITE, reason="files beside the database exist only with SQLite")
def test_files_of_the_sqlite_default_stay_readable_under_explicit_db(db_storage_stack):
    """A SQLite deployment that stored files by default, then set ATTACHMENT_STORAGE=db: its
    `file:` rows are read from the directory beside the database, and deleted with it."""
    stack, api = db_storage_stack
    url = stack.env["DATABASE_URL"]
    beside = sqlite_attachments_dir(url)
    assert beside is not None
    chat = api.create_session()
    factory, engine = _sessions(url)
    att_id = new_id()
    beside.mkdir(parents=True, exist_ok=True)
    path: Path = beside / att_id
    path.write_bytes(b"Ticket 9012 was a file beside the database.")
    try:
        _plant(
            factory, chat["session_id"], "beside.txt", path.read_bytes(), in_db=False, att_id=att_id
        )
        body = _parsed(api, chat, att_id)
        assert body["status"] == "done" and "9012" in body["preview"], body
        _delete(api, chat)
        assert not path.exists()
    finally:
        path.unlink(missing_ok=True)
        engine.dispose()  # type: ignore[attr-defined]


@pytest.mark.skipif(not SQLITE, reason="files beside the database exist only with SQLite")
def test_sweep_removes_old_files_no_row_names(stack, api):
    """A file beside the database that no row names (a process died between the rename and the
    commit) goes once it is an hour old; a file its row names, and a young one, stay."""
    from models import storage
    from models.db import session_scope

    beside = sqlite_attachments_dir(stack.env["DATABASE_URL"])
    assert beside is not None
    chat = api.create_session()
    resp = upload(api, chat, "kept.txt", b"Order 4410 keeps its file.")
    assert resp.status_code == 202, resp.text
    kept = beside / resp.json()["attachment_id"]
    orphan, young = beside / new_id(), beside / new_id()
    orphan.write_bytes(b"nobody's")
    young.write_bytes(b"its row is about to be committed")
    two_hours_ago = time.time() - 7200
    for path in (kept, orphan):
        os.utime(path, (two_hours_ago, two_hours_ago))
    try:
        with session_scope() as db:
            storage.sweep_orphans(db)
        assert not orphan.exists()  # (or the stack's own sweeper took it first)
        assert kept.exists() and young.exists()
    finally:
        young.unlink(missing_ok=True)
        orphan.unlink(missing_ok=True)
