"""What authorizing a customer's request costs the database, and that every refusal stays the
same (webapp/auth.py `authorize`).

In process, on the pass's real database (SQLite or PostgreSQL): the statements that
`authorize` sends are counted with a SQLAlchemy `before_cursor_execute` listener on the
engine. A request with its own session's token is one statement (it was two: the session row,
then the token's owner); the refusals answer as before: a bad or deleted session's token 401
`invalid_token` (also for an unknown session), another session's token 403 `wrong_session`,
a good token for an unknown session 404 `unknown_session`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import delete, event
from sqlalchemy.orm import Session, sessionmaker

from models import db as dbmod
from models.chat import ChatSession
from webapp.auth import authorize, new_token
from webapp.errors import ApiError


@pytest.fixture
def db(migrated_db: str) -> Iterator[tuple[Session, list[str]]]:
    """A session on the suite's database and the statements its engine sends."""
    engine = dbmod.make_engine(migrated_db)
    sent: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    factory = sessionmaker(engine, expire_on_commit=False)
    session = factory()
    try:
        yield session, sent
    finally:
        session.close()
        engine.dispose()


def _new_chat(db: Session) -> tuple[str, str]:
    token, hashed = new_token()
    chat = ChatSession(token_hash=hashed, user_id=f"auth-statements-{uuid.uuid4().hex[:8]}")
    db.add(chat)
    db.commit()
    return chat.id, token


def _refusal(db: Session, session_id: str, token: str) -> tuple[int, str | None]:
    with pytest.raises(ApiError) as refused:
        authorize(db, session_id, token, None)
    db.rollback()
    return refused.value.status, refused.value.code


def test_own_token_is_one_statement_and_refusals_are_unchanged(db) -> None:  # type: ignore[no-untyped-def]
    session, sent = db
    mine, my_token = _new_chat(session)
    theirs, their_token = _new_chat(session)
    gone, gone_token = _new_chat(session)
    session.execute(delete(ChatSession).where(ChatSession.id == gone))
    session.commit()
    try:
        session.expunge_all()  # nothing cached: the session row is read as a request reads it
        del sent[:]
        chat, actor = authorize(session, mine, my_token, None)
        assert (chat.id, actor.kind) == (mine, "customer")
        assert len(sent) == 1, sent
        assert "chat_sessions" in sent[0] and sent[0].lstrip().upper().startswith("SELECT")
        session.rollback()

        unknown = str(uuid.uuid4())
        assert _refusal(session, theirs, my_token) == (403, "wrong_session")
        assert _refusal(session, mine, "not-a-token") == (401, "invalid_token")
        assert _refusal(session, mine, gone_token) == (401, "invalid_token")
        assert _refusal(session, unknown, "not-a-token") == (401, "invalid_token")
        assert _refusal(session, unknown, my_token) == (404, "unknown_session")
        assert _refusal(session, gone, their_token) == (404, "unknown_session")
        # The refused requests changed nothing: both tokens still open their own sessions.
        assert authorize(session, theirs, their_token, None)[0].id == theirs
        assert authorize(session, mine, my_token, None)[0].id == mine
    finally:
        session.rollback()
        session.execute(delete(ChatSession).where(ChatSession.id.in_([mine, theirs])))
        session.commit()
