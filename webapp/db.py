"""One ORM session per request, closed at teardown."""

from __future__ import annotations

from flask import g
from sqlalchemy.orm import Session

from models.db import new_session


def get_db() -> Session:
    """The request's session (created on first use)."""
    if "db" not in g:
        g.db = new_session()
    return g.db


def close_db(_exc: BaseException | None = None) -> None:
    """Teardown: roll back anything uncommitted and return the connection to the pool."""
    db = g.pop("db", None)
    if db is not None:
        db.close()
