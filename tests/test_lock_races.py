"""A web request that loses a deadlock to a worker runs again instead of failing (webapp/db.py).

Real PostgreSQL and the real stack. A second connection plays a worker writing a result for
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


def _wait_for_blocked_delete(conn, session_id: str) -> None:  # type: ignore[no-untyped-def]
    """Until another backend waits on a lock: the DELETE's cascade has met our row (its
    text in pg_stat_activity may still read BEGIN, so it is not matched on)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        waiting = conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar()
        if waiting:
            return
        time.sleep(0.02)
    raise AssertionError(f"the DELETE of {session_id} never waited on our row")


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
        _wait_for_blocked_delete(watcher, sid)
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
