"""The term-frequency table behind the PostgreSQL store, and the match plan it drives."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.orm import Session

from models import KBChunk, KBDocument
from tests.agent.conftest import chunk_rows, load_rows
from worker.agent import pgstore
from worker.agent.pgstore import PgFullTextRetriever, _match_queries, engine_for

_RECOUNT = text(
    """
    SELECT u.lexeme, count(*) FROM kb_chunks c, unnest(c.search_vector) u GROUP BY u.lexeme
    UNION ALL SELECT '', count(*) FROM kb_chunks
    """
)


def _terms(url: str) -> tuple[dict[str, int], dict[str, int]]:
    """The trigger-kept frequencies (zeros dropped) and a fresh recount."""
    with engine_for(url).connect() as conn:
        kept = dict(conn.execute(text("SELECT lexeme, df FROM kb_terms WHERE df <> 0")).all())
        fresh = dict(conn.execute(_RECOUNT).all())
    return kept, {k: v for k, v in fresh.items() if v}


@pytest.fixture
def pg_kb(pg_url: str) -> str:
    load_rows(pg_url, chunk_rows(), version=1)
    return pg_url


def test_frequencies_follow_insert_replace_update_delete_and_truncate(pg_kb):
    kept, fresh = _terms(pg_kb)
    assert kept == fresh and kept[""] == len(chunk_rows()) and kept["refund"] >= 1
    rows = chunk_rows()
    rows[0] = {**rows[0], "content": "Refunds now travel by carrier pigeon."}
    load_rows(pg_kb, rows, version=2)  # replace everything
    kept, fresh = _terms(pg_kb)
    assert kept == fresh and kept["pigeon"] == 1
    with Session(engine_for(pg_kb)) as session, session.begin():
        session.execute(
            update(KBChunk)
            .where(KBChunk.content.contains("pigeon"))
            .values(content="Refunds now travel by owl.")
        )
        doc_id = session.scalars(select_first_document()).first()
        session.execute(delete(KBDocument).where(KBDocument.id == doc_id))  # cascades
    kept, fresh = _terms(pg_kb)
    assert kept == fresh and "pigeon" not in kept
    with engine_for(pg_kb).begin() as conn:
        conn.execute(text("TRUNCATE kb_chunks"))
    assert _terms(pg_kb) == ({}, {})


def select_first_document():  # type: ignore[no-untyped-def]
    """The first article by external id (a deterministic one to delete)."""
    from sqlalchemy import select

    return select(KBDocument.id).order_by(KBDocument.external_id).limit(1)


def test_ddl_fills_the_table_for_an_existing_kb(pg_kb):
    with engine_for(pg_kb).begin() as conn:
        conn.execute(text("DELETE FROM kb_terms"))
        pgstore.ensure_pg_fts(conn)  # as migration 0003 on a populated KB
    kept, fresh = _terms(pg_kb)
    assert kept == fresh


def test_match_plan_small_corpus_matches_any_word():
    assert _match_queries([("refund", 3), ("speaker", 2), ("xyzzy", 0)], 40, 10) == [
        "'speaker' | 'refund'"
    ]
    assert _match_queries([("xyzzy", 0)], 40, 10) == []


def test_match_plan_large_corpus_keeps_common_words_out_of_the_or(monkeypatch):
    monkeypatch.setattr(pgstore, "MATCH_BUDGET", 100)
    n = 1_000_000
    plan = _match_queries([("rare", 30), ("mid", 60), ("com", 5000), ("mon", 9000)], n, 10)
    # the rare words alone; com & mon is expected at 45 rows, so it joins as a conjunction
    assert plan[0] == "'rare' | 'mid' | ('com' & 'mon')"
    assert plan[-1] == "'rare' | 'mid' | 'com' | 'mon'"  # the capped last resort
    plan = _match_queries([("a", 300_000), ("b", 200_000), ("c", 400_000)], n, 10)
    assert plan[0] == "('b' & 'a' & 'c')"  # every word common: the conjunction only
    plan = _match_queries([("a", 1000), ("b", 2000), ("c", 3000)], n, 10)
    assert plan[0] == "('a')"  # a & b is expected at 2 rows: too few for top 10


def test_retriever_with_a_tight_budget_still_finds_the_rare_word(pg_kb, monkeypatch):
    monkeypatch.setattr(pgstore, "MATCH_BUDGET", 2)
    docs = PgFullTextRetriever(database_url=pg_kb, top_k=3).run(query="customs delivery")
    assert docs["documents"][0].meta["external_id"] == "shipping/international"


def test_frequencies_count_each_chunk_by_its_languages_lexemes(pg_url):
    """One table for every language: a French chunk adds its French lexemes, and changing a
    chunk's language (its tsvector is generated again) moves its counts with it."""
    rows = chunk_rows() + [
        {
            **chunk_rows()[0],
            "chunk_id": "fr/remboursement#0",
            "document_id": "fr/remboursement",
            "external_id": "fr/remboursement",
            "title": "Remboursement d'une commande",
            "section": None,
            "position": 0,
            "content": "Après l'annulation de votre commande, le remboursement est effectué "
            "sous cinq jours ouvrés sur le moyen de paiement utilisé lors de l'achat.",
        }
    ]
    load_rows(pg_url, rows, version=1)
    kept, fresh = _terms(pg_url)
    assert kept == fresh and kept["utilis"] == 1 and kept["pai"] == 1  # French stems
    with Session(engine_for(pg_url)) as session, session.begin():
        session.execute(
            update(KBChunk).where(KBChunk.title.startswith("Remboursement")).values(language="en")
        )
    kept, fresh = _terms(pg_url)
    assert kept == fresh and "utilis" not in kept and kept["utilisé"] == 1  # English: whole
