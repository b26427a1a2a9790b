"""Engine and session factory shared by web and worker; made lazily so forks get their own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
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


def make_engine(url: str) -> Engine:
    """Create an engine; SQLite gets WAL, a busy timeout and enforced foreign keys."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


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
        _engine.dispose()
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
