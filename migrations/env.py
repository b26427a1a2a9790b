"""Alembic environment: the URL comes from DATABASE_URL, the target from models.Base."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context

import models  # noqa: F401  (registers every table on Base.metadata)
from models.base import Base
from models.db import make_engine
from models.settings import get_settings

config = context.config
if config.config_file_name is not None and not config.attributes.get("skip_logging"):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata

# Made by migrations 0002/0003/0007 on PostgreSQL only, not in the models: autogenerate must not
# drop them (kb_terms is kept by triggers, never written through the ORM).
_DB_ONLY = {
    "search_vector",
    "ix_kb_chunks_search_vector",
    "ix_kb_chunks_first_language",
    "kb_terms",
    "kb_terms_pkey",
}


def include_object(obj, name, type_, reflected, compare_to) -> bool:  # type: ignore[no-untyped-def]
    """Leave database-only full-text objects out of autogenerate's comparison."""
    return not (reflected and compare_to is None and name in _DB_ONLY)


def database_url() -> str:
    """An explicit URL from models.migrate.upgrade, else DATABASE_URL."""
    return config.attributes.get("database_url") or get_settings().database_url


def run_migrations_offline() -> None:
    """Emit SQL without a connection (`alembic upgrade head --sql`)."""
    from models.db import normalise_url

    context.configure(
        url=normalise_url(database_url()),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Apply migrations; batch mode lets SQLite alter tables."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(database_url())
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
