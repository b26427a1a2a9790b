"""BM25 keyword retrieval for the knowledge base: a bm25s inverted index behind haystack components.

bm25s precomputes every (term, chunk) weight into a sparse matrix, so a query only touches the
postings of its own terms. On top we add what plain whitespace BM25 lacks for messy support
queries: stemming and stop words per language, title weighting, split/joined compounds and
typo repair.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections import Counter
from typing import Any

import bm25s
import numpy as np
from haystack import Document, component, default_from_dict, default_to_dict
from haystack.document_stores.errors import DuplicateDocumentError
from haystack.document_stores.types import DuplicatePolicy
from haystack.utils.filters import document_matches_filter

from worker.agent.analysis import (
    ANALYZER,
    EXACT,
    EXACT_WEIGHT,
    RELATED_WEIGHT,
    SOFT_WEIGHT,
    Analyzer,
    Speller,
    analyzer_for,
    capped_mass,
    expansion_stems,
    is_noise,
)
from worker.agent.chunks import chunk_document, documents_from_rows, title_text

# ANALYZER and the chunk helpers are re-exported: callers and tests import them from here.
__all__ = [
    "ANALYZER",
    "BM25sIndex",
    "BM25sRetriever",
    "Hits",
    "chunk_document",
    "documents_from_rows",
    "top_indices",
]

_UNKNOWN_TERM_WEIGHT = 1.0  # an unmatched query word costs the scaled score as much as a rare term


@dataclasses.dataclass(frozen=True)
class Hits:
    """Ranked chunks as positions in `docs` (the index snapshot's chunk list), best first."""

    docs: list[Document]
    rows: np.ndarray
    scores: list[float]


def top_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the `k` highest non-zero scores, highest first.

    Equal scores keep the order a partition of the whole negated array gives them, as they
    always have: ties are common in BM25 (chunks of one length sharing one term), and another
    tie order would move answers that were tuned and measured with this one."""
    k = min(k, int(np.count_nonzero(scores)))
    if k <= 0:
        return np.zeros(0, dtype=np.intp)
    best = np.argpartition(-scores, k - 1)[:k]
    return best[np.argsort(-scores[best], kind="stable")]


class BM25sIndex:
    """Document-store-like keyword index over chunk Documents; rebuilt lazily after writes."""

    def __init__(
        self,
        *,
        k1: float = 1.2,
        b: float = 0.75,
        title_weight: float = 1.5,
        fuzzy: bool = True,
        documents: list[Document] | None = None,
    ) -> None:
        self.k1, self.b, self.title_weight, self.fuzzy = k1, b, title_weight, fuzzy
        self._docs: dict[str, Document] = {}
        self._lock = threading.RLock()
        self._built: _Built | None = None
        if documents:
            self.write_documents(documents)

    # --- document-store protocol -------------------------------------------------------------
    def count_documents(self) -> int:
        """Number of indexed chunks."""
        return len(self._docs)

    def filter_documents(self, filters: dict[str, Any] | None = None) -> list[Document]:
        """Documents matching haystack filters (all when `filters` is None)."""
        if not filters:
            return list(self._docs.values())
        return [d for d in self._docs.values() if document_matches_filter(filters, d)]

    def write_documents(
        self, documents: list[Document], policy: DuplicatePolicy = DuplicatePolicy.NONE
    ) -> int:
        """Add documents; the index is rebuilt on the next search (bm25s has no incremental add)."""
        written = 0
        with self._lock:
            for doc in documents:
                if doc.id in self._docs:
                    if policy in (DuplicatePolicy.NONE, DuplicatePolicy.FAIL):
                        raise DuplicateDocumentError(f"Document {doc.id} already exists")
                    if policy == DuplicatePolicy.SKIP:
                        continue
                self._docs[doc.id] = doc
                written += 1
            self._built = None
        return written

    def delete_documents(self, document_ids: list[str]) -> None:
        """Remove documents by id (unknown ids are ignored)."""
        with self._lock:
            for doc_id in document_ids:
                self._docs.pop(doc_id, None)
            self._built = None

    def to_dict(self) -> dict[str, Any]:
        """Parameters plus documents; the matrix is cheap to rebuild, so it is not serialised."""
        docs = [d.to_dict(flatten=False) for d in self._docs.values()]
        params = {"k1": self.k1, "b": self.b, "title_weight": self.title_weight}
        return default_to_dict(self, **params, fuzzy=self.fuzzy, documents=docs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BM25sIndex:
        """Rebuild from `to_dict` output."""
        params = dict(data.get("init_parameters", {}))
        params["documents"] = [Document.from_dict(d) for d in params.get("documents") or []]
        return default_from_dict(cls, {**data, "init_parameters": params})

    # --- retrieval ---------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Build the matrices now rather than on the first query."""
        self._index()

    def bm25_retrieval(
        self,
        query: str,
        top_k: int = 10,
        scale_score: bool = False,
        language: str | None = None,
        fuzzy: bool = True,
    ) -> list[Document]:
        """Best `top_k` chunks; scaled score 1 = every query term matched in title and body.

        `language`: the query's (ISO 639-1), so its words are stemmed as chunks in that
        language were (each chunk is indexed with the stemmer of its `meta["language"]`).
        `fuzzy`: False for a question in a language the KB has no articles in, whose words
        are no misspellings of the KB's."""
        hits = self.top_rows(query, top_k, scale_score, language, fuzzy)
        if hits is None:
            return []
        docs = hits.docs
        return [
            dataclasses.replace(docs[i], score=v)
            for i, v in zip(hits.rows.tolist(), hits.scores, strict=True)
        ]

    def top_rows(
        self,
        query: str,
        top_k: int = 10,
        scale_score: bool = False,
        language: str | None = None,
        fuzzy: bool = True,
    ) -> Hits | None:
        """`bm25_retrieval` as row numbers into the snapshot's chunk list, no Documents built:
        a fusion that keeps only some candidates (or none of these) builds only those."""
        built = self._index()
        if built is None or top_k <= 0:
            return None
        weights, unknown, related = built.query_terms(query, analyzer_for(language), fuzzy)
        if not weights:
            return None
        scores = built.score({**related, **weights})
        best = top_indices(scores, top_k)
        if not len(best):
            return None
        values = scores[best].tolist()
        if scale_score:
            ref = built.reference(weights, unknown)
            values = [min(1.0, v / ref) for v in values]
        return Hits(built.docs, best, values)

    def body_word_counts(self) -> Counter[str] | None:
        """How often each word occurs in the chunk bodies (words as `ANALYZER.words` splits
        them); counted while indexing, so a caller needing the KB's vocabulary need not
        tokenise every chunk again."""
        built = self._index()
        return built.body_words if built is not None else None

    def snapshot_documents(self) -> list[Document] | None:
        """The chunk list that `top_rows` numbers index into (built now if it must be)."""
        built = self._index()
        return built.docs if built is not None else None

    def term_weights(self, text: str, language: str | None = None) -> dict[str, float]:
        """Idf per content term of `text` (stemmed for `language`); unknown words count as the
        rarest, unknown codes as 1."""
        built = self._index()
        terms = analyzer_for(language).content_terms(text)
        if built is None:
            return dict.fromkeys(terms, 1.0)
        return {
            t: 1.0 if t not in built.vocab and is_noise(t) else built.term_idf(t) for t in terms
        }

    def _index(self) -> _Built | None:
        """The current snapshot, built on first use after a write (double-checked locking)."""
        built = self._built
        if built is not None or not self._docs:
            return built
        with self._lock:
            if self._built is None and self._docs:
                self._built = _Built(list(self._docs.values()), self)
            return self._built


class _Field:
    """One bm25s matrix (title or body) in CSC form with its idf per term."""

    def __init__(self, corpus: list[list[int]], vocab: dict[str, int], k1: float, b: float):
        n = len(corpus)
        self.empty = not any(corpus)
        if self.empty:
            corpus = [[0] for _ in corpus]
        model = bm25s.BM25(k1=k1, b=b, method="lucene")
        model.index((corpus, dict(vocab)), create_empty_token=False, show_progress=False)
        self.data = model.scores["data"]
        self.indices = model.scores["indices"]
        self.indptr = model.scores["indptr"]
        self.df = np.diff(self.indptr)
        self.idf = np.log1p((n - self.df + 0.5) / (self.df + 0.5))
        self.idf[self.df == 0] = 0.0  # a term this field never holds cannot score in it

    def add(self, scores: np.ndarray, tid: int, weight: float) -> None:
        """Add one query term's contribution to every chunk holding it."""
        if not self.empty:
            start, end = self.indptr[tid], self.indptr[tid + 1]
            scores[self.indices[start:end]] += weight * self.data[start:end]


class _Built:
    """An immutable snapshot of the matrices, swapped atomically when documents change."""

    def __init__(self, docs: list[Document], owner: BM25sIndex) -> None:
        self.docs, self.fuzzy, self.k1 = docs, owner.fuzzy, owner.k1
        self.title_weight = owner.title_weight
        vocab: dict[str, int] = {}
        titles: list[list[int]] = []
        bodies: list[list[int]] = []
        self.surface: set[str] = set()
        self.body_words: Counter[str] = Counter()
        for doc in docs:
            analyzer = analyzer_for(doc.meta.get("language"))  # tagged by the KB, else English
            for field, text in ((titles, title_text(doc)), (bodies, doc.content or "")):
                words = analyzer.words(text)
                self.surface.update(words)
                field.append([vocab.setdefault(t, len(vocab)) for t in analyzer.terms_of(words)])
            self.body_words.update(words)  # the body's: what the KB's vocabulary is counted from
        if not vocab:
            vocab[""] = 0
        self.vocab = vocab
        self.title = _Field(titles, vocab, owner.k1, owner.b)
        self.body = _Field(bodies, vocab, owner.k1, owner.b)
        self.max_idf = math.log1p((len(docs) + 0.5) / 0.5)
        self.speller = Speller(self.surface, lambda stem: stem in vocab, self.term_idf)

    def score(self, weights: dict[int, float]) -> np.ndarray:
        """Raw scores of every chunk: weighted title BM25 plus body BM25."""
        scores = np.zeros(len(self.docs), dtype=np.float32)
        for tid, weight in weights.items():
            self.title.add(scores, tid, weight * self.title_weight)
            self.body.add(scores, tid, weight)
        return scores

    def reference(self, weights: dict[int, float], unknown: list[float]) -> float:
        """Score of a chunk holding the query's main terms once in title and body (scaled 1)."""
        masses = [
            w * (self.title_weight * self.title.idf[t] + self.body.idf[t])
            for t, w in weights.items()
        ]
        masses += [idf * (1 + self.title_weight) * _UNKNOWN_TERM_WEIGHT for idf in unknown]
        return max(capped_mass(masses) / (self.k1 + 1), 1e-9)

    def term_idf(self, term: str) -> float:
        """Body idf of a stemmed term; unseen terms count as the rarest possible."""
        tid = self.vocab.get(term)
        if tid is None or self.body.df[tid] == 0:
            return self.max_idf
        return float(self.body.idf[tid])

    def query_terms(
        self, query: str, analyzer: Analyzer = ANALYZER, fuzzy: bool = True
    ) -> tuple[dict[int, float], list[float], dict[int, float]]:
        """Term ids with weights, the idf mass of each word that matched nothing at all, and
        low-weight related terms ("price" for "cost"), which score but never raise the bar.
        `analyzer` stems the query's words (the query language's stemmer)."""
        raw = analyzer.words(query, keep_stop_words=True)
        weights: dict[int, float] = {}
        unknown: list[float] = []
        related: dict[int, float] = {}
        for word in (w for w in raw if w not in analyzer.stop_words):
            soft = word in analyzer.soft_stop_words
            ids = self._resolve(word, fuzzy and not soft, analyzer)
            if not ids and not soft:
                unknown.append(1.0 if is_noise(word) else self.max_idf)
            base = SOFT_WEIGHT if soft else 1.0
            for tid in ids:
                weights[tid] = max(weights.get(tid, 0.0), base / len(ids))
            exact = self.vocab.get(EXACT + word)
            if exact is not None:
                weights[exact] = max(weights.get(exact, 0.0), base * EXACT_WEIGHT)
        for stem in expansion_stems(raw) if analyzer is ANALYZER else ():  # English groups
            if (tid := self.vocab.get(stem)) is not None:
                related[tid] = RELATED_WEIGHT
        for left, right in zip(raw, raw[1:], strict=False):  # "log in" -> "login"
            tid = self.vocab.get(analyzer.stem(left + right))
            if tid is not None and (left + right) in self.surface:
                weights[tid] = max(weights.get(tid, 0.0), 1.0)
        return weights, unknown, {t: w for t, w in related.items() if t not in weights}

    def _resolve(self, word: str, repair: bool, analyzer: Analyzer = ANALYZER) -> list[int]:
        """The word's term id, or ids of a split compound or a one-edit typo correction."""
        tid = self.vocab.get(analyzer.stem(word))
        if tid is not None:
            return [tid]
        if not (repair and self.fuzzy) or not Speller.repairable(word):
            return []
        parts = self.speller.split(word, analyzer)  # "healthcare" -> "health" + "care"
        if parts:
            ids = [self.vocab.get(analyzer.stem(p)) for p in parts]
            return [t for t in ids if t is not None]
        fixed = self.speller.correct(word, analyzer)  # a surface word whose stem is indexed
        if not fixed:
            return []
        tid = self.vocab.get(analyzer.stem(fixed))
        return [tid if tid is not None else self.vocab[ANALYZER.stem(fixed)]]


@component
class BM25sRetriever:
    """Haystack retriever over a `BM25sIndex`, so pipelines can swap it with other retrievers."""

    def __init__(self, *, index: BM25sIndex, top_k: int = 10, scale_score: bool = False) -> None:
        if top_k <= 0:
            raise ValueError(f"top_k must be greater than 0, got {top_k}")
        self.index = index
        self.top_k = top_k
        self.scale_score = scale_score

    @component.output_types(documents=list[Document])
    def run(
        self,
        query: str,
        top_k: int | None = None,
        language: str | None = None,
        fuzzy: bool = True,
    ) -> dict[str, list[Document]]:
        """Retrieve the best chunks for `query`; scores are on `Document.score`. `language`:
        the query's, to stem it as chunks in that language were indexed; `fuzzy`: whether
        its unknown words may be read as typos of the KB's (see `BM25sIndex.bm25_retrieval`)."""
        top_k = self.top_k if top_k is None else top_k
        if top_k < 0:
            raise ValueError(f"top_k must be at least 0, got {top_k}")
        docs = self.index.bm25_retrieval(
            query, top_k=top_k, scale_score=self.scale_score, language=language, fuzzy=fuzzy
        )
        return {"documents": docs}

    def to_dict(self) -> dict[str, Any]:
        """Serialise with the index inline (documents included)."""
        return default_to_dict(
            self, index=self.index.to_dict(), top_k=self.top_k, scale_score=self.scale_score
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BM25sRetriever:
        """Inverse of `to_dict`; the index is rebuilt here, not via haystack's module allowlist."""
        params = dict(data.get("init_parameters", {}))
        params["index"] = BM25sIndex.from_dict(params["index"])
        return default_from_dict(cls, {**data, "init_parameters": params})
