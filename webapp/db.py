"""One ORM session per request, closed at teardown."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from flask import g
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from models.db import is_transient_conflict, new_session

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

# A request that lost a deadlock runs again this many times in all (see retry_conflicts).
CONFLICT_ATTEMPTS = 3


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


def retry_conflicts(view: Callable[P, R]) -> Callable[P, R]:
    """Run a view again when its transaction lost a deadlock or serialization race.

    Only for views whose whole effect is their database transaction plus what follows its
    commit (ending or deleting a session): the aborted attempt wrote nothing, so a second one
    is the same request, not a repeat. Views with effects before their commit (rate-limit
    counters, files written, a message accept) must not use it. A conflict left after the last
    attempt is answered 503 with Retry-After (webapp/errors.py), never 500."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                return view(*args, **kwargs)
            except DBAPIError as exc:
                if attempt == CONFLICT_ATTEMPTS or not is_transient_conflict(exc):
                    raise
                get_db().rollback()
                log.warning(
                    "transaction lost a lock race; running it again", extra={"attempt": attempt}
                )
                time.sleep(0.02 * attempt)  # the winner commits meanwhile (yields under gevent)
        raise AssertionError("unreachable")

    return wrapper
