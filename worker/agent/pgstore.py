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

from worker.agent.analysis import ANALYZER, LANGUAGE_NAMES, capped_mass, is_noise
from worker.agent.chunks import chunk_document

# PostgreSQL's built-in text-search configurations for the languages an article may be tagged
# with (ISO 639-1, `kb_chunks.language`). An untagged chunk (undetected, or ingested before the
# language was stored) is parsed as English, as every chunk was before; a language PostgreSQL
# has no stemmer for, with 'simple' (lower-cased words, no stemming, no stop words).
PG_CONFIGS: dict[str, str] = {
    code: LANGUAGE_NAMES[code] for code in "en de fr es it nl pt sv da no fi ru hu ro tr".split()
}
FTS_CONFIG = "english"  # untagged chunks, and questions in no known language
NO_STEMMER_CONFIG = "simple"


def pg_config(language: str | None) -> str:
    """The text-search configuration for a language code (see `PG_CONFIGS`)."""
    if not language:
        return FTS_CONFIG
    return PG_CONFIGS.get(language, NO_STEMMER_CONFIG)


def config_sql(column: str = "language") -> str:
    """`pg_config` as an SQL expression over a chunk's language column (immutable, so a
    generated column may use it)."""
    whens = " ".join(f"WHEN '{code}' THEN '{cfg}'::regconfig" for code, cfg in PG_CONFIGS.items())
    return (
        f"(CASE WHEN {column} IS NULL THEN '{FTS_CONFIG}'::regconfig "
        f"ELSE CASE {column} {whens} ELSE '{NO_STEMMER_CONFIG}'::regconfig END END)"
    )


MAX_QUERY_WORDS = 40  # a pasted paragraph must not turn into a 200-way OR
CANDIDATES = 100  # rows re-scored with idf after PostgreSQL's own (idf-less) ranking
MATCH_BUDGET = 2000  # rows a match may cost: beyond it, common words only score, never match
SCORE_SCALE = 1.55  # median bm25s / this store's scaled top score, same article (see _score)
TITLE_WEIGHT = 1.5  # a title/section match counts this much more than a body match
RANK_WEIGHT = 1.0  # share of ts_rank_cd in the final order (it brings tf and proximity)

# The DDL the Alembic migrations run on PostgreSQL (SQLite has no full-text column).
# title weighs 'A', section 'B', content 'C'; each chunk is parsed with its language's
# configuration; the column is generated, so inserts need no trigger.
FTS_DDL: tuple[str, ...] = (
    f"""ALTER TABLE kb_chunks ADD COLUMN IF NOT EXISTS search_vector tsvector
    GENERATED ALWAYS AS (
        setweight(to_tsvector({config_sql()}, coalesce(title, '')), 'A') ||
        setweight(to_tsvector({config_sql()}, coalesce(section, '')), 'B') ||
        setweight(to_tsvector({config_sql()}, coalesce(content, '')), 'C')
    ) STORED""",
    "CREATE INDEX IF NOT EXISTS ix_kb_chunks_search_vector ON kb_chunks USING gin (search_vector)",
    # the KB's languages are read at every version change from each article's first chunk:
    # an index-only scan of this (one entry per article), not a pass over every chunk's row
    "CREATE INDEX IF NOT EXISTS ix_kb_chunks_first_language ON kb_chunks (language) "
    "WHERE position = 0",
)

