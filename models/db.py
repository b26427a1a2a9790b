"""Engine and session factory shared by web and worker; made lazily so forks get their own."""

from __future__ import annotations

import logging
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from models.settings import get_settings, sqlite_file

log = logging.getLogger(__name__)

_engine: Engine | None = None
_factory: sessionmaker[Session] | None = None
_pid: int | None = None
_checkpointer: Checkpointer | None = None


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


# With a background checkpointer (`Checkpointer`), a log that has not started over by this
# size is made to (a RESTART checkpoint, which waits for readers); and past WAL_HARD_LIMIT the
# committing connection checkpoints itself as SQLite does by default, so the log stays bounded
# even if the checkpointer never gets to run. The file is cut back to the hard limit when the
# log starts over after a burst.
WAL_SOFT_LIMIT = 16 * 1024 * 1024
WAL_HARD_LIMIT = 64 * 1024 * 1024
RESTART_WAIT = 1.0  # seconds the RESTART waits for the write lock and for readers


def make_engine(
    url: str, *, busy_timeout: float = BUSY_TIMEOUT, background_checkpoints: bool = False
) -> Engine:
    """Create an engine; SQLite gets WAL, a busy timeout and enforced foreign keys.

    In a gevent-patched process (the web) SQLite's wait for the write lock yields to other
    greenlets (`_yielding_connection`); elsewhere SQLite's own busy handler waits, in C.

    `background_checkpoints`: the connections do not checkpoint in their commits until the log
    reaches WAL_HARD_LIMIT; a `Checkpointer` is expected to keep it short instead.
    """
    url = normalise_url(url)
    if url.startswith("sqlite"):
        if (db_file := sqlite_file(url)) is not None:
            db_file.parent.mkdir(parents=True, exist_ok=True)
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
            if background_checkpoints:
                size = cur.execute("PRAGMA page_size").fetchone()[0]  # the file's own
                cur.execute(f"PRAGMA wal_autocheckpoint={WAL_HARD_LIMIT // size}")
                cur.execute(f"PRAGMA journal_size_limit={WAL_HARD_LIMIT}")
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


