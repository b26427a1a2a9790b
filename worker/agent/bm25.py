"""BM25 keyword retrieval for the knowledge base: a bm25s inverted index behind haystack components.

bm25s precomputes every (term, chunk) weight into a sparse matrix, so a query only touches the
postings of its own terms. On top we add what plain whitespace BM25 lacks for messy support
queries: English stemming, stop words, title weighting, split/joined compounds and typo repair.
"""

from __future__ import annotations

import dataclasses
import math
import re
import threading
from collections.abc import Iterable
from typing import Any

import bm25s
import numpy as np
import Stemmer
from haystack import Document, component, default_from_dict, default_to_dict
from haystack.document_stores.errors import DuplicateDocumentError
from haystack.document_stores.types import DuplicatePolicy
from haystack.utils.filters import document_matches_filter

# Words that carry no topic: removed everywhere (articles, prepositions, be/have, chat filler).
STOP_WORDS: frozenset[str] = frozenset(
    """
    a about above after against also am an and are as at be because been before being below
    between both but by during either else ever for from further had has have having here hers
    herself himself if in into is it its itself just let lets like nor of once onto or ours
    ourselves over per quite rather really so still such than that the their theirs them
    themselves then there these this those though thus to too until upon very via was were
    whether while with within without yet yourself yourselves hi hello hey thanks thank thx
    please plz pls ok okay im ive id youre
    """.split()
)
# Question words, pronouns, modals, particles: kept at a low query weight, as they tell "how long"
# from "how many" and "turn on" from "turn off", but must never outrank a topic word.
SOFT_STOP_WORDS: frozenset[str] = frozenset(
    """
    what when where which who whom whose why how i me my mine myself we us our you your he she
    him her his they can could should would will shall may might must do does did done doing
    dont doesnt didnt isnt arent wasnt cant wont not no get gets got getting any all some each
    every more most other others only own same up down on out off under again now
    """.split()
)
SOFT_WEIGHT = 0.5
EXACT = "="  # prefix of exact-form terms
EXACT_WEIGHT = 1.0  # an exact-form match counts as much again as its stem

_WORD = re.compile(r"[^\W_]+(?:[-_./][^\W_]+)*")
_PARTS = re.compile(r"[^\W\d_]+|\d+")
_APOSTROPHES = str.maketrans("", "", "'’‘`")
_NO_STOP_WORDS: frozenset[str] = frozenset()
_STEM_CACHE_LIMIT = 500_000
CORE_TERMS = 6  # query terms beyond the heaviest six no longer dilute scaled scores
_UNKNOWN_TERM_WEIGHT = 1.0  # an unmatched query word costs the scaled score as much as a rare term


class Analyzer:
    """One tokenisation shared by indexing, querying and sentence scoring so they always agree."""

    def __init__(self, language: str = "english") -> None:
        self.language = language
        self._local = threading.local()
        self._cache: dict[str, str] = {}

    def words(self, text: str, *, keep_stop_words: bool = False) -> list[str]:
        """Lower-cased words; a compound ("wi-fi", "mp3") yields its parts and the joined form."""
        low = text.lower().translate(_APOSTROPHES)
        stop = _NO_STOP_WORDS if keep_stop_words else STOP_WORDS
        out = [w for w in _PARTS.findall(low) if len(w) > 1 and w not in stop]
        for token in _WORD.findall(low):
            if not (token.isalpha() or token.isdigit()):
                parts = _PARTS.findall(token)  # ids like "x7k2p9" stay whole; long a-b-c-d-e don't
                if token.isalnum() or len(parts) <= 4:
                    out.append("".join(parts))
        return out

    def stem(self, word: str) -> str:
        """Snowball stem, cached (stemming dominates indexing time otherwise)."""
        stem = self._cache.get(word)
        if stem is None:
            stemmer = getattr(self._local, "stemmer", None)
            if stemmer is None:  # PyStemmer objects must not be shared between threads
                stemmer = self._local.stemmer = Stemmer.Stemmer(self.language)
            stem = stemmer.stemWord(word)
            if len(self._cache) > _STEM_CACHE_LIMIT:
                self._cache.clear()
            self._cache[word] = stem
        return stem

    def terms(self, text: str) -> list[str]:
        """Index terms of a text (see `terms_of`)."""
        return self.terms_of(self.words(text))

    def terms_of(self, words: list[str]) -> list[str]:
        """Stems plus exact forms of inflected words: "refunds" finds "refund", exact still wins."""
        cache = self._cache
        stems = [cache.get(w) or self.stem(w) for w in words]
        return stems + [EXACT + w for w, s in zip(words, stems, strict=True) if w != s]

    def content_terms(self, text: str) -> list[str]:
        """Stemmed topic words only (no question words or pronouns), for overlap scoring."""
        return [self.stem(w) for w in self.words(text) if w not in SOFT_STOP_WORDS]


