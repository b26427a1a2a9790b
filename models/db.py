"""Engine and session factory shared by web and worker; made lazily so forks get their own."""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from models.settings import get_settings

_engine: Engine | None = None
_factory: sessionmaker[Session] | None = None
_pid: int | None = None


def normalise_url(url: str) -> str:
    """Accept Heroku's `postgres://` and plain `postgresql://`; drive PostgreSQL with psycopg 3."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


BUSY_TIMEOUT = 30.0  # seconds a statement waits for SQLite's write lock before it fails
# SQLite's busy codes worth waiting out (SQLITE_BUSY, _RECOVERY, _TIMEOUT). Not BUSY_SNAPSHOT
# (517): a transaction whose snapshot went stale can never succeed by waiting.
_BUSY_CODES = frozenset({5, 261, 773})


def _gevent_patched() -> bool:
    """True in a process whose blocking calls gevent has patched (the web under gunicorn)."""
    gevent_monkey = sys.modules.get("gevent.monkey")
    return bool(gevent_monkey and gevent_monkey.is_module_patched("socket"))


def _busy(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorcode", None) in _BUSY_CODES


class _YieldingWait:
    """Retries a call refused because another connection holds SQLite's write lock, sleeping
    through gevent between tries, for up to `limit` seconds in all."""

    def __init__(self, limit: float) -> None:
        self.limit = limit

    def __call__(self, call: Callable[[], Any]) -> Any:
        import gevent

        deadline = None
        pause = 0.0005
        while True:
            try:
                return call()
            except sqlite3.OperationalError as exc:
                if not _busy(exc):
                    raise
                now = time.monotonic()
                deadline = deadline or now + self.limit
                if now >= deadline:
                    raise
                gevent.sleep(min(pause, deadline - now))
                pause = min(pause * 2, 0.005)


def _yielding_connection(limit: float) -> type[sqlite3.Connection]:
    """A sqlite3 connection class whose statements and commits wait for the write lock by
    yielding to gevent instead of sleeping inside SQLite's C busy handler.

    SQLite's own busy handler sleeps in C: under gevent that freezes the whole process (every
    socket of a web process) while one statement waits for a worker's commit. With a zero C
    timeout SQLite answers "busy" at once and the wait happens here, one greenlet at a time.
    Retrying is safe: a statement refused with SQLITE_BUSY did nothing, and in pysqlite's
    transaction mode the first write of a transaction comes before any read in it, so the
    retried write never meets a stale snapshot.
    """
    wait = _YieldingWait(limit)

    class YieldingCursor(sqlite3.Cursor):
        def execute(self, sql: str, parameters: Any = ()) -> sqlite3.Cursor:  # type: ignore[override]
            return wait(lambda: super(YieldingCursor, self).execute(sql, parameters))

        def executemany(self, sql: str, seq: Any) -> sqlite3.Cursor:  # type: ignore[override]
            rows = list(seq)  # may be an iterator: a retry must see every row again
            return wait(lambda: super(YieldingCursor, self).executemany(sql, rows))

    class YieldingConnection(sqlite3.Connection):
        def cursor(self, factory: Any = YieldingCursor) -> sqlite3.Cursor:  # type: ignore[override]
            return super().cursor(factory)

        def commit(self) -> None:
            wait(super().commit)

    return YieldingConnection


def make_engine(url: str, *, busy_timeout: float = BUSY_TIMEOUT) -> Engine:
    """Create an engine; SQLite gets WAL, a busy timeout and enforced foreign keys.

    In a gevent-patched process (the web) SQLite's wait for the write lock yields to other
    greenlets (`_yielding_connection`); elsewhere SQLite's own busy handler waits, in C.
    """
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        args: dict[str, Any] = {"timeout": busy_timeout, "check_same_thread": False}
        c_wait_ms = int(busy_timeout * 1000)
        if _gevent_patched():
            args.update(timeout=0, factory=_yielding_connection(busy_timeout))
            c_wait_ms = 0
        engine = create_engine(url, connect_args=args)
        # Takes only on a new, empty file (before WAL and the first table); an existing file
        # keeps its own until it is rebuilt (bench/README.md, "Database storage in pieces").
        page_size = get_settings().sqlite_page_size

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA page_size={page_size}")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={c_wait_ms}")
            cur.close()

        return engine
    engine = create_engine(url, pool_size=10, max_overflow=20)
    _ping_when_idle(engine)
    return engine


PING_AFTER_IDLE = 5.0  # seconds a pooled connection may rest before it is tested on checkout


def _ping_when_idle(engine: Engine) -> None:
    """Test a pooled connection on checkout only when it has been resting a while.

    SQLAlchemy's `pool_pre_ping` tests every checkout: one more round trip for every
    transaction, and the answer path has three per answer (plus the web's one per message).
    A connection given back moments ago is alive unless the server went away in those
    moments; one that rested longer (a quiet night, an idle timeout in between) is tested as
    before, and a dead one is replaced before anyone uses it. A server restart within the
    last few seconds still surfaces once per pooled connection as a disconnect error, which
    invalidates the pool (tasks retry it as transient).
    """

    @event.listens_for(engine, "checkin")
    def _rested_from(_dbapi_conn, record) -> None:  # type: ignore[no-untyped-def]
        record.info["checked_in"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _test_if_rested(dbapi_conn, record, _proxy) -> None:  # type: ignore[no-untyped-def]
        since = record.info.get("checked_in")
        if since is None or time.monotonic() - since < PING_AFTER_IDLE:
            return  # just connected, or used moments ago
        try:
            engine.dialect.do_ping(dbapi_conn)
            dbapi_conn.rollback()  # the ping's own transaction (psycopg opens one)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError("pooled connection is gone") from exc


def get_engine() -> Engine:
    """The process's engine, recreated after a fork (a pool must never cross processes)."""
    global _engine, _factory, _pid
    if _engine is None or _pid != os.getpid():
        if _engine is not None:
            _engine.dispose(close=False)
        _engine = make_engine(get_settings().database_url)
        _factory = sessionmaker(_engine, expire_on_commit=False)
        _pid = os.getpid()
    return _engine


def reset_engine() -> None:
    """Drop the cached engine (tests switch databases; the worker re-creates after fork)."""
    global _engine, _factory, _pid
    if _engine is not None:
        # After a fork the pool's connections belong to the parent: drop them without closing
        # (closing would end the parent's sessions on the server's side too).
        _engine.dispose(close=_pid == os.getpid())
    _engine, _factory, _pid = None, None, None


def new_session() -> Session:
    """A new ORM session bound to this process's engine."""
    get_engine()
    assert _factory is not None
    return _factory()


@contextmanager
def session_scope() -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error, always close."""
    session = new_session()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
