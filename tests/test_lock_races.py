"""Row-lock races between the web and the worker, on real PostgreSQL and the real stack.

A web request that loses a deadlock to a worker runs again instead of failing (webapp/db.py);
the worker takes a session's locks in the web's order (the counter first); and work whose
attempt PostgreSQL aborted is handed back, so its retry finishes it at once
(models/work.py `handing_back`).

The first test: A second connection plays a worker writing a result for
the conversation the way the parse of a file does (worker/attachments.py `settle`): it holds a
row that belongs to the session, then wants the session's counter. Meanwhile the customer
deletes the conversation: the DELETE holds the session's row and cascades into the rows that
go with it. Each waits on the other; PostgreSQL aborts one of them, the DELETE here (its
deadlock check comes first). The aborted transaction wrote nothing, so the request runs again
and answers 204; it used to answer 500.
"""

from __future__ import annotations

import os
import threading
import time

import httpx
import pytest
from sqlalchemy import text

from models import db as dbmod
from tests.conftest import database_url

pytestmark = pytest.mark.skipif(
    not os.environ.get("TEST_DATABASE_URL"), reason="row locks: PostgreSQL (TEST_DATABASE_URL)"
)


def _wait_for_blocked(conn, what: str, query: str = "%") -> list[int]:  # type: ignore[no-untyped-def]
    """Until another backend whose statement is LIKE `query` waits on a lock: `what` has met a
    row we hold (a DELETE's text may still read BEGIN there, hence the default); their pids.
    Each look is its own transaction: PostgreSQL keeps one snapshot of pg_stat_activity per
    transaction."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        waiting = (
            conn.execute(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database() AND pid <> pg_backend_pid() "
                    "AND query ILIKE :query"
                ),
                {"query": query},
            )
            .scalars()
            .all()
        )
        conn.rollback()
        if waiting:
            return list(waiting)
        time.sleep(0.02)
    raise AssertionError(f"{what} never waited on our row")


def test_delete_that_loses_a_deadlock_to_a_worker_runs_again(api) -> None:  # type: ignore[no-untyped-def]
    chat = api.create_session()
    sid = chat["session_id"]
    assert api.send(chat, "How do I reset my password?", wait=20).status_code in (200, 202)
    api.wait_for(chat, lambda ms: any(m["role"] == "assistant" for m in ms))

    engine = dbmod.make_engine(database_url())
    watcher = engine.connect()
    worker = engine.connect()
    answer: list[httpx.Response] = []
    try:
        # The "worker" leaves the deadlock check to the other side, so the web is the one
        # PostgreSQL aborts (its default deadlock_timeout is 1 s).
        worker.execute(text("SET deadlock_timeout = '30s'"))
        worker.execute(
            text("UPDATE messages SET status = status WHERE session_id = :sid"), {"sid": sid}
        )
        deleting = threading.Thread(
            target=lambda: answer.append(
                api.http.delete(f"/api/sessions/{sid}", headers=api.auth(chat))
            )
        )
        deleting.start()
        _wait_for_blocked(watcher, f"the DELETE of {sid}")
        # Now the counter, as `settle` takes it after the attachment's row: a deadlock.
        worker.execute(
            text("UPDATE chat_sessions SET last_seq = last_seq WHERE id = :sid"), {"sid": sid}
        )
        worker.commit()
        deleting.join(30)
    finally:
        worker.close()
        watcher.close()
        engine.dispose()
    [resp] = answer
    assert resp.status_code == 204, resp.text
    gone = api.http.get(f"/api/sessions/{sid}", headers=api.auth(chat))
    assert gone.status_code in (401, 404), gone.text


def _upload(api, chat: dict, body: bytes) -> str:  # type: ignore[no-untyped-def]
    resp = api.http.post(
        "/api/chat/upload",
        data={"session_id": chat["session_id"]},
        files={"file": ("order-note.txt", body, "text/plain")},
        headers=api.auth(chat),
    )
    assert resp.status_code == 202, resp.text
    return resp.json()["attachment_id"]


def _attachment(conn, attachment_id: str):  # type: ignore[no-untyped-def]
    return conn.execute(
        text("SELECT status, attempts, error FROM attachments WHERE id = :aid"),
        {"aid": attachment_id},
    ).one()


def _wait_processed(conn, attachment_id: str, timeout: float = 20):  # type: ignore[no-untyped-def]
    """The attachment's row once its parse settled; well inside the claim's lease
    (`task_lease`: the task time limit + 15 s), which is what recovers a claim left held."""
    deadline = time.monotonic() + timeout
    while True:
        row = _attachment(conn, attachment_id)
        conn.rollback()
        if row.status not in ("queued", "processing") or time.monotonic() > deadline:
            return row
        time.sleep(0.1)


def test_a_parse_result_waits_for_the_session_before_it_locks_the_file(api) -> None:  # type: ignore[no-untyped-def]
    """The web stores a message and then links its files (session counter, then the file's
    row); a parse result taken the other way round deadlocked with it and the file waited a
    minute for its claim to run out. Now, while a web write holds the session's counter, the
    worker waits for it without holding the file's row."""
    chat = api.create_session()
    sid = chat["session_id"]
    engine = dbmod.make_engine(database_url())
    watcher = engine.connect()
    web = engine.connect()
    try:
        web.execute(text("SET lock_timeout = '5s'"))
        web.execute(
            text("UPDATE chat_sessions SET last_seq = last_seq WHERE id = :sid"), {"sid": sid}
        )
        attachment_id = _upload(api, chat, b"Order 4417: the lid is cracked.\n")
        _wait_for_blocked(watcher, "the parse's result", "%chat_sessions%")
        # What the message's store does next: link the file. It must not wait on the worker.
        web.execute(
            text("UPDATE attachments SET message_id = message_id WHERE id = :aid"),
            {"aid": attachment_id},
        )
        web.commit()
        row = _wait_processed(watcher, attachment_id)
    finally:
        web.close()
        watcher.close()
        engine.dispose()
    assert (row.status, row.attempts, row.error) == ("done", 1, None)


def test_a_parse_whose_transaction_is_aborted_is_retried_at_once(api) -> None:  # type: ignore[no-untyped-def]
    """The worker's transaction is aborted under it (here its backend is terminated while it
    waits for the session's counter; a deadlock victim or a failover looks the same to it).
    The task hands its claim back before it retries, so the retry takes the file and finishes
    it, instead of finding its own claim held until the lease runs out."""
    chat = api.create_session()
    sid = chat["session_id"]
    engine = dbmod.make_engine(database_url())
    watcher = engine.connect()
    web = engine.connect()
    try:
        web.execute(
            text("UPDATE chat_sessions SET last_seq = last_seq WHERE id = :sid"), {"sid": sid}
        )
        attachment_id = _upload(api, chat, b"Order 4418: the handle is loose.\n")
        [pid] = _wait_for_blocked(watcher, "the parse's result", "%chat_sessions%")
        assert _attachment(watcher, attachment_id).status == "processing"  # claimed
        ended = watcher.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
        watcher.rollback()
        assert ended
        web.commit()
        row = _wait_processed(watcher, attachment_id)
    finally:
        web.close()
        watcher.close()
        engine.dispose()
    assert (row.status, row.error) == ("done", None)
    assert row.attempts == 2  # the aborted attempt's claim, then the retry's
