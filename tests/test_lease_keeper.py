"""The lease keeper (worker/replies.py) renews the lease of every message being answered.

In process, against a real SQLite database: a message claimed with a one-second lease stays
claimed for as long as it is held (its lease moves forward), and is let go when the answer
ends. One keeper thread serves every answer of the process.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from models import db as dbmod
from models.base import Base, new_id, utcnow
from models.chat import ChatSession, Message
from models.settings import get_settings


@pytest.fixture
def one_second_leases(tmp_path: Path, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'leases.db'}")
    monkeypatch.setenv("AGENT_LEASE_SECONDS", "1")
    get_settings(reload=True)
    dbmod.reset_engine()
    Base.metadata.create_all(dbmod.get_engine())
    yield
    dbmod.reset_engine()
    monkeypatch.undo()
    get_settings(reload=True)


def _claimed_message() -> tuple[str, object]:
    with dbmod.session_scope() as db:
        chat = ChatSession(token_hash="x" * 64)
        db.add(chat)
        db.flush()
        until = utcnow() + timedelta(seconds=1)
        msg = Message(
            id=new_id(),
            session_id=chat.id,
            seq=1,
            role="user",
            content="hello",
            status="processing",
            lease_until=until,
            attempts=1,
        )
        db.add(msg)
    return msg.id, until


def _lease(message_id: str):  # type: ignore[no-untyped-def]
    with dbmod.session_scope() as db:
        return db.scalar(select(Message.lease_until).where(Message.id == message_id))


def _wait_for(check, limit: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_held_message_keeps_its_lease_and_is_let_go(one_second_leases) -> None:  # type: ignore[no-untyped-def]
    from worker.replies import leases

    message_id, first = _claimed_message()
    first = first.replace(tzinfo=None)
    with leases.hold(message_id):
        assert message_id in leases.held()
        renewed = _wait_for(lambda: _lease(message_id).replace(tzinfo=None) > first)
        assert renewed, "the lease of a held message was never renewed"
        keepers = [t for t in threading.enumerate() if t.name == "lease-keeper"]
        assert len(keepers) == 1
    assert message_id not in leases.held()


def test_same_message_held_twice_stays_held_until_both_end(one_second_leases) -> None:  # type: ignore[no-untyped-def]
    from worker.replies import leases

    message_id, _ = _claimed_message()
    with leases.hold(message_id):
        with leases.hold(message_id):
            pass
        assert message_id in leases.held()
    assert message_id not in leases.held()