ANALYZER = Analyzer()


def is_noise(word: str) -> bool:
    """Numbers, codes and initials: when unknown they only weigh like a common word."""
    return len(word) <= 2 or not word.isalpha()


def capped_mass(masses: list[float]) -> float:
    """Total of the heaviest few terms: a long message is covered once its core words are."""
    return float(sum(sorted(masses, reverse=True)[:CORE_TERMS]))


def _deletes(word: str) -> list[str]:
    """All strings one deletion away (the symmetric-delete trick for typo lookup)."""
    return [word[:i] + word[i + 1 :] for i in range(len(word))]


def _one_edit(a: str, b: str) -> bool:
    """True when a and b differ by one insertion, deletion, substitution or adjacent swap."""
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    if len(a) == len(b):
        swapped = a[i + 1 : i + 2] + a[i : i + 1] + a[i + 2 :]
        return a[i + 1 :] == b[i + 1 :] or swapped == b[i:]
    longer, shorter = (a, b) if len(a) > len(b) else (b, a)
    return longer[i + 1 :] == shorter[i:]


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
        self, query: str, top_k: int = 10, scale_score: bool = False
    ) -> list[Document]:
        """Best `top_k` chunks; scaled score 1 = every query term matched in title and body."""
        built = self._index()
        if built is None or top_k <= 0:
            return []
        weights, unknown = built.query_terms(query)
        if not weights:
            return []
        scores = built.score(weights)
        k = min(top_k, int(np.count_nonzero(scores)))
        if k == 0:
            return []
        best = np.argpartition(-scores, k - 1)[:k]
        best = best[np.argsort(-scores[best], kind="stable")]
        ref = built.reference(weights, unknown)
        values = [
            min(1.0, float(scores[i]) / ref) if scale_score else float(scores[i]) for i in best
        ]
        return [
            dataclasses.replace(built.docs[i], score=v) for i, v in zip(best, values, strict=True)
        ]

    def term_weights(self, text: str) -> dict[str, float]:
        """Idf per content term of `text`; unknown words count as the rarest, unknown codes as 1."""
        built = self._index()
        terms = ANALYZER.content_terms(text)
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


