"""Feedback on answers: the customer's thumbs up/down (and why) stored on the bot's message

Revision ID: 0005_feedback
Revises: 0004
Create Date: 2026-12-06

- messages: `feedback_rating` (up | down), `feedback_reason`, `feedback_at`; a later rating
  replaces an earlier one, so three nullable columns are all it needs.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_feedback"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as b:
        b.add_column(sa.Column("feedback_rating", sa.String(8), nullable=True))
        b.add_column(sa.Column("feedback_reason", sa.Text(), nullable=True))
        b.add_column(sa.Column("feedback_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as b:
        b.drop_column("feedback_at")
        b.drop_column("feedback_reason")
        b.drop_column("feedback_rating")
