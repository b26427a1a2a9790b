"""One lifecycle for every kind of background work: replies, attachments, documents, webhooks.

Each is a row with `status`, `lease_until`, `attempts` and `error`, moving
`queued` → `processing` (claimed with a lease the worker renews) → `done` | `failed` (terminal,
with a readable reason). Only the functions here change those columns, always with a
conditional UPDATE, so two workers (or a worker and the sweeper) can never both win a step.
The web calls `queue` when it accepts work; the worker calls the rest; the sweeper uses
`overdue` and `requeue` the same way for every kind.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import Update, and_, bindparam, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from models.base import utcnow
from models.chat import Attachment, Message, WebhookDelivery
from models.kb import KBDocument

log = logging.getLogger(__name__)


class WorkState(StrEnum):
    """States of a unit of work (stored as these strings)."""

    QUEUED = "queued"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"


OPEN = (WorkState.QUEUED, WorkState.PROCESSING)


@dataclass(frozen=True)
class WorkKind:
    """A kind of work: its table, its task, and the limits the sweeper applies to it."""

    name: str
    model: Any
    task: str
    max_attempts: int
    default_deadline: timedelta  # queued but nobody claimed it: the enqueue was lost
    scope: tuple = field(default=())  # extra conditions selecting this kind's rows
    # The Settings field that overrides `default_deadline` (read on every use, never cached
    # here, so a deployment and the tests that wait one out always agree on it).
    deadline_setting: str | None = None

    @property
    def claim_deadline(self) -> timedelta:
        """How long a queued row may wait unclaimed before the sweeper re-sends its task."""
        if self.deadline_setting is None:
            return self.default_deadline
        from models.settings import get_settings

        return timedelta(seconds=getattr(get_settings(), self.deadline_setting))

    def where(self, row_id: str) -> list:
        return [self.model.id == row_id, *self.scope]


REPLY = WorkKind(
    "reply",
    Message,
    "helpline.generate_reply",
    max_attempts=3,
    default_deadline=timedelta(seconds=10),
    scope=(Message.__table__.c.role == "user",),  # a table column: see _statements
)
ATTACHMENT = WorkKind(
    "attachment",
    Attachment,
    "helpline.parse_attachment",
    max_attempts=3,
    default_deadline=timedelta(seconds=30),
    deadline_setting="attachment_claim_seconds",  # ATTACHMENT_CLAIM_SECONDS
)
DOCUMENT = WorkKind(
    "document",
    KBDocument,
    "helpline.ingest_document",
    max_attempts=3,
    default_deadline=timedelta(seconds=60),
    deadline_setting="document_claim_seconds",  # DOCUMENT_CLAIM_SECONDS
)
WEBHOOK = WorkKind(
    "webhook",
    WebhookDelivery,
    "helpline.deliver_webhook",
    max_attempts=6,
    default_deadline=timedelta(seconds=30),
)
KINDS = (REPLY, ATTACHMENT, DOCUMENT, WEBHOOK)


def task_lease() -> timedelta:
    """Lease for work without a heartbeat: outlives the task's hard time limit, so only a dead
    worker's claim runs out."""
    from models.settings import get_settings

    return timedelta(seconds=get_settings().task_time_limit + 15)


def queue(row: Any, kind: WorkKind, now: datetime | None = None, delay: float = 0) -> None:
    """Mark a new (or re-submitted) row as waiting; the deadline lets the sweeper find it."""
    now = now or utcnow()
    row.status = WorkState.QUEUED.value
    row.lease_until = now + kind.claim_deadline + timedelta(seconds=delay)
    row.attempts = 0
    row.error = None


def claim(db: Session, kind: WorkKind, row_id: str, lease: timedelta) -> bool:
    """Take the row if it is queued, or processing under a lease that ran out (a dead worker)."""
    return take(db, kind, row_id, lease) is not None


def take(db: Session | Connection, kind: WorkKind, row_id: str, lease: timedelta) -> int | None:
    """`claim`, returning the attempt number it starts (None when another holder has it), so a
    caller that read the row before claiming needs no second read to know its attempt."""
    now = utcnow()
    return db.execute(
        _statements(kind)["take"], {"row_id": row_id, "now_": now, "until_": now + lease}
    ).scalar_one_or_none()


