"""Each chunk's language, and PostgreSQL full text parsed with that language's configuration

Revision ID: 0007_chunk_language
Revises: 0006_embeddings
Create Date: 2026-12-06

- kb_chunks: `language` (ISO 639-1 code of the article, detected at ingestion; NULL when it was
  unclear). Both databases: the in-memory index reads it instead of detecting again. Existing
  chunks are tagged here with their article's language, detected as ingestion detects it
  (`worker.agent.language.article_language`: the first two chunks, 400 characters of each);
  an article whose language is unclear stays NULL. On SQLite that is all (the index build
  detected the same languages before; nothing else changes).
- PostgreSQL only: `search_vector` is generated again, each chunk parsed with its language's
  text-search configuration (english, french, german, ...; 'simple' for a language PostgreSQL
  has no stemmer for; english for NULL, as every chunk was parsed before). `kb_terms` is
  recounted (its triggers are off meanwhile, as the column they read is dropped and added
  back). A partial index on each article's first chunk's language lets the store count the
  KB's languages without reading every chunk.

Downgrade restores the English-only column and drops `language`. Both directions rewrite
kb_chunks on PostgreSQL (a generated column is computed for every row), as 0002 did.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_chunk_language"
down_revision: str | None = "0006_embeddings"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of worker.agent.pgstore's PG_CONFIGS / config_sql() at this revision.
CONFIGS: dict[str, str] = {
    "en": "english",
    "de": "german",
    "fr": "french",
    "es": "spanish",
    "it": "italian",
    "nl": "dutch",
    "pt": "portuguese",
    "sv": "swedish",
    "da": "danish",
    "no": "norwegian",
    "fi": "finnish",
    "ru": "russian",
    "hu": "hungarian",
    "ro": "romanian",
    "tr": "turkish",
}
_WHENS = " ".join(f"WHEN '{code}' THEN '{cfg}'::regconfig" for code, cfg in CONFIGS.items())
PER_LANGUAGE = (
    f"(CASE WHEN language IS NULL THEN 'english'::regconfig "
    f"ELSE CASE language {_WHENS} ELSE 'simple'::regconfig END END)"
)
ENGLISH = "'english'"
TRIGGERS = ("insert", "delete", "update", "truncate")


def _vector_column(config: str) -> str:
    return f"""ALTER TABLE kb_chunks ADD COLUMN search_vector tsvector
        GENERATED ALWAYS AS (
            setweight(to_tsvector({config}, coalesce(title, '')), 'A') ||
            setweight(to_tsvector({config}, coalesce(section, '')), 'B') ||
            setweight(to_tsvector({config}, coalesce(content, '')), 'C')
        ) STORED"""


def _rebuild_vectors(config: str) -> None:
    """Generate search_vector again with `config`, its GIN index, and recount kb_terms."""
    for event in TRIGGERS:
        op.execute(f"ALTER TABLE kb_chunks DISABLE TRIGGER kb_terms_{event}")
    op.execute("DROP INDEX IF EXISTS ix_kb_chunks_search_vector")
    op.execute("ALTER TABLE kb_chunks DROP COLUMN IF EXISTS search_vector")
    op.execute(_vector_column(config))
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_kb_chunks_search_vector ON kb_chunks USING gin (search_vector)"
    )
    op.execute("DELETE FROM kb_terms")
    op.execute(
        """INSERT INTO kb_terms (lexeme, df)
        SELECT u.lexeme, count(*) FROM kb_chunks c, unnest(c.search_vector) u GROUP BY u.lexeme
        UNION ALL SELECT '', count(*) FROM kb_chunks"""
    )
    for event in TRIGGERS:
        op.execute(f"ALTER TABLE kb_chunks ENABLE TRIGGER kb_terms_{event}")


def _tag_existing_chunks() -> None:
    """Set every chunk's language to its article's, detected from its first two chunks."""
    from worker.agent.language import article_language

    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            """SELECT document_id, substr(content, 1, 400) FROM (
                SELECT document_id, content,
                       row_number() OVER (PARTITION BY document_id ORDER BY position, id) AS n
                FROM kb_chunks) x
            WHERE n <= 2 ORDER BY document_id, n"""
        )
    ).all()
    heads: dict[str, list[str]] = {}
    for document_id, content in rows:
        heads.setdefault(document_id, []).append(content or "")
    found = {d: article_language(texts) for d, texts in heads.items()}
    tagged = [{"doc": d, "code": code} for d, code in found.items() if code]
    if tagged:
        bind.execute(
            sa.text("UPDATE kb_chunks SET language = :code WHERE document_id = :doc"), tagged
        )


def upgrade() -> None:
    with op.batch_alter_table("kb_chunks") as b:
        b.add_column(sa.Column("language", sa.String(8), nullable=True))
    if op.get_bind().dialect.name != "postgresql":
        _tag_existing_chunks()  # what the index build would detect anyway
        return
    op.execute("LOCK TABLE kb_chunks IN ACCESS EXCLUSIVE MODE")
    for event in TRIGGERS:  # the tagging below must not recount every chunk's lexemes twice
        op.execute(f"ALTER TABLE kb_chunks DISABLE TRIGGER kb_terms_{event}")
    _tag_existing_chunks()
    _rebuild_vectors(PER_LANGUAGE)
    # the store reads the KB's languages from each article's first chunk at every version change
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_kb_chunks_first_language ON kb_chunks (language) "
        "WHERE position = 0"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("LOCK TABLE kb_chunks IN ACCESS EXCLUSIVE MODE")
        op.execute("DROP INDEX IF EXISTS ix_kb_chunks_first_language")
        _rebuild_vectors(ENGLISH)
    with op.batch_alter_table("kb_chunks") as b:
        b.drop_column("language")
