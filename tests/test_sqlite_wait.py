"""SQLite's wait for the write lock, in a gevent process, lets every other greenlet run.

The web runs under gevent. SQLite's own busy handler sleeps inside C, so while one request
waited for a worker's commit every socket of that web process stood still. `make_engine` in a
gevent-patched process waits by retrying and yielding instead (models/db.py). These tests run
real SQLite in a child process patched by gevent, against a second process that really holds
the write lock: the holder lets go only after the other greenlet has done its unrelated work
(reads through the same engine) five times while the writer waits, so with a C wait the
holder would never let go and the writer would fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO t VALUES (0)")
print("locked", flush=True)
conn.execute("COMMIT" if sys.stdin.readline().strip() == "go" else "ROLLBACK")
"""

CHILD = """
from gevent import monkey

monkey.patch_all()

import json, subprocess, sys

import gevent
from sqlalchemy import text

from models.db import make_engine

path, mode, limit, holder_code = sys.argv[1:5]
release, limit = mode == "release", float(limit)
engine = make_engine(f"sqlite:///{path}", busy_timeout=limit)
with engine.begin() as conn:
    conn.execute(text("CREATE TABLE IF NOT EXISTS t (x INTEGER)"))
    c_wait = conn.execute(text("PRAGMA busy_timeout")).scalar()
holder = subprocess.Popen(
    [sys.executable, "-c", holder_code, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    text=True,
)
assert holder.stdout.readline().strip() == "locked"
state = {"ticks": 0, "writer": None}

def writer():
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
        state["writer"] = "done"
    except Exception as exc:
        state["writer"] = f"{type(exc).__name__}: {exc}"

def other():
    while state["writer"] is None:
        with engine.connect() as conn:
            conn.execute(text("SELECT count(*) FROM t")).scalar()
        state["ticks"] += 1
        if release and state["ticks"] == 5:
            holder.stdin.write("go\\n")
            holder.stdin.flush()
        gevent.sleep(0.01)

gevent.joinall([gevent.spawn(writer), gevent.spawn(other)])
holder.stdin.close()
holder.wait(10)
with engine.connect() as conn:
    rows = sorted(conn.execute(text("SELECT x FROM t")).scalars())
state.update(c_wait=c_wait, rows=rows)
print(json.dumps(state))
"""


def run_child(tmp_path: Path, release: bool, limit: float) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            str(tmp_path / "wait.db"),
            "release" if release else "hold",
            str(limit),
            HOLDER,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_held_write_lock_does_not_stop_other_greenlets(tmp_path: Path) -> None:
    result = run_child(tmp_path, release=True, limit=30)
    assert result["c_wait"] == 0  # no wait inside C in a gevent process
    assert result["writer"] == "done"
    # The other greenlet ran while the writer waited, and its fifth run freed the lock.
    assert result["ticks"] >= 5
    assert result["rows"] == [0, 1]


def test_wait_is_bounded_and_then_fails_as_before(tmp_path: Path) -> None:
    result = run_child(tmp_path, release=False, limit=0.3)
    assert result["writer"].startswith("OperationalError")
    assert "locked" in result["writer"]
    assert result["ticks"] >= 1
    assert result["rows"] == []  # the holder rolled back; the writer never wrote


def test_without_gevent_sqlite_waits_itself(tmp_path: Path) -> None:
    from sqlalchemy import text

    from models.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'plain.db'}", busy_timeout=12)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 12000
    finally:
        engine.dispose()


def test_page_size_applies_to_a_new_file_only(tmp_path, monkeypatch):
    """SQLITE_PAGE_SIZE makes a new database file with that page size (through the migrations,
    as deployments create it); an existing file keeps its own and works as before."""
    import sqlalchemy as sa

    from models.db import make_engine
    from models.migrate import upgrade
    from models.settings import get_settings

    old = tmp_path / "old.db"
    engine = make_engine(f"sqlite:///{old}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (x)"))
    engine.dispose()
    monkeypatch.setenv("SQLITE_PAGE_SIZE", "65536")
    get_settings(reload=True)
    try:
        new = f"sqlite:///{tmp_path / 'new.db'}"
        upgrade(new)
        sizes = {}
        for name, url in (("new", new), ("old", f"sqlite:///{old}")):
            engine = make_engine(url)
            with engine.begin() as conn:
                sizes[name] = conn.execute(sa.text("PRAGMA page_size")).scalar()
                mode = conn.execute(sa.text("PRAGMA journal_mode")).scalar()
                assert mode == "wal"
            engine.dispose()
        assert sizes == {"new": 65536, "old": 4096}
    finally:
        monkeypatch.delenv("SQLITE_PAGE_SIZE")
        get_settings(reload=True)
