"""SQLite's checkpoint, taken off the web's commits (models/db.py, `Checkpointer`).

By default the commit that takes the write-ahead log past 1,000 pages copies the log into the
database file and flushes both, inside the commit: a 5 MB attachment stored in the database
did that on its own request's path. The web's connections now leave it to a background
checkpointer (a native thread of gevent's pool). These tests run real SQLite in a child
process patched by gevent, as the web is, through `get_engine` and the real models:

- a large commit leaves the database file as it was (no checkpoint in the commit), and the
  checkpointer then copies it;
- back-to-back writes while readers hold snapshots (the case where the log never starts over
  by itself and a plain background checkpoint let it grow to 85 MB) keep the log bounded, and
  every blob written meanwhile reads back byte for byte;
- through a running stack with ATTACHMENT_STORAGE=db: uploads stored in the database while
  checkpoints run are each stored exactly (on PostgreSQL this covers the blob path only).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.test_attachments import upload_at_once

ROOT = Path(__file__).resolve().parent.parent

CHILD_PRELUDE = """
from gevent import monkey

monkey.patch_all()

import json, os, sqlite3, sys

import gevent
from sqlalchemy import text

from models import db as dbmod

path = sys.argv[1]
os.environ["DATABASE_URL"] = f"sqlite:///{path}"
os.environ["SQLITE_CHECKPOINT_INTERVAL"] = "3600"  # no tick during the test: runs are ours
engine = dbmod.get_engine()
with engine.begin() as conn:
    conn.execute(text("CREATE TABLE IF NOT EXISTS b (id INTEGER PRIMARY KEY, data BLOB)"))
checkpointer = dbmod._checkpointer

def sizes():
    return os.path.getsize(path), os.path.getsize(path + "-wal")

def wait_for_runs(n):
    for _ in range(2000):  # the pool thread runs it; yield until it has
        if checkpointer.runs >= n and (checkpointer._running is None or checkpointer._running.dead):
            return
        gevent.sleep(0.005)
    raise AssertionError(f"checkpointer ran {checkpointer.runs} times, expected {n}")
"""

LARGE_COMMIT = """
blob = os.urandom(5 * 1024 * 1024)
before = sizes()
with engine.begin() as conn:
    conn.execute(text("INSERT INTO b (data) VALUES (:d)"), {"d": blob})
after_commit = sizes()
dbmod.checkpoint_soon()
wait_for_runs(1)
after_checkpoint = sizes()
print(json.dumps({
    "has_checkpointer": checkpointer is not None,
    "before": before, "after_commit": after_commit, "after_checkpoint": after_checkpoint,
}))
"""

STARVED = """
mode = sys.argv[2]  # "passive": the PASSIVE step alone (the first attempt); "both": as it runs
blobs = {}
reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
pool = gevent.get_hub().threadpool
largest = 0
for i in range(1, 61):
    # A reader's snapshot older than the commit below: the PASSIVE checkpoint can copy the log
    # only up to it, so the log is never all copied when the next writer begins, and never
    # starts over by itself. The reader goes before the RESTART step (which would wait for it).
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM b").fetchone()
    data = os.urandom(1024 * 1024)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO b (id, data) VALUES (:i, :d)"), {"i": i, "d": data})
    blobs[i] = data
    pool.apply(checkpointer.passive)
    reader.execute("COMMIT")
    if mode == "both":
        pool.apply(checkpointer.restart_if_long)
    largest = max(largest, os.path.getsize(path + "-wal"))
with engine.connect() as conn:
    stored = dict(conn.execute(text("SELECT id, data FROM b")).all())
print(json.dumps({
    "largest_wal": largest,
    "restarts": checkpointer.restarts,
    "intact": all(bytes(stored[i]) == data for i, data in blobs.items()),
    "rows": len(stored),
}))
"""


def _child(tmp_path: Path, body: str, *args: str) -> dict:
    tmp_path.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD_PRELUDE + body, str(tmp_path / "web.db"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_large_commit_leaves_the_checkpoint_to_the_background(tmp_path):
    """A 5 MB commit in the web no longer copies the log into the database file and flushes
    it before returning (SQLite's automatic checkpoint at 1,000 pages); the background
    checkpointer does, after the commit."""
    state = _child(tmp_path, LARGE_COMMIT)
    assert state["has_checkpointer"]
    five_mb = 5 * 1024 * 1024
    db_before, _ = state["before"]
    db_after_commit, wal_after_commit = state["after_commit"]
    assert wal_after_commit >= five_mb  # the commit wrote the log...
    assert db_after_commit == db_before  # ...and nothing else: no checkpoint in the commit
    db_after_checkpoint, _ = state["after_checkpoint"]
    assert db_after_checkpoint >= five_mb  # the background checkpoint copied it


def test_log_stays_bounded_when_readers_keep_it_from_starting_over(tmp_path):
    """60 MB of commits, each behind a reader's older snapshot. With PASSIVE checkpoints alone
    the log never starts over and holds all 60 MB (what sank the first attempt); with the
    RESTART once it passes WAL_SOFT_LIMIT, it starts over. Every blob reads back exactly."""
    from models.db import WAL_SOFT_LIMIT

    alone = _child(tmp_path / "passive", STARVED, "passive")
    assert alone["rows"] == 60 and alone["intact"]
    assert alone["largest_wal"] >= 60 * 1024 * 1024  # the failure mode is real

    state = _child(tmp_path / "both", STARVED, "both")
    assert state["rows"] == 60 and state["intact"]
    assert state["restarts"] >= 1, state
    assert state["largest_wal"] <= WAL_SOFT_LIMIT + 2 * 1024 * 1024, state


def test_uploads_stored_while_checkpoints_run_are_each_exact(db_storage_stack):
    """Uploads at once to database storage (set explicitly: on SQLite the default is files
    beside the database), large enough for every commit to pass SQLite's default checkpoint
    mark: each row holds exactly the bytes sent (SQLite: the background checkpointer copies them
    while the next ones commit)."""
    stack, api = db_storage_stack
    from sqlalchemy import select

    from models.chat import AttachmentBlob
    from models.db import make_engine

    results, errors = upload_at_once(api, 3, 4_500_000, "k")
    sent = [(att["attachment_id"], hashlib.sha256(data).hexdigest()) for data, att in results]
    assert not errors
    assert len(sent) == 9
    engine = make_engine(stack.env["DATABASE_URL"])
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(AttachmentBlob.attachment_id, AttachmentBlob.data).where(
                    AttachmentBlob.attachment_id.in_([a for a, _ in sent])
                )
            ).all()
    finally:
        engine.dispose()
    stored = {a: hashlib.sha256(bytes(d)).hexdigest() for a, d in rows}
    assert stored == dict(sent)
