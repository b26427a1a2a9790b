"""Stemming per language: a knowledge base with French articles beside English ones indexes each
chunk with its own language's Snowball stemmer, and a question in French is stemmed as French."""

from __future__ import annotations

from typing import Any

import pytest

from tests.agent.conftest import chunk_rows, load_rows
from worker.agent.analysis import ANALYZER, analyzer_for
from worker.agent.bm25 import documents_from_rows
from worker.agent.embeddings import WordLlamaEmbedder
from worker.agent.offline import OfflineEngine
from worker.agent.retrieval import KnowledgeBase

# Our own French help articles: their words differ in form from the questions below, which only
# the French stemmer maps onto one stem (annulé/annulation -> annul, remboursé/remboursement ->
# rembours, livraisons -> livraison); the English stemmer leaves "annulé" and "remboursé" whole.
FRENCH = [
    (
        "fr/remboursement-commande",
        "Remboursement d'une commande",
        "Après l'annulation de votre commande, le remboursement est effectué sous cinq jours "
        "ouvrés sur le moyen de paiement utilisé lors de l'achat. Vous recevez un e-mail de "
        "confirmation dès que le remboursement est envoyé à votre banque.",
    ),
    (
        "fr/delai-livraison",
        "Délai de livraison",
        "La livraison standard prend deux à quatre jours ouvrés. La livraison express arrive "
        "le jour ouvré suivant si vous commandez avant quatorze heures. Nous ne livrons pas "
        "le dimanche.",
    ),
]
ENGLISH_QUESTIONS = [
    "How long does a refund take?",
    "I forgot my password",
    "do you ship to Norway, what about customs",
    "how do I return an item",
    "when does express delivery arrive",
]


def _rows() -> list[dict[str, Any]]:
    rows = chunk_rows()
    for ext_id, title, content in FRENCH:
        rows.append(
            {
                "chunk_id": f"{ext_id}#0",
                "document_id": ext_id,
                "external_id": ext_id,
                "title": title,
                "section": None,
                "position": 0,
                "content": content,
            }
        )
    return rows


def test_each_language_has_its_own_snowball_stemmer():
    french = analyzer_for("fr")
    assert french.stem("livraisons") == "livraison"
    assert french.stem("remboursé") == french.stem("remboursement") == "rembours"
    assert ANALYZER.stem("remboursé") != ANALYZER.stem("remboursement")
    assert analyzer_for("de").stem("Lieferungen".lower()) == "liefer"
    # English, no language, and a language without a stemmer here all use the one analyzer
    assert analyzer_for(None) is analyzer_for("en") is analyzer_for("xx") is ANALYZER
    assert analyzer_for("fr") is french  # one per language, kept


def test_french_question_finds_the_french_article_by_its_stem(settings):
    kb = KnowledgeBase.from_documents(
        documents_from_rows(_rows()), settings=settings, embedder=None
    )
    assert kb.languages == {"en": 6, "fr": 2}
    index = kb.index
    assert index is not None
    question = "remboursé annulé"  # neither form is in any article
    by_french = index.bm25_retrieval(question, top_k=3, language="fr")
    assert [d.id for d in by_french][:1] == ["fr/remboursement-commande#0"]
    # stemmed as English the same words match nothing: it is the French stem that found it
    assert index.bm25_retrieval(question, top_k=3) == []
    passages = kb.search("Quand serai-je remboursé si ma commande est annulée ?", language="fr")
    assert passages[0].external_id == "fr/remboursement-commande"
    assert {p.external_id for p in passages} <= {ext for ext, _, _ in FRENCH}
    plural = kb.search("délais des livraisons express", language="fr")
    assert plural[0].external_id == "fr/delai-livraison"
    # the typo repair knows the French forms too: it leaves them alone
    assert kb.repair("remboursé annulée") == "remboursé annulée"


def test_the_engine_answers_a_french_question_from_the_french_article(settings):
    kb = KnowledgeBase.from_documents(
        documents_from_rows(_rows()), settings=settings, embedder=None
    )
    engine = OfflineEngine(kb)
    reply = engine.answer(
        "Quand est-ce que je serai remboursé après avoir annulé ma commande ?",
        history=[],
        attachments=[],
        emit=lambda *_: None,
    )
    assert reply.metadata.get("language") == "fr"
    assert not reply.requires_escalation
    assert [s.external_id for s in reply.sources][:1] == ["fr/remboursement-commande"]
    assert "cinq jours" in reply.text


def test_english_behaviour_is_unchanged_beside_french_articles(settings):
    """English chunks keep their English terms, so English questions rank the English articles
    as a KB without the French ones does (a French article sharing a word, "express", may join
    the list, as it did before; it is left out of the comparison)."""
    english_only = KnowledgeBase.from_documents(
        documents_from_rows(chunk_rows()), settings=settings, embedder=None
    )
    mixed = KnowledgeBase.from_documents(
        documents_from_rows(_rows()), settings=settings, embedder=None
    )
    for question in ENGLISH_QUESTIONS:
        before = [p.external_id for p in english_only.search(question, limit=3)]
        found = [p.external_id for p in mixed.search(question, limit=5)]
        after = [ext for ext in found if not ext.startswith("fr/")][:3]
        assert after == before, question
    english_chunk = "billing/refund-timing#0"
    assert _terms(mixed, english_chunk) == _terms(english_only, english_chunk)


def _terms(kb: KnowledgeBase, chunk_id: str) -> set[str]:
    """The index terms of one chunk's body."""
    built = kb.index._index()  # type: ignore[union-attr]
    row = next(i for i, d in enumerate(built.docs) if d.id == chunk_id)
    body = built.body
    ids = {int(t) for t in range(len(built.vocab)) if row in _postings(body, t)}
    names = {v: k for k, v in built.vocab.items()}
    return {names[t] for t in ids}


def _postings(field: Any, tid: int) -> set[int]:
    return set(field.indices[field.indptr[tid] : field.indptr[tid + 1]].tolist())


@pytest.mark.parametrize("store", ["postgres"])
def test_postgres_store_accepts_the_language_and_stays_english(pg_url, settings, store):
    """PostgreSQL parses every chunk with its one 'english' configuration: a question's language
    reaches its retriever (the stores stay swappable) and filters the articles, but its words
    are stemmed as English there, as the French chunks were (see PgFullTextRetriever.run)."""
    load_rows(pg_url, _rows(), version=1)
    kb = KnowledgeBase(
        store=store,
        database_url=pg_url,
        settings=settings,
        use_redis=False,
        embedder=WordLlamaEmbedder(128),
    )
    french = kb.search("remboursement de ma commande annulée", language="fr")
    assert french and french[0].external_id == "fr/remboursement-commande"
    assert {p.external_id for p in french} <= {ext for ext, _, _ in FRENCH}
    english = kb.search("How long does a refund take?", limit=1)
    assert english[0].external_id == "billing/refund-timing"
