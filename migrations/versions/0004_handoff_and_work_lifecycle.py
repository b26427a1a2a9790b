"""Conversation ownership, tickets for the handoff, webhook deliveries, one work lifecycle

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

- chat_sessions: `owner` (bot | waiting | person), `agent_name`, `owner_since_seq`; the old
  status `escalated` becomes status `active` with owner `waiting`.
- messages: the escalation policy's decision (`escalation`), `error`; status `answered` → `done`.
- attachments, kb_documents: `lease_until`, `attempts` (the sweeper recovers them like replies);
  `processed` / `indexed` → `done`.
- tickets: summary, trigger message, contact email, resolution, claim/resolve times.
- webhook_deliveries: one row per notification and URL, with its outcome.
- ratings: once per session (older duplicates keep the newest), with who handled it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("chat_sessions") as b:
        b.add_column(sa.Column("owner", sa.String(16), nullable=False, server_default="bot"))
        b.add_column(sa.Column("agent_name", sa.String(255), nullable=True))
        b.add_column(
            sa.Column("owner_since_seq", sa.Integer(), nullable=False, server_default="0")
        )
    op.execute(
        "UPDATE chat_sessions SET owner = 'waiting', status = 'active' WHERE status = 'escalated'"
    )

    with op.batch_alter_table("messages") as b:
        b.add_column(sa.Column("escalation", sa.JSON(), nullable=True))
        b.add_column(sa.Column("error", sa.Text(), nullable=True))
    op.execute("UPDATE messages SET status = 'done' WHERE status = 'answered'")

    for table, done in (("attachments", "processed"), ("kb_documents", "indexed")):
        with op.batch_alter_table(table) as b:
            b.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
            b.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        op.execute(f"UPDATE {table} SET status = 'done' WHERE status = '{done}'")

    with op.batch_alter_table("tickets") as b:
        b.add_column(sa.Column("summary", sa.Text(), nullable=False, server_default=""))
        b.add_column(sa.Column("trigger_message_id", sa.String(36), nullable=True))
        b.add_column(sa.Column("contact_email", sa.String(320), nullable=True))
        b.add_column(sa.Column("resolution", sa.String(32), nullable=True))
        b.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
        b.add_column(sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True))

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("ticket_id", sa.String(36), nullable=True),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    with op.batch_alter_table("webhook_deliveries") as b:
        b.create_index(b.f("ix_webhook_deliveries_ticket_id"), ["ticket_id"], unique=False)
        b.create_index(b.f("ix_webhook_deliveries_status"), ["status"], unique=False)

    op.execute(
        "DELETE FROM ratings WHERE id IN (SELECT r.id FROM ratings r WHERE EXISTS ("
        "SELECT 1 FROM ratings n WHERE n.session_id = r.session_id AND "
        "(n.created_at > r.created_at OR (n.created_at = r.created_at AND n.id > r.id))))"
    )
    with op.batch_alter_table("ratings") as b:
        b.add_column(sa.Column("handled_by", sa.String(16), nullable=False, server_default="bot"))
        b.add_column(sa.Column("agent_name", sa.String(255), nullable=True))
        b.create_unique_constraint("uq_ratings_session_id", ["session_id"])


def downgrade() -> None:
    with op.batch_alter_table("ratings") as b:
        b.drop_constraint("uq_ratings_session_id", type_="unique")
        b.drop_column("agent_name")
        b.drop_column("handled_by")
    op.drop_table("webhook_deliveries")
    with op.batch_alter_table("tickets") as b:
        for col in (
            "resolved_at",
            "claimed_at",
            "resolution",
            "contact_email",
            "trigger_message_id",
            "summary",
        ):
            b.drop_column(col)
    for table, done in (("attachments", "processed"), ("kb_documents", "indexed")):
        op.execute(f"UPDATE {table} SET status = '{done}' WHERE status = 'done'")
        with op.batch_alter_table(table) as b:
            b.drop_column("attempts")
            b.drop_column("lease_until")
    op.execute("UPDATE messages SET status = 'answered' WHERE status = 'done' AND role = 'user'")
    with op.batch_alter_table("messages") as b:
        b.drop_column("error")
        b.drop_column("escalation")
    op.execute("UPDATE chat_sessions SET status = 'escalated' WHERE owner <> 'bot'")
    with op.batch_alter_table("chat_sessions") as b:
        b.drop_column("owner_since_seq")
        b.drop_column("agent_name")
        b.drop_column("owner")