def renew(db: Session | Connection, kind: WorkKind, row_id: str, lease: timedelta) -> bool:
    """Extend the holder's lease (the heartbeat of a long task)."""
    stmt = _statements(kind)["renew"]
    return bool(db.execute(stmt, {"row_id": row_id, "until_": utcnow() + lease}).rowcount)


def finish(db: Session | Connection, kind: WorkKind, row_id: str, **values: Any) -> bool:
    """processing → done, with the result columns in the same UPDATE."""
    return _close(db, kind, row_id, WorkState.DONE, values)


def fail(db: Session | Connection, kind: WorkKind, row_id: str, error: str, **values: Any) -> bool:
    """Any open state → failed with a reason a customer or operator can read."""
    return _close(db, kind, row_id, WorkState.FAILED, {"error": error[:2000], **values})


def postpone(
    db: Session, kind: WorkKind, row_id: str, delay: float, error: str, **values: Any
) -> bool:
    """processing → queued after a transient failure; the deadline leaves room for the retry's
    countdown, so the sweeper only steps in when the retry itself is lost."""
    return bool(
        db.execute(
            update(kind.model)
            .where(*kind.where(row_id), kind.model.status == WorkState.PROCESSING)
            .values(
                status=WorkState.QUEUED.value,
                lease_until=utcnow() + kind.claim_deadline + timedelta(seconds=delay),
                error=error[:2000],
                **values,
            )
        ).rowcount
    )


def let_go(db: Session | Connection, kind: WorkKind, row_id: str) -> bool:
    """End the holder's lease now: the row stays `processing`, claimable at once by anyone
    (`take` accepts a lease that ran out) and overdue for the sweeper at its next round, as
    if its worker had died, which is the recovery every kind already has."""
    stmt = _statements(kind)["renew"]
    return bool(db.execute(stmt, {"row_id": row_id, "until_": utcnow()}).rowcount)


# Errors a later attempt can plausibly cure (the database or Redis away for a moment, a
# deadlock PostgreSQL broke by aborting us); the tasks retry these, and claimed work lets its
# claim go on them first (`handing_back`).
TRANSIENT: tuple[type[BaseException], ...] = (
    OperationalError,
    RedisConnectionError,
    ConnectionError,
    TimeoutError,
)


@contextmanager
def handing_back(kind: WorkKind, row_id: str) -> Iterator[None]:
    """Around the work a task does under its claim: on a transient error, end the claim's
    lease (`let_go`) before the error reaches the task's retry.

    Why: a file's or a document's lease outlives the task's time limit (`task_lease`), so a
    retry that found its own failed attempt's claim still held gave up ("not-claimable") and
    the work waited for the lease and then the sweeper: over a minute for a file a customer's
    message waits on, for one deadlock. Let go, the retry takes it at once; if the retry is
    lost (the broker was the thing that failed), the sweeper re-sends it at its next round.
    Not put back to `queued`: the sweeper is patient with queued rows behind a backlog, and
    this row's task already ran. If letting go fails too (the database is away), the lease
    and the sweeper still recover the row.
    """
    try:
        yield
    except TRANSIENT:
        from models.db import session_scope

        try:
            with session_scope() as db:
                let_go(db, kind, row_id)
        except Exception:  # the original error is the one to report and retry on
            log.warning(
                "claim not let go; its lease will run out",
                extra={"kind": kind.name, "row_id": row_id},
            )
        raise


def _close(
    db: Session | Connection, kind: WorkKind, row_id: str, state: WorkState, values: dict
) -> bool:
    key = f"close:{state.value}:{','.join(sorted(values))}"
    stmts = _statements(kind)
    stmt = stmts.get(key)
    if stmt is None:
        table = kind.model.__table__
        stmt = stmts[key] = (
            update(table)
            .where(_row(kind), one_of(table.c.status, [s.value for s in OPEN]))
            .values(
                status=state.value,
                lease_until=None,
                **{name: bindparam(f"v_{name}", type_=table.c[name].type) for name in values},
            )
        )
    params = {"row_id": row_id, **{f"v_{name}": value for name, value in values.items()}}
    return bool(db.execute(stmt, params).rowcount)


