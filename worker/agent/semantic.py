"""The semantic side of retrieval and its fusion with the lexical side, as haystack components.

`HybridRetriever` is the one component the search pipeline runs: it calls the lexical retriever
and the two components below itself, because haystack deep-copies every list of Documents passed
between components (measured: ~60 % of a 4 ms search at 1k chunks went to those copies).

`VectorIndex` holds every chunk's normalised vector in one float32 matrix, so a query costs one
matrix-vector product (cosine = dot product) and a partial sort. `SemanticRetriever` embeds the
query and returns the nearest chunks; `WeightedRankFusion` merges its list with the lexical
retriever's by weighted reciprocal rank fusion (rank-based, so BM25 scores and cosines need no
common scale) and annotates every candidate with both raw signals: `meta["lexical"]` (the
scaled BM25 score, 0 when lexical retrieval did not return it) and `meta["semantic"]` (its
cosine to the query, computed for lexical-only candidates too). Abstention reads those.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from haystack import Document, component

from worker.agent.embeddings import Embedder

RRF_K = 60  # the usual reciprocal-rank constant: rank 1 vs rank 10 differ by ~15 %, not 10x


def cosines(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """`matrix @ vector` on one thread. BLAS (OpenBLAS) splits a large matrix-vector product
    over threads; with Celery's processes already filling the cores that made a 100k x 128
    product 12 ms instead of 3 (measured under load); einsum's own loop stays on one core."""
    return np.einsum("ij,j->i", matrix, vector)


class VectorIndex:
    """Chunk vectors as one row-normalised float32 matrix, rows in `documents` order."""

    def __init__(
        self,
        documents: list[Document],
        matrix: np.ndarray,
        embedder: Embedder,
        min_similarity: float = 0.25,
    ):
        if len(documents) != len(matrix):
            raise ValueError(f"{len(documents)} documents but {len(matrix)} vectors")
        self.documents = documents
        self.matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        self.embedder = embedder
        self.min_similarity = min_similarity
        self.row = {doc.id: i for i, doc in enumerate(documents)}

    def embed_query(self, query: str) -> np.ndarray:
        """The query's unit vector (zero when the model knows none of its tokens)."""
        return self.embedder.embed([query])[0]

    def nearest(self, vector: np.ndarray, top_k: int) -> list[Document]:
        """The `top_k` chunks of highest cosine, best first, score = cosine; chunks under
        `min_similarity` are left out (every chunk is *some* distance away: that is no match)."""
        if top_k <= 0 or not len(self.documents) or not np.any(vector):
            return []
        sims = cosines(self.matrix, vector)
        k = min(top_k, len(sims))
        best = np.argpartition(-sims, k - 1)[:k]
        best = best[np.argsort(-sims[best], kind="stable")]
        return [
            dataclasses.replace(self.documents[i], score=float(sims[i]))
            for i in best
            if sims[i] >= self.min_similarity
        ]

    def similarity(self, vector: np.ndarray, doc_ids: list[str]) -> dict[str, float]:
        """Cosine of the given chunks to `vector` (unknown ids are left out)."""
        rows = [(d, self.row[d]) for d in doc_ids if d in self.row]
        if not rows or not np.any(vector):
            return dict.fromkeys((d for d, _ in rows), 0.0)
        sims = cosines(self.matrix[[r for _, r in rows]], vector)
        return {d: float(s) for (d, _), s in zip(rows, sims, strict=True)}


@component
class SemanticRetriever:
    """Nearest chunks by embedding; also outputs the query vector for the fusion step."""

    def __init__(self, *, index: VectorIndex, top_k: int = 10) -> None:
        self.index = index
        self.top_k = top_k

    @component.output_types(documents=list[Document], query_vector=np.ndarray)
    def run(self, query: str, top_k: int | None = None) -> dict[str, Any]:
        """Embed `query` and return the `top_k` most similar chunks (score = cosine)."""
        vector = self.index.embed_query(query)
        docs = self.index.nearest(vector, self.top_k if top_k is None else top_k)
        return {"documents": docs, "query_vector": vector}