class Checkpointer:
    """Copies SQLite's write-ahead log into the database file in a native thread, so that no
    request's commit does it.

    By default the commit that takes the log past 1,000 pages (4 MB) checkpoints it inside the
    commit: copies the log into the database file and flushes both. A 5 MB attachment stored
    in the database passes that mark on its own, so every such upload paid for a checkpoint of
    its own bytes before its 202 (28-36 ms of a ~50 ms upload: bench/README.md, "Database
    storage in pieces"). The web's connections skip that (`make_engine(...,
    background_checkpoints=True)`), and this checkpoints instead: after a large write
    (`checkpoint_soon`) and every `interval` seconds, in gevent's pool of native threads
    (SQLite releases the GIL), on a connection of its own.

    A PASSIVE checkpoint never takes the write lock: commits go on while it copies. The log
    starts over only when a writer begins after a checkpoint has copied all of it and no
    reader is still on it; under back-to-back writes that moment may never come, and the log
    would grow without end (this happened to the first attempt, bench/README.md "Round 3").
    So once the log is WAL_SOFT_LIMIT long, the checkpoint is a RESTART, which takes the write
    lock to copy what the PASSIVE left (little) and waits up to RESTART_WAIT for readers: the
    next writer starts the log over. Should this never run, the connections' own automatic
    checkpoint still fires at WAL_HARD_LIMIT. Crash safety is SQLite's: a checkpoint is the
    same operation whichever connection runs it.
    """

    def __init__(self, path: str, interval: float) -> None:
        import gevent

        self.path = path
        self.interval = interval
        self.runs = 0
        self.restarts = 0
        self.last: tuple[int, int, int] | None = None  # (busy, log frames, copied frames)
        self._conn: sqlite3.Connection | None = None
        self._page_size = 4096
        self._pool = gevent.get_hub().threadpool
        self._running: Any = None  # the greenlet waiting for a run in the pool
        self._again = False
        self._closed = False
        self._owner = os.getpid()  # a forked child inherits this object, not its thread
        self._ticker = gevent.spawn(self._tick) if interval > 0 else None

    def run_once(self) -> tuple[int, int, int]:
        """One checkpoint (in the calling thread): PASSIVE, then RESTART if the log is long.
        Returns SQLite's (busy, frames in the log, frames copied) of the last one."""
        self.passive()
        result = self.restart_if_long()
        self.runs += 1
        return result

    def passive(self) -> tuple[int, int, int]:
        """Copy what no reader still needs from the log; never takes the write lock."""
        return self._checkpoint("PASSIVE")

    def restart_if_long(self) -> tuple[int, int, int]:
        """If the last checkpoint left a log of WAL_SOFT_LIMIT or more, RESTART: wait (up to
        RESTART_WAIT) for the write lock and for readers, copy the rest, so that the next
        writer starts the log over."""
        assert self.last is not None
        if self.last[1] * self._page_size < WAL_SOFT_LIMIT:
            return self.last
        conn = self._connection()
        conn.execute(f"PRAGMA busy_timeout={int(RESTART_WAIT * 1000)}")
        try:
            result = self._checkpoint("RESTART")
        finally:
            conn.execute("PRAGMA busy_timeout=0")
        self.restarts += 1
        return result

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            # A plain connection: this runs in a native thread, where waiting in C is right.
            self._conn = sqlite3.connect(
                self.path, timeout=0, isolation_level=None, check_same_thread=False
            )
            self._page_size = self._conn.execute("PRAGMA page_size").fetchone()[0]
        return self._conn

    def _checkpoint(self, mode: str) -> tuple[int, int, int]:
        busy, frames, copied = (
            self._connection().execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        )
        self.last = (busy, frames, copied)
        return self.last

    def nudge(self) -> None:
        """Checkpoint now, in the pool (another run follows if one is under way)."""
        import gevent

        if self._closed or os.getpid() != self._owner:
            return
        if self._running is not None and not self._running.dead:
            self._again = True
            return
        self._running = gevent.spawn(self._drain)

    def _drain(self) -> None:
        self._again = True
        while self._again and not self._closed:
            self._again = False
            try:
                self._pool.apply(self.run_once)
            except sqlite3.Error as exc:  # e.g. the file went away; the next tick tries again
                log.warning("background checkpoint failed", extra={"error": str(exc)})

    def _tick(self) -> None:
        import gevent

        while not self._closed and os.getpid() == self._owner:
            gevent.sleep(self.interval)
            self.nudge()

    def close(self) -> None:
        """Stop the timer; the connection is closed once no run uses it."""
        self._closed = True
        if self._ticker is not None:
            self._ticker.kill(block=False)
        running = self._running
        if running is not None and not running.dead:
            running.join()
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def get_engine() -> Engine:
    """The process's engine, recreated after a fork (a pool must never cross processes).

    In the web (gevent) on a SQLite file, with SQLITE_CHECKPOINT_INTERVAL > 0, the engine's
    connections leave checkpoints to a `Checkpointer` (off the requests' path)."""
    global _engine, _factory, _pid, _checkpointer
    if _engine is None or _pid != os.getpid():
        if _engine is not None:
            _engine.dispose(close=False)
        _checkpointer = None  # a thread of the parent's: gone after a fork
        settings = get_settings()
        path = sqlite_file(settings.database_url)  # None: not a SQLite file
        background = bool(path and settings.sqlite_checkpoint_interval > 0 and _gevent_patched())
        _engine = make_engine(settings.database_url, background_checkpoints=background)
        if background:
            assert path is not None
            _checkpointer = Checkpointer(str(path), settings.sqlite_checkpoint_interval)
        _factory = sessionmaker(_engine, expire_on_commit=False)
        _pid = os.getpid()
    return _engine


def checkpoint_soon() -> None:
    """A commit just wrote a lot (a blob): have the background checkpointer take it now rather
    than at its next tick. Nothing to do without one (SQLite checkpoints in the commit)."""
    if _checkpointer is not None and _pid == os.getpid():
        _checkpointer.nudge()


def reset_engine() -> None:
    """Drop the cached engine (tests switch databases; the worker re-creates after fork)."""
    global _engine, _factory, _pid, _checkpointer
    if _checkpointer is not None and _pid == os.getpid():
        _checkpointer.close()
    if _engine is not None:
        # After a fork the pool's connections belong to the parent: drop them without closing
        # (closing would end the parent's sessions on the server's side too).
        _engine.dispose(close=_pid == os.getpid())
    _engine, _factory, _pid, _checkpointer = None, None, None, None


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


# SQLSTATEs a second attempt of the same transaction can cure: a deadlock (PostgreSQL aborted
# one of two transactions that waited on each other's rows) and a serialization failure.
CONFLICT_SQLSTATES = frozenset({"40P01", "40001"})


def is_transient_conflict(exc: BaseException) -> bool:
    """True when `exc` (a SQLAlchemy error) is a lost deadlock or serialization race.

    Why it matters: a web request and a worker that lock a session's rows in different orders
    (a session deleted while its file's parse result is being written, say) can each wait on
    the other; PostgreSQL then aborts one of them. The transaction was rolled back whole, so
    running it again is safe and almost always succeeds."""
    orig = getattr(exc, "orig", None)
    return getattr(orig, "sqlstate", None) in CONFLICT_SQLSTATES