def _title_text(doc: Document) -> str:
    """The title field: article title plus the chunk's section heading when it adds anything."""
    title = str(doc.meta.get("title") or "")
    section = str(doc.meta.get("section") or "")
    return f"{title} {section}" if section and section != title else title


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
        for doc in docs:
            for field, text in ((titles, _title_text(doc)), (bodies, doc.content or "")):
                words = ANALYZER.words(text)
                self.surface.update(words)
                field.append([vocab.setdefault(t, len(vocab)) for t in ANALYZER.terms_of(words)])
        if not vocab:
            vocab[""] = 0
        self.vocab = vocab
        self.title = _Field(titles, vocab, owner.k1, owner.b)
        self.body = _Field(bodies, vocab, owner.k1, owner.b)
        self.max_idf = math.log1p((len(docs) + 0.5) / 0.5)
        self._typo_index: dict[str, list[str]] | None = None

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

    def query_terms(self, query: str) -> tuple[dict[int, float], list[float]]:
        """Term ids with weights, plus the idf mass of each word that matched nothing at all."""
        raw = ANALYZER.words(query, keep_stop_words=True)
        weights: dict[int, float] = {}
        unknown: list[float] = []
        for word in (w for w in raw if w not in STOP_WORDS):
            soft = word in SOFT_STOP_WORDS
            ids = self._resolve(word, repair=not soft)
            if not ids and not soft:
                unknown.append(1.0 if is_noise(word) else self.max_idf)
            base = SOFT_WEIGHT if soft else 1.0
            for tid in ids:
                weights[tid] = max(weights.get(tid, 0.0), base / len(ids))
            exact = self.vocab.get(EXACT + word)
            if exact is not None:
                weights[exact] = max(weights.get(exact, 0.0), base * EXACT_WEIGHT)
        for left, right in zip(raw, raw[1:], strict=False):  # "log in" -> "login"
            tid = self.vocab.get(ANALYZER.stem(left + right))
            if tid is not None and (left + right) in self.surface:
                weights[tid] = max(weights.get(tid, 0.0), 1.0)
        return weights, unknown

    def _resolve(self, word: str, repair: bool) -> list[int]:
        """The word's term id, or ids of a split compound or a one-edit typo correction."""
        tid = self.vocab.get(ANALYZER.stem(word))
        if tid is not None:
            return [tid]
        if not (repair and self.fuzzy) or len(word) < 6 or not word.isalpha():
            return []  # short real words ("smell", "order") sit one edit from other real words
        for i in range(3, len(word) - 1):  # "healthcare" -> "health" + "care"
            head, tail = word[:i], word[i:]
            if head in self.surface and (tail in self.surface or tail in STOP_WORDS):
                ids = [self.vocab.get(ANALYZER.stem(p)) for p in (head, tail)]
                return [t for t in ids if t is not None]
        fixed = self._correct(word)
        return [self.vocab[ANALYZER.stem(fixed)]] if fixed else []

    def _correct(self, word: str) -> str | None:
        """Most frequent indexed word within one edit of `word` (symmetric-delete lookup)."""
        if self._typo_index is None:
            index: dict[str, list[str]] = {}
            for known in self.surface:
                if len(known) >= 5 and known.isalpha() and known not in SOFT_STOP_WORDS:
                    for key in [known, *_deletes(known)]:
                        index.setdefault(key, []).append(known)
            self._typo_index = index
        found = {c for key in [word, *_deletes(word)] for c in self._typo_index.get(key, ())}
        found = {
            c
            for c in found
            if c[0] == word[0] and _one_edit(word, c) and ANALYZER.stem(c) in self.vocab
        }
        if not found:
            return None
        return min(found, key=lambda c: (self.term_idf(ANALYZER.stem(c)), c))


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
    def run(self, query: str, top_k: int | None = None) -> dict[str, list[Document]]:
        """Retrieve the best chunks for `query`; scores are on `Document.score`."""
        top_k = self.top_k if top_k is None else top_k
        if top_k < 0:
            raise ValueError(f"top_k must be at least 0, got {top_k}")
        docs = self.index.bm25_retrieval(query, top_k=top_k, scale_score=self.scale_score)
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


def chunk_document(
    *,
    chunk_id: str,
    document_id: str,
    content: str,
    title: str = "",
    section: str | None = None,
    position: int = 0,
    external_id: str | None = None,
) -> Document:
    """A chunk as a haystack Document with the meta every retriever here expects."""
    meta = {
        "chunk_id": chunk_id,
        "document_id": document_id,
        "external_id": external_id,
        "title": title,
        "section": section,
        "position": position,
    }
    return Document(id=chunk_id, content=content, meta=meta)


def documents_from_rows(rows: Iterable[dict[str, Any]]) -> list[Document]:
    """Documents from plain dict rows with `chunk_document`'s keyword names."""
    return [chunk_document(**row) for row in rows]