# Per-lexeme document frequencies, kept exact by statement-level triggers on kb_chunks (one
# grouped upsert per INSERT/DELETE/UPDATE statement, so bulk loads stay cheap); the row for the
# empty lexeme counts the chunks. Counting matches through the GIN index per query cost most of
# the time at 1M chunks: a common word's whole posting list was read just to learn it is common.
# One table for every language: a lexeme's df counts the chunks of any language holding it,
# which is what a match over the whole table sees.
TERMS_DDL: tuple[str, ...] = (
    "LOCK TABLE kb_chunks IN SHARE ROW EXCLUSIVE MODE",  # no insert slips between count and trigger
    "CREATE TABLE IF NOT EXISTS kb_terms (lexeme text PRIMARY KEY, df integer NOT NULL)",
    """CREATE OR REPLACE FUNCTION kb_terms_count() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
        IF TG_OP = 'TRUNCATE' THEN
            DELETE FROM kb_terms;
        ELSIF TG_OP = 'INSERT' THEN
            INSERT INTO kb_terms AS t (lexeme, df)
            SELECT lexeme, count(*) FROM (
                SELECT u.lexeme FROM new_rows r, unnest(r.search_vector) u
                UNION ALL SELECT '' FROM new_rows) x
            GROUP BY lexeme ORDER BY lexeme  -- one lock order: no deadlock between ingests
            ON CONFLICT (lexeme) DO UPDATE SET df = t.df + excluded.df;
        ELSIF TG_OP = 'DELETE' THEN
            INSERT INTO kb_terms AS t (lexeme, df)
            SELECT lexeme, -count(*) FROM (
                SELECT u.lexeme FROM old_rows r, unnest(r.search_vector) u
                UNION ALL SELECT '' FROM old_rows) x
            GROUP BY lexeme ORDER BY lexeme
            ON CONFLICT (lexeme) DO UPDATE SET df = t.df + excluded.df;
        ELSE
            INSERT INTO kb_terms AS t (lexeme, df)
            SELECT lexeme, sum(d) FROM (
                SELECT u.lexeme, 1 AS d FROM new_rows r, unnest(r.search_vector) u
                UNION ALL SELECT u.lexeme, -1 FROM old_rows r, unnest(r.search_vector) u) x
            GROUP BY lexeme ORDER BY lexeme
            ON CONFLICT (lexeme) DO UPDATE SET df = t.df + excluded.df;
        END IF;
        RETURN NULL;
    END
    $fn$""",
    """INSERT INTO kb_terms (lexeme, df)
    SELECT u.lexeme, count(*) FROM kb_chunks c, unnest(c.search_vector) u
    WHERE NOT EXISTS (SELECT 1 FROM kb_terms) GROUP BY u.lexeme
    UNION ALL SELECT '', count(*) FROM kb_chunks HAVING NOT EXISTS (SELECT 1 FROM kb_terms)""",
    *(
        stmt
        for name, event, tables in (
            ("insert", "INSERT", "NEW TABLE AS new_rows"),
            ("delete", "DELETE", "OLD TABLE AS old_rows"),
            ("update", "UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
            ("truncate", "TRUNCATE", ""),
        )
        for stmt in (
            f"DROP TRIGGER IF EXISTS kb_terms_{name} ON kb_chunks",
            f"CREATE TRIGGER kb_terms_{name} AFTER {event} ON kb_chunks "
            f"{'REFERENCING ' + tables if tables else ''} "
            "FOR EACH STATEMENT EXECUTE FUNCTION kb_terms_count()",
        )
    ),
)

# Step 1: the query's lexemes (stemmed by PostgreSQL exactly as the column was for chunks in the
# question's language), their document frequencies and the chunk count: primary-key lookups,
# whatever the corpus size.
_STATS_SQL = text(
    """
    SELECT t.lexeme, coalesce(k.df, 0) AS df,
           (SELECT greatest(1, df) FROM kb_terms WHERE lexeme = '') AS n
    FROM unnest(to_tsvector(CAST(:config AS regconfig), :plain)) AS t
    LEFT JOIN kb_terms k USING (lexeme)
    """
)

# Articles per language, read from each article's first chunk; untagged ones come back as NULL.
_LANGUAGES_SQL = text(
    "SELECT language, count(*) FROM kb_chunks WHERE position = 0 GROUP BY language"
)

# Step 2: match through the GIN index (at most :cap rows, so a common word cannot make every
# query rank a third of the table), take the best candidates by ts_rank_cd over all the query's
# words (title-weighted, length-normalised), then score them by idf-weighted title/section and
# body matches, because ts_rank_cd has no idf and lets a common word outrank a rare one.
_SEARCH_SQL = text(
    """
    WITH stats AS (
        SELECT quote_literal(s.lexeme)::tsquery AS tq, s.idf
        FROM unnest(CAST(:lexemes AS text[]), CAST(:idfs AS float8[])) AS s(lexeme, idf)
    ),
    hits AS (
        SELECT m.*, ts_rank_cd('{0.1, 0.2, 0.4, 1.0}', m.search_vector, q.query, 1) AS rank
        FROM (
            SELECT c.id, c.document_id, c.position, c.title, c.section, c.content,
                   c.language, c.search_vector
            FROM kb_chunks c
            WHERE c.search_vector @@ CAST(:match AS tsquery)
            LIMIT :cap
        ) m, CAST(:rank_query AS tsquery) AS q(query)
        ORDER BY rank DESC
        LIMIT :candidates
    )
    SELECT h.id, h.document_id, h.position, h.title, h.section, h.content, h.language,
           d.external_id,
           d.metadata ->> 'url' AS url, h.rank,
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
    """Create the tsvector column, its GIN index and the term-frequency table (idempotent)."""
    for statement in (*FTS_DDL, *TERMS_DDL):
        connection.execute(text(statement))


def pg_languages(connection: Connection) -> dict[str, int]:
    """Articles per language as ingestion tagged them; untagged ones count as the majority
    language (as the in-memory index counts undetected ones), English when none is tagged."""
    counts: dict[str, int] = {}
    untagged = 0
    for code, n in connection.execute(_LANGUAGES_SQL).all():
        if code:
            counts[str(code)] = int(n)
        else:
            untagged = int(n)
    if untagged:
        main = min(counts, key=lambda c: (-counts[c], c)) if counts else "en"
        counts[main] = counts.get(main, 0) + untagged
    return counts


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


def _any(operands: list[str]) -> str:
    return " | ".join(operands)


def _all(lexemes: list[str]) -> str:
    return "(" + " & ".join(_quote(lex) for lex in lexemes) + ")"


def _match_queries(stats: list[tuple[str, int]], n: int, top_k: int) -> list[str]:
    """Candidate tsqueries to try in turn, each expected to match at most ~MATCH_BUDGET rows.

    A small corpus (or rare words) matches any word, exactly as BM25 would. Otherwise the rarest
    words whose frequencies fit the budget match alone, and the common rest only as a
    conjunction (documents with all of them), estimated as independent; when every word is
    common, the longest conjunction of the rarest ones still expected to fill `top_k`. The last
    resort (too few rows) is any word, cut at the budget by the caller's LIMIT.
    """
    terms = sorted(((df, lex) for lex, df in stats if df > 0), key=lambda t: (t[0], t[1]))
    if not terms:
        return []
    every = _any([_quote(lex) for _, lex in terms])
    if sum(df for df, _ in terms) <= MATCH_BUDGET:
        return [every]
    rare: list[str] = []
    spent = 0
    for df, lex in terms:
        if spent + df > MATCH_BUDGET:
            break
        rare.append(lex)
        spent += df
    rest = [lex for _, lex in terms[len(rare) :]]
    clauses = [_quote(lex) for lex in rare]
    expected = float(n)
    for df, _ in terms[len(rare) :]:
        expected *= df / n
    if rare and len(rest) > 1 and expected <= MATCH_BUDGET:
        clauses.append(_all(rest))
    elif not rare:
        size, expected = 1, terms[0][0] * 1.0
        while size < len(terms) and expected * terms[size][0] / n >= top_k:
            expected *= terms[size][0] / n
            size += 1
        clauses.append(_all([lex for _, lex in terms[:size]]))
    return [_any(clauses), every]


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
    def run(
        self,
        query: str,
        top_k: int | None = None,
        language: str | None = None,
        fuzzy: bool = True,  # accepted like the bm25s retriever's; full text has no typo step
    ) -> dict[str, list[Document]]:
        """Best chunks for `query`; scores on `Document.score` (scaled: 0..1).

        `language` (ISO 639-1): the question's, parsed with that language's configuration
        (`pg_config`), as the chunks tagged with it were; None parses it as English."""
        config = pg_config(language)
        top_k = self.top_k if top_k is None else top_k
        if top_k < 0:
            raise ValueError(f"top_k must be at least 0, got {top_k}")
        if top_k == 0 or not ANALYZER.words(query):
            return {"documents": []}
        plain = " ".join(query.split()[:MAX_QUERY_WORDS])  # PostgreSQL parses it as it did the KB
        with engine_for(self.database_url).connect() as conn:
            stats = conn.execute(_STATS_SQL, {"plain": plain, "config": config}).all()
            n = int(stats[0][2] or 1) if stats else 1
            idf = {lex: math.log1p((n - df + 0.5) / (df + 0.5)) for lex, df, _ in stats}
            params = {
                "lexemes": list(idf),
                "idfs": list(idf.values()),
                "candidates": max(CANDIDATES, top_k),
                "cap": max(MATCH_BUDGET, top_k),
                "title_weight": TITLE_WEIGHT,
            }
            rows: dict[str, Any] = {}  # a wider pass is cut at the budget: keep the narrower hits
            plan = _match_queries([(lex, df) for lex, df, _ in stats], n, top_k)
            for match in plan:
                args = {**params, "match": match, "rank_query": plan[-1]}
                rows.update((r["id"], r) for r in conn.execute(_SEARCH_SQL, args).mappings())
                if len(rows) >= min(top_k, CANDIDATES):
                    break
        # the same reference as bm25s: the heaviest few words, so a long message (a question
        # plus an attached file) is not scored lower here than in memory for the same match
        # and an unknown code or number ("BW-7731": no chunk holds it) weighs like a common
        # word, as in bm25s, instead of as the rarest possible word
        mass = capped_mass(
            [1.0 if df == 0 and is_noise(lex.strip("-")) else idf[lex] for lex, df, _ in stats]
        )
        ranked = sorted(rows.values(), key=lambda r: (-self._rank(r), r["id"]))[:top_k]
        return {"documents": [self._document(r, self._score(r, mass)) for r in ranked]}

    @staticmethod
    def _rank(row: Any) -> float:
        """Order: idf-weighted field matches, then PostgreSQL's cover density (tf, proximity)."""
        return float(row["matched"]) + RANK_WEIGHT * float(row["rank"])

    def _score(self, row: Any, mass: float) -> float:
        """Scaled: all words in title and body = 1, as in bm25s, so one threshold fits both."""
        if not self.scale_score:
            return self._rank(row)
        # bm25s scores a word by its frequency and the chunk's length, and counts exact forms
        # again; this store counts presence per field. On the same top article this store's
        # scaled score was a steady fraction of bm25s's (SCORE_SCALE: measured on the tuning
        # questions, bench/README.md), so it is put back on that scale: one confidence
        # threshold then means the same thing whichever store ranked.
        reference = mass * (1 + TITLE_WEIGHT) / SCORE_SCALE
        return min(1.0, float(row["matched"]) / max(reference, 1e-9))

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
            url=row["url"],
        )
        if row["language"]:
            doc.meta["language"] = row["language"]
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
