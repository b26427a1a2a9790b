"""Per-lexeme document frequencies for the PostgreSQL full-text store (no-op on SQLite)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

`kb_terms` (lexeme, df; the empty lexeme counts the chunks), filled from the existing chunks and
kept exact by statement-level triggers on kb_chunks, so a search learns which of its words are
rare with primary-key lookups instead of reading common words' posting lists at 1M chunks. The
statements are a frozen copy of the store's `TERMS_DDL` at this revision.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Frozen copy of worker.agent.pgstore.TERMS_DDL as of this revision (migrations never change).
STATEMENTS: tuple[str, ...] = (
    'LOCK TABLE kb_chunks IN SHARE ROW EXCLUSIVE MODE',
    'CREATE TABLE IF NOT EXISTS kb_terms (lexeme text PRIMARY KEY, df integer NOT NULL)',
    "CREATE OR REPLACE FUNCTION kb_terms_count() RETURNS trigger LANGUAGE plpgsql AS $fn$\n    BEGIN\n        IF TG_OP = 'TRUNCATE' THEN\n            DELETE FROM kb_terms;\n        ELSIF TG_OP = 'INSERT' THEN\n            INSERT INTO kb_terms AS t (lexeme, df)\n            SELECT lexeme, count(*) FROM (\n                SELECT u.lexeme FROM new_rows r, unnest(r.search_vector) u\n                UNION ALL SELECT '' FROM new_rows) x\n            GROUP BY lexeme ORDER BY lexeme  -- one lock order: no deadlock between ingests\n            ON CONFLICT (lexeme) DO UPDATE SET df = t.df + excluded.df;\n        ELSIF TG_OP = 'DELETE' THEN\n            INSERT INTO kb_terms AS t (lexeme, df)\n            SELECT lexeme, -count(*) FROM (\n                SELECT u.lexeme FROM old_rows r, unnest(r.search_vector) u\n                UNION ALL SELECT '' FROM old_rows) x\n            GROUP BY lexeme ORDER BY lexeme\n            ON CONFLICT (lexeme) DO UPDATE SET df = t.df + excluded.df;\n        ELSE\n            INSERT INTO kb_terms AS t (lexeme, df)\n            SELECT lexeme, sum(d) FROM (\n                SELECT u.lexeme, 1 AS d FROM new_rows r, unnest(r.search_vector) u\n                UNION ALL SELECT u.lexeme, -1 FROM old_rows r, unnest(r.search_vector) u) x\n            GROUP BY lexeme ORDER BY lexeme\n            ON CONFLICT (lexeme) DO UPDATE SET df = t.df + excluded.df;\n        END IF;\n        RETURN NULL;\n    END\n    $fn$",
    "INSERT INTO kb_terms (lexeme, df)\n    SELECT u.lexeme, count(*) FROM kb_chunks c, unnest(c.search_vector) u\n    WHERE NOT EXISTS (SELECT 1 FROM kb_terms) GROUP BY u.lexeme\n    UNION ALL SELECT '', count(*) FROM kb_chunks HAVING NOT EXISTS (SELECT 1 FROM kb_terms)",
    'DROP TRIGGER IF EXISTS kb_terms_insert ON kb_chunks',
    'CREATE TRIGGER kb_terms_insert AFTER INSERT ON kb_chunks REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION kb_terms_count()',
    'DROP TRIGGER IF EXISTS kb_terms_delete ON kb_chunks',
    'CREATE TRIGGER kb_terms_delete AFTER DELETE ON kb_chunks REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION kb_terms_count()',
    'DROP TRIGGER IF EXISTS kb_terms_update ON kb_chunks',
    'CREATE TRIGGER kb_terms_update AFTER UPDATE ON kb_chunks REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION kb_terms_count()',
    'DROP TRIGGER IF EXISTS kb_terms_truncate ON kb_chunks',
    'CREATE TRIGGER kb_terms_truncate AFTER TRUNCATE ON kb_chunks  FOR EACH STATEMENT EXECUTE FUNCTION kb_terms_count()',
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for event in ("insert", "delete", "update", "truncate"):
        op.execute(f"DROP TRIGGER IF EXISTS kb_terms_{event} ON kb_chunks")
    op.execute("DROP FUNCTION IF EXISTS kb_terms_count()")
    op.execute("DROP TABLE IF EXISTS kb_terms")
