"""Whether the semantic ranking may vote in the fusion, measured on the knowledge base itself.

A general-purpose embedding helps a help centre whose articles are about different things
(shipping, passwords, refunds: their vectors lie apart, so the meaning of a paraphrased or
misspelt question finds the right one) and hurts one whose articles are all about one subject
(a medical FAQ: every vector is near every other, so the semantic vote is mostly noise that
displaces the lexical winner). Which of the two a knowledge base is can be read from the KB
alone, at index build, with no labelled questions.

An article's title is the question it answers (help centres and FAQs title articles that way),
and its body is the answer, mostly in other words. So each sampled article's title is asked
against the bodies alone (titles left out, or every title would find itself), once by the
lexical ranking (our BM25 over the bodies) and once by the semantic one (title vector against
body vectors). Where the meaning finds the source article at least as well as the words do
(mean reciprocal rank), the semantic side gets its configured weight in the fusion; where it
does worse, it gets none and the knowledge base is searched and judged on its words alone (the
cosine is then no evidence for abstention, and the model's word vectors map no synonyms).
Measured (MRR@10 semantic vs lexical): the sample help centre 0.81 vs 0.74; the COVID FAQ
0.44 vs 0.50. The check is a point estimate from a few dozen titles (its standard error is
~0.05-0.07 on these KBs), so a KB where both sides are close may land on either side; both
choices are safe (the lexical side alone is the engine before the semantic side existed).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np
from haystack import Document

from worker.agent.analysis import ANALYZER
from worker.agent.bm25 import BM25sIndex
from worker.agent.chunks import chunk_document
from worker.agent.embeddings import Embedder
from worker.agent.semantic import cosines

log = logging.getLogger(__name__)

MAX_ARTICLES = 300  # bounds the check to well under a second, whatever the KB's size
MIN_ARTICLES = 8  # fewer titles cannot tell the cases apart: keep the configured weight
_BODY_WORDS = 300  # an article's first words are its answer; the rest is detail
_RANKS = 10  # MRR@10


@dataclass(frozen=True)
class CheckResult:
    """The chosen weight and each side's MRR@10 on the headings (0 when not measured)."""

    weight: float
    lexical_mrr: float
    semantic_mrr: float
    questions: int


def _stable_key(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def title_body_pairs(
    documents: list[Document],
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(article id, body without its headings) for up to `MAX_ARTICLES` articles, the same
    sample on every build; and (title, article id) for those whose title asks something (two
    content words or more). Section headings are not asked: they are often quoted error
    messages or labels, which the words find trivially (tried: bench/README.md)."""
    chunks: dict[str, list[Document]] = {}
    for doc in documents:
        chunks.setdefault(str(doc.meta.get("document_id") or doc.id), []).append(doc)
    articles, questions = [], []
    for art in sorted(chunks, key=_stable_key)[:MAX_ARTICLES]:
        parts = sorted(chunks[art], key=lambda d: int(d.meta.get("position") or 0))
        body = " ".join(" ".join(d.content or "" for d in parts).split()[:_BODY_WORDS])
        articles.append((art, body))
        title = str(parts[0].meta.get("title") or "").strip()
        if len(ANALYZER.content_terms(title)) >= 2:
            questions.append((title, art))
    return articles, questions


def choose_weight(documents: list[Document], embedder: Embedder, cap: float) -> CheckResult:
    """`cap` when the meaning finds this KB's answers at least as well as the words do, else 0.

    Each side ranks alone (fused rankings would not tell: two rankers that err differently
    fuse well on the KB's own text even where one of them fails on customers' questions)."""
    articles, questions = title_body_pairs(documents) if cap > 0 else ([], [])
    if len({art for _, art in questions}) < MIN_ARTICLES:
        return CheckResult(cap, 0.0, 0.0, len(questions))
    bodies = [
        chunk_document(chunk_id=art, document_id=art, content=body, title="", position=0)
        for art, body in articles
    ]
    row = {art: k for k, (art, _) in enumerate(articles)}
    lexical = BM25sIndex(documents=bodies)
    matrix = embedder.embed([body for _, body in articles])
    vectors = embedder.embed([question for question, _ in questions])
    lex_rr, sem_rr = [], []
    for (question, art), vector in zip(questions, vectors, strict=True):
        hits = [d.id for d in lexical.bm25_retrieval(question, top_k=_RANKS)]
        lex_rr.append(1.0 / (hits.index(art) + 1) if art in hits else 0.0)
        sims = cosines(matrix, vector)
        rank = int(np.count_nonzero(sims > sims[row[art]]))  # bodies nearer than the source
        sem_rr.append(1.0 / (rank + 1) if np.any(vector) and rank < _RANKS else 0.0)
    lex_mrr, sem_mrr = float(np.mean(lex_rr)), float(np.mean(sem_rr))
    chosen = cap if sem_mrr >= lex_mrr else 0.0
    log.info(
        "semantic weight self-check: questions=%s lexical_mrr=%.3f semantic_mrr=%.3f weight=%s",
        len(questions),
        lex_mrr,
        sem_mrr,
        chosen,
    )
    return CheckResult(chosen, lex_mrr, sem_mrr, len(questions))
