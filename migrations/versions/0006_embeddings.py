"""Chunk embeddings for semantic retrieval, with the model that made them

Revision ID: 0006_embeddings
Revises: 0005_feedback
Create Date: 2026-12-06

- kb_chunks: `embedding` (little-endian float32 vector, normalised) and `embedding_model` (e.g.
  `wordllama/l2_supercat/128`); both empty until the worker embeds the chunk. A chunk whose model
  differs from the configured one is re-embedded at the next index build.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_embeddings"
down_revision: str | None = "0005_feedback"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("kb_chunks") as b:
        b.add_column(sa.Column("embedding", sa.LargeBinary(), nullable=True))
        b.add_column(sa.Column("embedding_model", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("kb_chunks") as b:
        b.drop_column("embedding_model")
        b.drop_column("embedding")
