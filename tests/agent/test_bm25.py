"""The bm25s store: analysis, ranking sanity and haystack component behaviour."""

from __future__ import annotations

import pytest
from haystack import Document, Pipeline
from haystack.document_stores.errors import DuplicateDocumentError
from haystack.document_stores.types import DuplicatePolicy

from worker.agent.bm25 import ANALYZER, BM25sIndex, BM25sRetriever, chunk_document


def doc(chunk_id: str, title: str, content: str, section: str | None = None) -> Document:
    return chunk_document(
        chunk_id=chunk_id,
        document_id=chunk_id,
        external_id=chunk_id,
        title=title,
        section=section,
        content=content,
    )


def ids(documents: list[Document]) -> list[str]:
    return [d.id for d in documents]


def test_analyzer_stems_drops_stop_words_and_splits_compounds():
    assert ANALYZER.content_terms("Refunds") == ANALYZER.content_terms("refund")
    assert "the" not in ANALYZER.words("the refund of the order")
    words = ANALYZER.words("Is Wi-Fi on?")
    assert {"wi", "fi", "wifi", "on"} <= set(words)  # "on" is a soft stop word: kept, low weight
    assert "on" not in ANALYZER.content_terms("Is Wi-Fi on?")


def test_stemming_matches_inflections():
    index = BM25sIndex(
        documents=[
            doc("a", "Payments", "We issue a refund when the parcel is back."),
            doc("b", "Delivery", "Parcels are delivered by courier."),
        ]
    )
    assert ids(index.bm25_retrieval("refunds refunded", top_k=2)) == ["a"]


def test_title_match_outranks_body_mention():
    index = BM25sIndex(
        documents=[
            doc("body", "Shipping costs", "Gift cards can be added at checkout. " * 2),
            doc("title", "Gift cards", "Add the code at checkout to pay with it."),
        ]
    )
    assert ids(index.bm25_retrieval("gift card", top_k=2)) == ["title", "body"]


def test_exact_form_beats_stem_only_match():
    index = BM25sIndex(
        documents=[
            doc("stem", "Orders", "We are shipping your order."),
            doc("exact", "Orders", "We shipped your order."),
        ]
    )
    assert ids(index.bm25_retrieval("shipped", top_k=2)) == ["exact", "stem"]


def test_typo_and_split_compound_are_repaired():
    index = BM25sIndex(
        documents=[
            doc("q", "Quarantine rules", "Stay at home during quarantine."),
            doc("h", "Health care", "Our health care plans."),
            doc("x", "Other", "Unrelated text about parcels."),
        ]
    )
    assert ids(index.bm25_retrieval("quaratine", top_k=1)) == ["q"]
    assert ids(index.bm25_retrieval("healthcare", top_k=1)) == ["h"]
    assert index.bm25_retrieval("zzzzqqq", top_k=3) == []


def test_related_words_find_each_other_without_raising_the_bar():
    index = BM25sIndex(
        documents=[
            doc("cost", "Express delivery", "Express delivery costs 9.95 euros."),
            doc("time", "Express delivery", "Express delivery arrives the next day."),
        ]
    )
    assert ids(index.bm25_retrieval("express delivery price", top_k=2)) == ["cost", "time"]
    assert ids(index.bm25_retrieval("how much is express delivery", top_k=2)) == ["cost", "time"]
    exact = index.bm25_retrieval("express delivery cost", top_k=1, scale_score=True)[0].score
    related = index.bm25_retrieval("express delivery price", top_k=1, scale_score=True)[0].score
    assert related < exact  # a synonym helps ranking but never counts as the asker's own word


def test_contractions_without_apostrophe_are_question_words():
    assert ANALYZER.content_terms("whats the return window") == ANALYZER.content_terms(
        "return window"
    )


def test_scaled_scores_are_between_zero_and_one(kb_documents):
    index = BM25sIndex(documents=kb_documents)
    results = index.bm25_retrieval("how long does a refund take", top_k=5, scale_score=True)
    assert results and all(0.0 < d.score <= 1.0 for d in results)
    assert results[0].score == max(d.score for d in results)
    partial = index.bm25_retrieval("refund xylophone", top_k=1, scale_score=True)
    assert partial[0].score < results[0].score  # an unknown word lowers the scaled score


def test_document_store_protocol():
    index = BM25sIndex()
    assert index.count_documents() == 0 and index.bm25_retrieval("anything") == []
    first = doc("a", "Refunds", "Refund rules.")
    assert index.write_documents([first]) == 1
    with pytest.raises(DuplicateDocumentError):
        index.write_documents([first])
    assert index.write_documents([first], policy=DuplicatePolicy.SKIP) == 0
    index.write_documents([doc("b", "Shipping", "Parcel rules.")], policy=DuplicatePolicy.OVERWRITE)
    assert index.count_documents() == 2
    found = index.filter_documents({"field": "meta.title", "operator": "==", "value": "Shipping"})
    assert ids(found) == ["b"]
    index.delete_documents(["a"])
    assert ids(index.bm25_retrieval("refund parcel", top_k=5)) == ["b"]


def test_retriever_run_and_top_k(kb_documents):
    retriever = BM25sRetriever(index=BM25sIndex(documents=kb_documents), top_k=3)
    out = retriever.run(query="reset password")
    assert set(out) == {"documents"} and 0 < len(out["documents"]) <= 3
    assert out["documents"][0].meta["external_id"] == "accounts/reset-password"
    assert all(isinstance(d.score, float) for d in out["documents"])
    assert len(retriever.run(query="reset password", top_k=1)["documents"]) == 1
    assert retriever.run(query="reset password", top_k=0)["documents"] == []
    with pytest.raises(ValueError):
        retriever.run(query="x", top_k=-1)
    with pytest.raises(ValueError):
        BM25sRetriever(index=BM25sIndex(), top_k=0)


def test_retriever_round_trip(kb_documents):
    retriever = BM25sRetriever(
        index=BM25sIndex(documents=kb_documents, k1=1.1, title_weight=2.0),
        top_k=4,
        scale_score=True,
    )
    data = retriever.to_dict()
    assert data["type"] == "worker.agent.bm25.BM25sRetriever"
    restored = BM25sRetriever.from_dict(data)
    assert restored.top_k == 4 and restored.scale_score is True
    assert restored.index.k1 == 1.1 and restored.index.title_weight == 2.0
    assert restored.index.count_documents() == len(kb_documents)
    query = "when does my card refund arrive"
    assert restored.run(query=query) == retriever.run(query=query)


def test_retriever_in_a_serialised_pipeline(kb_documents):
    pipeline = Pipeline()
    pipeline.add_component("retriever", BM25sRetriever(index=BM25sIndex(documents=kb_documents)))
    loaded = Pipeline.loads(pipeline.dumps(), allowed_modules=["worker.agent"])
    result = loaded.run({"retriever": {"query": "express delivery", "top_k": 1}})
    assert result["retriever"]["documents"][0].meta["external_id"] == "shipping/delivery-times"
