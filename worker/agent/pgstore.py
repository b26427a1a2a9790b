"""PostgreSQL full-text retrieval over `kb_chunks`, for deployments whose record is in PostgreSQL.

The index lives in the database (a generated, weighted tsvector with a GIN index), so every web
and worker process searches the same up-to-date data without holding the corpus in memory.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from haystack import Document, component, default_from_dict, default_to_dict
from sqlalchemy import Connection, Engine, text

from worker.agent.analysis import ANALYZER
from worker.agent.chunks import chunk_document

FTS_CONFIG = "english"
MAX_QUERY_WORDS = 40  # a pasted paragraph must not turn into a 200-way OR
CANDIDATES = 100  # rows re-scored with idf after PostgreSQL's own (idf-less) ranking
DF_CAP = 5000  # frequencies are counted up to here; a word this common is not informative
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

# Step 1: the query's lexemes (stemmed by PostgreSQL exactly as the column was) with document
# frequencies counted through the GIN index and capped, so a common word costs little.
_STATS_SQL = text(
    f"""
    SELECT t.lexeme,
           (SELECT count(*) FROM (
                SELECT 1 FROM kb_chunks k
                WHERE k.search_vector @@ quote_literal(t.lexeme)::tsquery LIMIT :df_cap
            ) capped) AS df,
           (SELECT greatest(1, CASE WHEN c.reltuples < 50000
                                    THEN (SELECT count(*) FROM kb_chunks)
                                    ELSE c.reltuples::bigint END)
            FROM pg_class c WHERE c.oid = 'kb_chunks'::regclass) AS n
    FROM unnest(to_tsvector('{FTS_CONFIG}', :plain)) AS t
    """
)

# Step 2: OR-match the informative lexemes through the GIN index, take the best candidates by
# ts_rank_cd (title-weighted, length-normalised), then score them by idf-weighted title/section
# and body matches, because ts_rank_cd has no idf and lets a common word outrank a rare one.
_SEARCH_SQL = text(
    """
    WITH stats AS (
        SELECT quote_literal(s.lexeme)::tsquery AS tq, s.idf
        FROM unnest(CAST(:lexemes AS text[]), CAST(:idfs AS float8[])) AS s(lexeme, idf)
    ),
    hits AS (
        SELECT c.id, c.document_id, c.position, c.title, c.section, c.content, c.search_vector,
               ts_rank_cd('{0.1, 0.2, 0.4, 1.0}', c.search_vector, q.query, 1) AS rank
        FROM kb_chunks c, CAST(:match AS tsquery) AS q(query)
        WHERE c.search_vector @@ q.query
        ORDER BY rank DESC
        LIMIT :candidates
    )
    SELECT h.id, h.document_id, h.position, h.title, h.section, h.content, d.external_id, h.rank,
           (SELECT coalesce(sum(s.idf * (
                CASE WHEN ts_filter(h.search_vector, '{a,b}') @@ s.tq THEN :title_weight
                     ELSE 0 END +
                CASE WHEN ts_filter(h.search_vector, '{c}') @@ s.tq THEN 1 ELSE 0 END)), 0)
            FROM stats s) AS matched
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


def _quote(lexeme: str) -> str:
    """A lexeme as a tsquery operand (quoted, so it is taken literally)."""
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def _match_queries(stats: list[tuple[str, int]]) -> list[str]:
    """Candidate tsqueries to try in turn: any informative word or all common ones together."""
    rare = [_quote(lex) for lex, df in stats if 0 < df < DF_CAP]
    common = [_quote(lex) for lex, df in stats if df >= DF_CAP]
    every_common = f"({' & '.join(common)})" if common else ""
    if rare:
        return [" | ".join(rare + ([every_common] if common else []))]
    return [every_common, " | ".join(common)] if common else []


@component
class PgFullTextRetriever:
    """Haystack retriever over PostgreSQL full-text search on `kb_chunks`."""

    def __init__(
        self, *, database_url: str | None = None, top_k: int = 10, scale_score: bool = False
    ) -> None:
        """`database_url=None` means the app's database, keeping secrets out of saved pipelines."""
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
        if top_k == 0 or not ANALYZER.words(query):
            return {"documents": []}
        plain = " ".join(query.split()[:MAX_QUERY_WORDS])  # PostgreSQL parses it as it did the KB
        with engine_for(self.database_url).connect() as conn:
            stats = conn.execute(_STATS_SQL, {"plain": plain, "df_cap": DF_CAP}).all()
            idf = {lex: math.log1p((n - df + 0.5) / (df + 0.5)) for lex, df, n in stats}
            params = {
                "lexemes": list(idf),
                "idfs": list(idf.values()),
                "candidates": max(CANDIDATES, top_k),
                "title_weight": TITLE_WEIGHT,
            }
            rows: list[Any] = []
            for match in _match_queries([(lex, df) for lex, df, _ in stats]):
                rows = conn.execute(_SEARCH_SQL, {**params, "match": match}).mappings().all()
                if rows:
                    break
        mass = sum(idf.values())
        ranked = sorted(rows, key=lambda r: (-self._rank(r), r["id"]))[:top_k]
        return {"documents": [self._document(r, self._score(r, mass)) for r in ranked]}

    @staticmethod
    def _rank(row: Any) -> float:
        """Order: idf-weighted field matches, then PostgreSQL's cover density (tf, proximity)."""
        return float(row["matched"]) + RANK_WEIGHT * float(row["rank"])

    def _score(self, row: Any, mass: float) -> float:
        """Scaled: all words in title and body = 1, as in bm25s, so one threshold fits both."""
        if not self.scale_score:
            return self._rank(row)
        return min(1.0, float(row["matched"]) / max(mass * (1 + TITLE_WEIGHT), 1e-9))

    @staticmethod
    def _document(row: Any, score: float) -> Document:
        """A result row as a chunk Document with the scored value."""
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
