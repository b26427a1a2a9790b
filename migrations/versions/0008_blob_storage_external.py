"""PostgreSQL: attachment bytes stored as given, without trying to compress them.

A `bytea` value over ~2 KB is compressed with pglz before it is cut into TOAST chunks, on the
upload's commit. pglz runs at tens of MB/s and looks for repeats only within 4 KB: a 5 MB
text file with no short repeats took 480-720 ms of server time to find that it did not
compress, against 135-180 ms stored as given (bench/README.md, "SQLite checkpoints off the
request path", session 7). Most attachments (PDF, DOCX, images) are compressed already. EXTERNAL
keeps the bytes out of line, uncompressed; it applies to values written from now on (no
rewrite of existing rows). SQLite has no such setting.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008_blob_storage_external"
down_revision: str | None = "0007_chunk_language"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE attachment_blobs ALTER COLUMN data SET STORAGE EXTERNAL")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE attachment_blobs ALTER COLUMN data SET STORAGE EXTENDED")
