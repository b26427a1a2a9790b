"""Semantic retrieval beside BM25: the shipped model, stored vectors, fusion, both providers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from models import KBChunk
from tests.agent.conftest import chunk_rows, load_rows, run_offline
from tests.fake_openai import FakeOpenAI
from worker.agent.embeddings import EmbeddingError, OpenAIEmbedder, WordLlamaEmbedder
from worker.agent.pgstore import engine_for
from worker.agent.retrieval import KnowledgeBase

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wordllama() -> WordLlamaEmbedder:
    return WordLlamaEmbedder(dim=128)


def _stored(url: str) -> list[tuple[str | None, int]]:
    with engine_for(url).connect() as conn:
        rows = conn.execute(select(KBChunk.embedding_model, KBChunk.embedding)).all()
    return [(model, len(blob or b"")) for model, blob in rows]


def test_wordllama_loads_from_its_wheel_with_no_network():
    """The model and tokenizer come from the installed package: with every proxy pointing at a
    closed port and Hugging Face offline, loading and embedding still work."""
    code = (
        "from worker.agent.embeddings import WordLlamaEmbedder\n"
        "e = WordLlamaEmbedder(128)\n"
        "v = e.embed(['where is my parcel', ''])\n"
        "print(e.model_id, v.shape, round(float((v[0] ** 2).sum()), 3), float(abs(v[1]).sum()))\n"
    )
    stdout = run_offline(code, timeout=60)
    assert stdout.split()[:4] == ["wordllama/l2_supercat/128", "(2,", "128)", "1.0"]
    assert stdout.split()[4] == "0.0"  # an empty text is a zero vector, not NaN


def test_fused_pipeline_annotates_both_signals(kb_documents, settings, wordllama):
    kb = KnowledgeBase.from_documents(kb_documents, settings=settings, embedder=wordllama)
    assert kb.semantic
    component = kb._current.pipeline.get_component("retriever")
    assert type(component).__name__ == "HybridRetriever"
    passages = kb.search("I forgot my password", limit=3)
    assert passages[0].external_id == "accounts/reset-password"
    assert all(p.semantic is not None and -1.0 <= p.semantic <= 1.0 for p in passages)
    assert passages[0].lexical > 0
    lexical_only = KnowledgeBase.from_documents(kb_documents, settings=settings, embedder=None)
    assert not lexical_only.semantic
    assert lexical_only.search("I forgot my password")[0].semantic is None
    assert kb.search("zzqx vvkj") == []  # no word known, no vector: nothing, not noise


def test_vectors_are_stored_and_rebuilt_when_the_model_changes(sqlite_url, settings):
    load_rows(sqlite_url, chunk_rows(), version=1)
    assert {m for m, _ in _stored(sqlite_url)} == {None}
    small = KnowledgeBase(
        database_url=sqlite_url, settings=settings, use_redis=False, embedder=WordLlamaEmbedder(64)
    )
    assert small.search("customs duties")[0].external_id == "shipping/international"
    assert set(_stored(sqlite_url)) == {("wordllama/l2_supercat/64", 64 * 4)}
    bigger = KnowledgeBase(
        database_url=sqlite_url,
        settings=settings,
        use_redis=False,
        embedder=WordLlamaEmbedder(128),
    )
    assert bigger.search("customs duties")[0].external_id == "shipping/international"
    assert set(_stored(sqlite_url)) == {("wordllama/l2_supercat/128", 128 * 4)}
    assert bigger.namespace.startswith("v1:") and "wordllama/l2_supercat/128" in bigger.namespace


def test_openai_compatible_embeddings_endpoint(sqlite_url, settings):
    load_rows(sqlite_url, chunk_rows(), version=1)
    with FakeOpenAI(api_key="sk-embed") as fake:
        embedder = OpenAIEmbedder(
            base_url=fake.base_url, model="text-embedding-test", api_key="sk-embed", timeout=5
        )
        vectors = embedder.embed(["express delivery", "Express   DELIVERY", "refund"])
        assert vectors.shape == (3, 64) and vectors.dtype == np.float32
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
        assert np.allclose(vectors[0], vectors[1]) and not np.allclose(vectors[0], vectors[2])
        sent = [r for r in fake.requests if r.path.endswith("/embeddings")][-1]
        assert sent.json == {
            "model": "text-embedding-test",
            "input": ["express delivery", "Express   DELIVERY", "refund"],
        }
        assert sent.headers["authorization"] == "Bearer sk-embed"

        kb = KnowledgeBase(
            database_url=sqlite_url, settings=settings, use_redis=False, embedder=embedder
        )
        assert kb.search("import duties customs")[0].external_id == "shipping/international"
        assert kb.semantic
        assert {m for m, _ in _stored(sqlite_url)} == {"openai/text-embedding-test"}

        fake.fail(500)
        with pytest.raises(EmbeddingError, match="500"):
            embedder.embed(["anything"])
        load_rows(sqlite_url, chunk_rows(), version=2)  # vectors gone, endpoint down
        degraded = KnowledgeBase(
            database_url=sqlite_url, settings=settings, use_redis=False, embedder=embedder
        )
        assert degraded.search("customs")[0].external_id == "shipping/international"
        assert not degraded.semantic  # lexical only until the next version, never no answer
        wrong_key = OpenAIEmbedder(base_url=fake.base_url, model="m", api_key="nope", timeout=5)
        fake.reset()
        with pytest.raises(EmbeddingError, match="401"):
            wrong_key.embed(["x"])


def test_postgres_full_text_store_fuses_the_semantic_side(pg_url, settings, wordllama):
    load_rows(pg_url, chunk_rows(), version=1)
    kb = KnowledgeBase(
        store="postgres",
        database_url=pg_url,
        settings=settings,
        use_redis=False,
        embedder=wordllama,
    )
    passages = kb.search("I forgot my password", limit=3)
    assert kb.semantic
    assert passages[0].external_id == "accounts/reset-password"
    assert passages[0].semantic is not None and passages[0].lexical > 0
    assert {m for m, _ in _stored(pg_url)} == {"wordllama/l2_supercat/128"}
    # the generated tsvector and the kb_terms triggers coexist with the vector write-back
    assert kb.search("customs")[0].external_id == "shipping/international"


def _error_code_kb() -> list:
    """A specialist KB: every article explains one error code, and only the code tells them
    apart (a general-purpose embedding sees the same question twelve times)."""
    from worker.agent.bm25 import documents_from_rows

    parts = ["fan", "battery", "hinge", "lamp", "pump", "valve", "sensor", "motor", "dial"]
    rows = []
    for n in range(12):
        code = f"E{n * 37 + 101}X"
        rows.append(
            {
                "chunk_id": f"c{n}",
                "document_id": f"d{n}",
                "external_id": f"codes/{code.lower()}",
                "title": f"What does error code {code} mean?",
                "section": None,
                "position": 0,
                "content": f"{code} is shown when the {parts[n % 9]} reports a fault. Restart "
                f"the unit; if {code} comes back, contact us with the serial number.",
            }
        )
    return documents_from_rows(rows)


def test_self_check_withholds_the_vote_where_only_the_words_tell(settings, wordllama):
    """Where only exact words (codes) tell the articles apart, the semantic side gets no vote:
    neither in the ranking nor in the confidence (no cosine on the passages)."""
    from worker.agent.selfcheck import choose_weight

    documents = _error_code_kb()
    result = choose_weight(documents, wordllama, 0.35)
    assert result.lexical_mrr > result.semantic_mrr
    assert result.weight == 0.0
    kb = KnowledgeBase.from_documents(documents, settings=settings, embedder=wordllama)
    assert not kb.semantic
    top = kb.search("what does E249X mean", limit=1)[0]
    assert top.external_id == "codes/e249x" and top.semantic is None
    assert choose_weight(documents[:5], wordllama, 0.35).weight == 0.35  # too few to tell


def test_typo_repair_leaves_a_word_whose_stem_the_kb_has():
    """ "originate" where the KB says "originated" is no typo: bm25s matches it by its stem, and
    a rewrite would claim the KB's exact form. A real typo is still repaired."""
    from worker.agent.analysis import QueryRepair

    repair = QueryRepair({"originated": 3, "virus": 5}, {"the": 1})
    assert repair.repair("where did the virus originate") == "where did the virus originate"
    assert repair.repair("where did the vrus orginated") == "where did the virus originated"
