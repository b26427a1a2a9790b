"""PostgreSQL full-text search over knowledge-base chunks (no-op on SQLite)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

A generated, weighted tsvector (title A, section B, content C) with a GIN index: inserts need no
trigger, and the PostgreSQL store in worker/agent/pgstore.py queries it.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """ALTER TABLE kb_chunks ADD COLUMN IF NOT EXISTS search_vector tsvector
        GENERATED ALWAYS AS (
            setweight(to_tsvector('english', coalesce(title, '')), 'A') ||
            setweight(to_tsvector('english', coalesce(section, '')), 'B') ||
            setweight(to_tsvector('english', coalesce(content, '')), 'C')
        ) STORED"""
    )
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_kb_chunks_search_vector ON kb_chunks USING gin (search_vector)"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS ix_kb_chunks_search_vector")
    op.execute("ALTER TABLE kb_chunks DROP COLUMN IF EXISTS search_vector")
