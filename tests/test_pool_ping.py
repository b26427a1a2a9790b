"""Pooled PostgreSQL connections are tested on checkout only after resting (models/db.py).

Real PostgreSQL: the server side of a pooled connection is ended with pg_terminate_backend,
as a server restart or an idle timeout would end it. A connection that rested is tested and
replaced before anyone uses it; one given back moments ago is not tested (that round trip per
transaction is what was saved), so its loss surfaces once as a disconnect, which invalidates
the pool, and the next checkout works.
"""

from __future__ import annotations

import os

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from models import db as dbmod
from tests.conftest import database_url

pytestmark = pytest.mark.skipif(
    not os.environ.get("TEST_DATABASE_URL"), reason="needs PostgreSQL (TEST_DATABASE_URL)"
)


def _backend(engine) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar())


def _terminate(pid: int) -> None:
    killer = dbmod.make_engine(database_url())
    try:
        with killer.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
    finally:
        killer.dispose()


@pytest.fixture
def engine():  # type: ignore[no-untyped-def]
    engine = dbmod.make_engine(database_url())
    engine.pool.dispose()
    yield engine
    engine.dispose()


def test_rested_connection_is_tested_and_replaced(engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    first = _backend(engine)  # the pool now holds this connection
    _terminate(first)
    monkeypatch.setattr(dbmod, "PING_AFTER_IDLE", 0.0)  # it has rested long enough
    second = _backend(engine)  # no error: the dead one was found and replaced
    assert second != first


def test_recent_connection_is_not_tested_and_recovers_after_one_error(engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(dbmod, "PING_AFTER_IDLE", 3600.0)  # given back moments ago
    first = _backend(engine)
    _terminate(first)
    with pytest.raises(DBAPIError) as caught:
        _backend(engine)
    assert caught.value.connection_invalidated
    assert _backend(engine) != first  # the pool was refreshed
