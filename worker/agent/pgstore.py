"""PostgreSQL full-text retrieval over `kb_chunks`, for deployments whose record is in PostgreSQL.

The index lives in the database (a generated, weighted tsvector with a GIN index), so every web
and worker process searches the same up-to-date data without holding the corpus in memory.
"""

from __future__ import annotations

import threading
from typing import Any

from haystack import Document, component, default_from_dict, default_to_dict
from sqlalchemy import Connection, Engine, text

from worker.agent.bm25 import ANALYZER, chunk_document

FTS_CONFIG = "english"
MAX_QUERY_TERMS = 16  # a pasted paragraph must not turn into a 200-way OR
CANDIDATES = 50  # rows re-ranked by query coverage after PostgreSQL's own ranking

# The DDL the Alembic migration runs on PostgreSQL (SQLite has no full-text column).
# title weighs 'A', section 'B', content 'C'; the column is generated, so inserts need no trigger.
FTS_DDL: tuple[str, ...] = (
    f"""ALTER TABLE kb_chunks ADD COLUMN IF NOT EXISTS search_vector tsvector
    GENERATED ALWAYS AS (
        setweight(to_tsvector('{FTS_CONFIG}', coalesce(title, '')), 'A') ||
        setweight(to_tsvector('{FTS_CONFIG}', coalesce(section, '')), 'B') ||
        setweight(to_tsvector('{FTS_CONFIG}', coalesce(content, '')), 'C')
    ) STORED""",
    "CREATE INDEX IF NOT EXISTS ix_kb_chunks_search_vector ON kb_chunks USING gin (search_vector)",
)

# Inner query: OR-match through the GIN index, PostgreSQL's cover-density rank (title-weighted,
# normalised by log length). Outer query: the share of the query's lexemes each candidate holds,
# because ts_rank_cd has no idf and would otherwise let one repeated common word win.
_SEARCH_SQL = text(
    f"""
    WITH q AS (
        SELECT websearch_to_tsquery('{FTS_CONFIG}', :ors) AS query,
               coalesce(array(SELECT DISTINCT unnest(tsvector_to_array(
                   to_tsvector('{FTS_CONFIG}', :plain))) ), '{{}}'::text[]) AS lexemes
    ),
    hits AS (
        SELECT c.id, c.document_id, c.position, c.title, c.section, c.content,
               c.search_vector,
               ts_rank_cd('{{0.1, 0.2, 0.4, 1.0}}', c.search_vector, q.query, 1) AS rank
        FROM kb_chunks c, q
        WHERE c.search_vector @@ q.query
        ORDER BY rank DESC
        LIMIT :candidates
    )
    SELECT h.id, h.document_id, h.position, h.title, h.section, h.content, d.external_id,
           h.rank,
           (SELECT count(*) FROM unnest(q.lexemes) AS l
             WHERE l = ANY(tsvector_to_array(h.search_vector)))::float
             / greatest(cardinality(q.lexemes), 1) AS coverage
    FROM hits h JOIN kb_documents d ON d.id = h.document_id, q
    """
)

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def ensure_pg_fts(connection: Connection) -> None:
    """Create the generated tsvector column and its GIN index if missing (idempotent)."""
    for statement in FTS_DDL:
        connection.execute(text(statement))


def engine_for(database_url: str | None) -> Engine:
    """The shared engine for the configured database, or a cached one per explicit URL."""
    from models.db import get_engine, make_engine

    if database_url is None:
        return get_engine()
    with _engines_lock:
        engine = _engines.get(database_url)
        if engine is None:
            engine = _engines[database_url] = make_engine(database_url)
        return engine


def query_words(query: str) -> list[str]:
    """Distinct query words, in order, capped: the terms OR-ed together for PostgreSQL."""
    words = list(dict.fromkeys(ANALYZER.words(query)))
    return words[:MAX_QUERY_TERMS]


@component
class PgFullTextRetriever:
    """Haystack retriever over PostgreSQL full-text search on `kb_chunks`."""

    def __init__(
        self, *, database_url: str | None = None, top_k: int = 10, scale_score: bool = False
    ) -> None:
        """`database_url=None` uses the app's configured database (and keeps secrets out of
        serialised pipelines)."""
        if top_k <= 0:
            raise ValueError(f"top_k must be greater than 0, got {top_k}")
        self.database_url = database_url
        self.top_k = top_k
        self.scale_score = scale_score

    @component.output_types(documents=list[Document])
    def run(self, query: str, top_k: int | None = None) -> dict[str, list[Document]]:
        """Best chunks for `query`; scores on `Document.score` (scaled: 0..1)."""
        top_k = self.top_k if top_k is None else top_k
        if top_k < 0:
            raise ValueError(f"top_k must be at least 0, got {top_k}")
        words = query_words(query)
        if top_k == 0 or not words:
            return {"documents": []}
        params = {
            "ors": " or ".join(words),
            "plain": " ".join(words),
            "candidates": max(CANDIDATES, top_k),
        }
        with engine_for(self.database_url).connect() as conn:
            rows = conn.execute(_SEARCH_SQL, params).mappings().all()
        scored = sorted(
            ((self._score(r["rank"], r["coverage"]), r) for r in rows),
            key=lambda pair: (-pair[0], pair[1]["id"]),
        )
        return {"documents": [self._document(row, score) for score, row in scored[:top_k]]}

    def _score(self, rank: float, coverage: float) -> float:
        """Coverage times a saturating rank: all query words present and well placed -> 1."""
        saturated = rank / (rank + 0.1)
        return coverage * saturated if self.scale_score else rank * (0.5 + coverage)

    @staticmethod
    def _document(row: Any, score: float) -> Document:
        doc = chunk_document(
            chunk_id=row["id"],
            document_id=row["document_id"],
            content=row["content"],
            title=row["title"] or "",
            section=row["section"],
            position=row["position"] or 0,
            external_id=row["external_id"],
        )
        return Document(id=doc.id, content=doc.content, meta=doc.meta, score=float(score))

    def to_dict(self) -> dict[str, Any]:
        """Serialise the settings (the URL only if one was given explicitly)."""
        return default_to_dict(
            self, database_url=self.database_url, top_k=self.top_k, scale_score=self.scale_score
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PgFullTextRetriever:
        """Inverse of `to_dict`."""
        return default_from_dict(cls, data)
