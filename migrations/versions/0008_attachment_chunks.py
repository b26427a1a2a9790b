"""Attachment bytes in pieces, written as the upload arrives

Revision ID: 0008_attachment_chunks
Revises: 0007_chunk_language
Create Date: 2026-12-06

- attachment_chunks (attachment_id, ordinal, data): database storage keeps an upload's bytes
  here in pieces of up to 1 MiB, inserted in the attachment row's transaction (on PostgreSQL
  while the body arrives); its storage key is `chunks:<id>`. The foreign key to attachments is
  deferred (checked at commit: the pieces come before their row) and cascades on delete.
- attachment_blobs stays, untouched: files stored before this revision keep their one row and
  their `db:<id>` key, and are read from there (models/storage.py reads both layouts), so the
  upgrade copies no bytes.

Downgrade joins each `chunks:` attachment's pieces into an attachment_blobs row (key `db:<id>`,
what the code before this revision reads), then drops the table. It reads one attachment at a
time, so memory stays at one file.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_attachment_chunks"
down_revision: str | None = "0007_chunk_language"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "attachment_chunks",
        sa.Column("attachment_id", sa.String(length=36), nullable=False),
        sa.Column("ordinal", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["attachment_id"],
            ["attachments.id"],
            name=op.f("fk_attachment_chunks_attachment_id_attachments"),
            ondelete="CASCADE",
            deferrable=True,
            initially="DEFERRED",
        ),
        sa.PrimaryKeyConstraint("attachment_id", "ordinal", name=op.f("pk_attachment_chunks")),
    )


def downgrade() -> None:
    bind = op.get_bind()
    ids = bind.execute(
        sa.text("SELECT id FROM attachments WHERE storage_key LIKE 'chunks:%' ORDER BY id")
    ).scalars()
    for attachment_id in list(ids):
        pieces = bind.execute(
            sa.text(
                "SELECT data FROM attachment_chunks WHERE attachment_id = :id ORDER BY ordinal"
            ),
            {"id": attachment_id},
        ).scalars()
        data = b"".join(bytes(piece) for piece in pieces)
        bind.execute(
            sa.text("INSERT INTO attachment_blobs (attachment_id, data) VALUES (:id, :data)"),
            {"id": attachment_id, "data": data},
        )
        bind.execute(
            sa.text("UPDATE attachments SET storage_key = :key WHERE id = :id"),
            {"key": f"db:{attachment_id}", "id": attachment_id},
        )
    op.drop_table("attachment_chunks")
