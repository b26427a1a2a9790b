"""Apply the Alembic migrations from code: the CLI, the tests and the benchmarks share this."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from models.settings import ROOT


def alembic_config(database_url: str | None = None) -> Config:
    """Config for our migrations folder; `database_url` overrides DATABASE_URL for this run."""
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    if database_url is not None:
        cfg.attributes["database_url"] = database_url
        cfg.attributes["skip_logging"] = True  # embedded use keeps the caller's logging
    return cfg


def upgrade(database_url: str | None = None, revision: str = "head") -> None:
    """Migrate the configured database (or `database_url`) up to `revision`."""
    command.upgrade(alembic_config(database_url), revision)
