"""Declarative base shared by every table, with a naming convention so Alembic diffs stay stable."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import JSON, MetaData
from sqlalchemy.orm import DeclarativeBase

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Base class; JSON columns map to JSON on both SQLite and PostgreSQL."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict: JSON, list: JSON}


def new_id() -> str:
    """Random, unguessable identifier (UUID4 text) used as every primary key."""
    return str(uuid.uuid4())


def utcnow() -> datetime:
    """Timezone-aware now; one helper so tests and code agree on the clock."""
    return datetime.now(UTC)