# Prebuilt statements per kind (and, for closing, per set of result columns), executed with
# bound parameters. The hot path of every answer claims and closes a row: built once, such a
# statement costs SQLAlchemy neither its construction nor its cache key on each use, and being
# Core statements on the table (not ORM-enabled ones) they skip the ORM's bulk-UPDATE work
# (`synchronize_session`, autoflush). Nothing is lost by that: every caller claims before it
# loads the row, and reads a row it closed only through a fresh query or `refresh`.
_PREBUILT: dict[str, dict[str, Update]] = {}


def one_of(column, values: list[str]):  # type: ignore[no-untyped-def]
    """`column IN (values)` for a fixed, short list, written as ORs of equalities: SQLAlchemy
    rewrites an IN list's SQL on every execution ("expanding" parameters), which was a few
    per cent of a worker's CPU on the answer path; equalities are compiled once."""
    return or_(*(column == value for value in values))


def _row(kind: WorkKind):  # type: ignore[no-untyped-def]
    table = kind.model.__table__
    return and_(table.c.id == bindparam("row_id"), *kind.scope)


def _statements(kind: WorkKind) -> dict[str, Update]:
    stmts = _PREBUILT.get(kind.name)
    if stmts is None:
        table = kind.model.__table__
        now = bindparam("now_", type_=table.c.lease_until.type)
        until = bindparam("until_", type_=table.c.lease_until.type)
        stmts = _PREBUILT[kind.name] = {
            "take": update(table)
            .where(
                _row(kind),
                or_(
                    table.c.status == WorkState.QUEUED.value,
                    and_(table.c.status == WorkState.PROCESSING.value, table.c.lease_until < now),
                ),
            )
            .values(
                status=WorkState.PROCESSING.value,
                lease_until=until,
                attempts=table.c.attempts + 1,
            )
            .returning(table.c.attempts),
            "renew": update(table)
            .where(_row(kind), table.c.status == WorkState.PROCESSING.value)
            .values(lease_until=until),
        }
    return stmts


@dataclass(frozen=True)
class Overdue:
    """A row whose deadline or lease passed: re-send it, or give up after max_attempts."""

    id: str
    lease_until: datetime
    attempts: int
    exhausted: bool
    status: str = WorkState.QUEUED.value
    created_at: datetime | None = None

    def patient(self, kind: WorkKind) -> bool:
        """Still within the time a queued row may plausibly wait behind a backlog (six claim
        deadlines since it was made); past that it is re-sent even if the queue is busy."""
        if self.status != WorkState.QUEUED or self.created_at is None:
            return False
        made = self.created_at if self.created_at.tzinfo else self.created_at.replace(tzinfo=UTC)
        return utcnow() - made < 6 * kind.claim_deadline


def overdue(db: Session, kind: WorkKind, limit: int = 200) -> list[Overdue]:
    """Open rows past their deadline, oldest first."""
    rows = db.execute(
        select(
            kind.model.id,
            kind.model.lease_until,
            kind.model.attempts,
            kind.model.status,
            kind.model.created_at,
        )
        .where(
            *kind.scope,
            kind.model.status.in_([s.value for s in OPEN]),
            kind.model.lease_until < utcnow(),
        )
        .order_by(kind.model.lease_until)
        .limit(limit)
    ).all()
    return [Overdue(r[0], r[1], r[2], r[2] >= kind.max_attempts, r[3], r[4]) for r in rows]


def requeue(db: Session, kind: WorkKind, item: Overdue) -> bool:
    """Put an overdue row back in the queue; only one of several sweepers wins (by its lease)."""
    return bool(
        db.execute(
            update(kind.model)
            .where(*kind.where(item.id), kind.model.lease_until == item.lease_until)
            .values(
                status=WorkState.QUEUED.value,
                lease_until=utcnow() + kind.claim_deadline,
            )
        ).rowcount
    )