@component
class WeightedRankFusion:
    """Weighted reciprocal rank fusion of the lexical and semantic lists.

    `semantic_weight` w gives the semantic list weight w and the lexical one 1 - w, with w scaled
    down by how well the query's words matched lexically (see `run`). The output
    order is the fused one; `score` stays on the lexical scale where lexical retrieval found the
    chunk (so one confidence threshold keeps its meaning) and is the cosine otherwise.
    """

    def __init__(self, *, index: VectorIndex, semantic_weight: float = 0.5) -> None:
        self.index = index
        self.semantic_weight = semantic_weight

    @component.output_types(documents=list[Document])
    def run(
        self,
        lexical: list[Document],
        semantic: list[Document],
        query_vector: np.ndarray,
        top_k: int | None = None,
    ) -> dict[str, list[Document]]:
        """Merge both lists, best fused first, each with `meta["lexical"]` and `["semantic"]`."""
        # The customer's own words, when the KB holds them (exact product names, codes,
        # specialist terms), beat a general-purpose embedding; when they don't (typos, synonyms,
        # paraphrase) the meaning must carry the search. So the semantic weight shrinks as the
        # best lexical match approaches "every query word in title and body" (scaled score 1).
        lex_top = max((float(d.score or 0.0) for d in lexical), default=0.0)
        w_sem = self.semantic_weight * (1.0 - min(1.0, max(0.0, lex_top)))
        fused: dict[str, float] = {}
        docs: dict[str, Document] = {}
        lex_score: dict[str, float] = {}
        for rank, doc in enumerate(lexical):
            fused[doc.id] = fused.get(doc.id, 0.0) + (1.0 - w_sem) / (RRF_K + rank + 1)
            docs.setdefault(doc.id, doc)
            lex_score[doc.id] = float(doc.score or 0.0)
        for rank, doc in enumerate(semantic):
            fused[doc.id] = fused.get(doc.id, 0.0) + w_sem / (RRF_K + rank + 1)
            docs.setdefault(doc.id, doc)
        sims = self.index.similarity(query_vector, list(docs))
        order = sorted(fused, key=lambda d: (-fused[d], d))
        if top_k is not None:
            order = order[:top_k]
        out = []
        for doc_id in order:
            doc = docs[doc_id]
            lex, sem = lex_score.get(doc_id, 0.0), sims.get(doc_id, 0.0)
            meta = {**doc.meta, "lexical": lex, "semantic": sem, "fused": fused[doc_id]}
            score = lex if doc_id in lex_score else max(0.0, sem)
            out.append(Document(id=doc.id, content=doc.content, meta=meta, score=score))
        return {"documents": out}


@component
class HybridRetriever:
    """Lexical and semantic retrieval fused, as one pipeline component (see the module doc).

    Same result as `SemanticRetriever` + `WeightedRankFusion`, computed on row numbers: only
    the `top_k` fused chunks become Documents (a Document costs ~15 µs to build).
    """

    def __init__(self, *, lexical: Any, index: VectorIndex, semantic_weight: float = 0.35):
        self.lexical = lexical
        self.index = index
        self.semantic_weight = semantic_weight

    @component.output_types(documents=list[Document])
    def run(self, query: str, top_k: int = 40) -> dict[str, list[Document]]:
        """The fused `top_k` best chunks, best first, with `meta["lexical"]`/`["semantic"]`."""
        index = self.index
        lexical = self.lexical.run(query=query, top_k=top_k)["documents"]
        vector = index.embed_query(query)
        sims = cosines(index.matrix, vector) if np.any(vector) else None
        order, fused, lex_score, extra = fuse(index, lexical, sims, self.semantic_weight, top_k)
        docs = index.documents
        out = []
        for row in order:
            doc = extra.get(row) or docs[row]
            sem = float(sims[row]) if sims is not None and row >= 0 else 0.0
            lex = lex_score.get(row, 0.0)
            meta = {**doc.meta, "lexical": lex, "semantic": sem, "fused": fused[row]}
            score = lex if row in lex_score else max(0.0, sem)
            out.append(Document(id=doc.id, content=doc.content, meta=meta, score=score))
        return {"documents": out}


def fuse(
    index: VectorIndex,
    lexical: list[Document],
    sims: np.ndarray | None,
    semantic_weight: float,
    top_k: int,
) -> tuple[list[int], dict[int, float], dict[int, float], dict[int, Document]]:
    """Weighted reciprocal rank fusion on row numbers: (fused order, fused score per row,
    lexical score per row, lexical hits missing from the vector snapshot under negative rows).

    The semantic weight shrinks as the best lexical match approaches "every query word in
    title and body" (see `WeightedRankFusion.run`)."""
    fused: dict[int, float] = {}
    lex_score: dict[int, float] = {}
    lex_top = max((float(d.score or 0.0) for d in lexical), default=0.0)
    w_sem = semantic_weight * (1.0 - min(1.0, max(0.0, lex_top)))
    extra: dict[int, Document] = {}  # a chunk newer than this vector snapshot (PostgreSQL)
    for rank, doc in enumerate(lexical):
        row = index.row.get(doc.id)
        if row is None:
            row = -(len(extra) + 1)
            extra[row] = doc
        fused[row] = fused.get(row, 0.0) + (1.0 - w_sem) / (RRF_K + rank + 1)
        lex_score[row] = float(doc.score or 0.0)
    if extra:  # the lexical store is newer than this vector snapshot: lexical order only
        w_sem = 0.0
    if sims is not None and len(sims) and w_sem > 0:
        k = min(top_k, len(sims))
        best = np.argpartition(-sims, k - 1)[:k]
        best = best[np.argsort(-sims[best], kind="stable")]
        for rank, row in enumerate(int(r) for r in best):
            if sims[row] < index.min_similarity:
                break
            fused[row] = fused.get(row, 0.0) + w_sem / (RRF_K + rank + 1)
    docs = index.documents
    order = sorted(fused, key=lambda r: (-fused[r], (extra.get(r) or docs[r]).id))[:top_k]
    return order, fused, lex_score, extra
