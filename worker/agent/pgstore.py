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
CANDIDATES = 100  # rows re-scored with idf after PostgreSQL's own (idf-less) ranking
DF_CAP = 5000  # document-frequency counts stop here (bounded cost on huge tables)
TITLE_WEIGHT = 1.5  # a title/section match counts this much more than a body match
RANK_WEIGHT = 1.0  # share of ts_rank_cd in the final order (it brings tf and proximity)

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

# 1. lex: the query's lexemes, stemmed by PostgreSQL exactly as the column was.
# 2. stats: each lexeme's idf, from a document count capped at :df_cap rows (GIN makes it cheap,
#    the cap bounds it on huge tables; beyond the cap a word is common anyway).
# 3. hits: OR-match through the GIN index, ranked by ts_rank_cd (title-weighted) -> candidates.
# 4. final: candidates re-scored by idf-weighted title/section and body matches, because
#    ts_rank_cd has no idf and would let a common word outrank the rare word that matters.
_SEARCH_SQL = text(
    f"""
    WITH lex AS (
        SELECT DISTINCT quote_literal(t.lexeme)::tsquery AS tq
        FROM unnest(to_tsvector('{FTS_CONFIG}', :plain)) AS t
    ),
    total AS (
        SELECT greatest(1, CASE WHEN c.reltuples < 50000 THEN (SELECT count(*) FROM kb_chunks)
                                ELSE c.reltuples::bigint END) AS n
        FROM pg_class c WHERE c.oid = 'kb_chunks'::regclass
    ),
    stats AS (
        SELECT lex.tq, ln(1 + (total.n - d.df + 0.5) / (d.df + 0.5)) AS idf
        FROM lex, total, LATERAL (
            SELECT count(*) AS df FROM (
                SELECT 1 FROM kb_chunks k WHERE k.search_vector @@ lex.tq LIMIT :df_cap
            ) capped
        ) d
    ),
    hits AS (
        SELECT c.id, c.document_id, c.position, c.title, c.section, c.content, c.search_vector,
               ts_rank_cd('{{0.1, 0.2, 0.4, 1.0}}', c.search_vector, q.query, 1) AS rank
        FROM kb_chunks c, websearch_to_tsquery('{FTS_CONFIG}', :ors) AS q(query)
        WHERE c.search_vector @@ q.query
        ORDER BY rank DESC
        LIMIT :candidates
    )
    SELECT h.id, h.document_id, h.position, h.title, h.section, h.content, d.external_id, h.rank,
           (SELECT coalesce(sum(s.idf * (
                CASE WHEN ts_filter(h.search_vector, '{{a,b}}') @@ s.tq THEN :title_weight
                     ELSE 0 END +
                CASE WHEN ts_filter(h.search_vector, '{{c}}') @@ s.tq THEN 1 ELSE 0 END)), 0)
            FROM stats s) AS matched,
           (SELECT coalesce(sum(s.idf), 0) FROM stats s) AS mass
    FROM hits h JOIN kb_documents d ON d.id = h.document_id
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
            "df_cap": DF_CAP,
            "title_weight": TITLE_WEIGHT,
        }
        with engine_for(self.database_url).connect() as conn:
            rows = conn.execute(_SEARCH_SQL, params).mappings().all()
        ranked = sorted(rows, key=lambda r: (-self._rank(r), r["id"]))[:top_k]
        return {"documents": [self._document(r, self._score(r)) for r in ranked]}

    @staticmethod
    def _rank(row: Any) -> float:
        """Order: idf-weighted field matches, then PostgreSQL's cover density (tf, proximity)."""
        return float(row["matched"]) + RANK_WEIGHT * float(row["rank"])

    def _score(self, row: Any) -> float:
        """Raw: the ranking value. Scaled: every query word in title and body gives 1, the same
        meaning the bm25s store's scaled score has, so one confidence threshold fits both."""
        if not self.scale_score:
            return self._rank(row)
        return min(1.0, float(row["matched"]) / max(float(row["mass"]) * (1 + TITLE_WEIGHT), 1e-9))

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
