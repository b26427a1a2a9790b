"""The knowledge-base version: one counter every index and cache is keyed by."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from models.base import utcnow
from models.kb import KBState


def bump_version(db: Session) -> None:
    """Move the version inside the caller's transaction (the migration seeds the row)."""
    moved = db.execute(
        update(KBState)
        .where(KBState.id == 1)
        .values(version=KBState.version + 1, updated_at=utcnow())
    ).rowcount
    if not moved:
        db.add(KBState(id=1, version=1))


def current_version(db: Session) -> int:
    """The version now (0 before anything was indexed)."""
    return db.scalar(select(KBState.version).where(KBState.id == 1)) or 0
