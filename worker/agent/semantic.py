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

from worker.agent.bm25 import BM25sRetriever
from worker.agent.embeddings import Embedder

RRF_K = 60  # the usual reciprocal-rank constant: rank 1 vs rank 10 differ by ~15 %, not 10x


def cosines(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """`matrix @ vector` on one thread. BLAS (OpenBLAS) splits a large matrix-vector product
    over threads; with Celery's processes already filling the cores that made a 100k x 128
    product 12 ms instead of 3 (measured under load); einsum's own loop stays on one core."""
    return np.einsum("ij,j->i", matrix, vector)


def top_desc(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the `k` largest values, largest first (ties as `bm25.top_indices` keeps them)."""
    k = min(k, len(values))
    if k <= 0:
        return np.zeros(0, dtype=np.intp)
    best = np.argpartition(-values, k - 1)[:k]
    return best[np.argsort(-values[best], kind="stable")]


# Rows per block of the stacked product (see `VectorIndex`): OpenBLAS runs a matrix-vector
# product of under 2304 x 4 elements on the calling thread, and numpy's matmul over a stack of
# blocks calls it once per block from C, so a block of this many elements never spawns threads.
_BLOCK_ELEMENTS = 8192


class VectorIndex:
    """Chunk vectors as row-normalised float32, rows in `documents` order.

    A query's cosines are one BLAS matrix-vector product per block of rows, all called from
    C by one stacked `matmul` (`cosines`). Single-threaded by construction: a whole-matrix
    product is split over threads by OpenBLAS, which with Celery's processes already filling
    the cores made a 100k x 128 product 12 ms instead of 3 (measured under load); and about a
    third cheaper in CPU than the per-row einsum loop used before (bench/README.md)."""

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
        matrix = np.asarray(matrix, dtype=np.float32)
        self.size, dim = len(documents), (matrix.shape[1] if matrix.ndim == 2 else 0)
        rows = max(1, _BLOCK_ELEMENTS // max(dim, 1))
        blocks = -(-self.size // rows)
        # zero rows pad the last block; their cosines are cut off in `cosines`
        self._blocks = np.zeros((blocks, rows, dim), dtype=np.float32)
        self._blocks.reshape(-1, dim)[: self.size] = matrix
        self.embedder = embedder
        self.min_similarity = min_similarity
        self.row = {doc.id: i for i, doc in enumerate(documents)}

    @property
    def matrix(self) -> np.ndarray:
        """The vectors as (chunks, dim), a view (no copy)."""
        return self._blocks.reshape(-1, self._blocks.shape[2])[: self.size]

    def embed_query(self, query: str) -> np.ndarray:
        """The query's unit vector (zero when the model knows none of its tokens)."""
        return self.embedder.embed([query])[0]

    def cosines(self, vector: np.ndarray) -> np.ndarray:
        """Cosine of every chunk to `vector` (a unit vector), in row order, on this thread."""
        vector = np.asarray(vector, dtype=np.float32)  # a float64 one would upcast the matrix
        return (self._blocks @ vector).reshape(-1)[: self.size]

    def cosines_of(self, rows: list[int], vector: np.ndarray) -> np.ndarray:
        """Cosine of the given rows only (what a fusion that skips the full product needs)."""
        if not rows:
            return np.zeros(0, dtype=np.float32)
        # the same BLAS kernel as `cosines` (a few rows: far under the threading size)
        return self.matrix[rows] @ np.asarray(vector, dtype=np.float32)

    def nearest(self, vector: np.ndarray, top_k: int) -> list[Document]:
        """The `top_k` chunks of highest cosine, best first, score = cosine; chunks under
        `min_similarity` are left out (every chunk is *some* distance away: that is no match)."""
        if top_k <= 0 or not len(self.documents) or not np.any(vector):
            return []
        sims = self.cosines(vector)
        return [
            dataclasses.replace(self.documents[i], score=float(sims[i]))
            for i in top_desc(sims, top_k).tolist()
            if sims[i] >= self.min_similarity
        ]

    def similarity(self, vector: np.ndarray, doc_ids: list[str]) -> dict[str, float]:
        """Cosine of the given chunks to `vector` (unknown ids are left out)."""
        rows = [(d, self.row[d]) for d in doc_ids if d in self.row]
        if not rows or not np.any(vector):
            return dict.fromkeys((d for d, _ in rows), 0.0)
        sims = self.cosines_of([r for _, r in rows], vector)
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
    the `top_k` fused chunks become Documents (a Document costs ~5-15 µs to build). With the
    bm25s retriever the lexical hits come as row numbers too (`BM25sIndex.top_rows`), and
    when the fusion gives the meaning no vote (the words matched fully, see `fuse_weight`)
    the product over every chunk vector is skipped: only the kept chunks' cosines are
    computed, for `meta["semantic"]`.
    """

    def __init__(self, *, lexical: Any, index: VectorIndex, semantic_weight: float = 0.35):
        self.lexical = lexical
        self.index = index
        self.semantic_weight = semantic_weight
        self._rows: tuple[list[Document], np.ndarray] | None = None

    def warm_up(self) -> None:
        """Map the bm25s snapshot's rows onto the vector rows now, not on the first query."""
        if isinstance(self.lexical, BM25sRetriever):
            docs = self.lexical.index.snapshot_documents()
            if docs is not None:
                self._row_map(docs)

    @component.output_types(documents=list[Document])
    def run(
        self, query: str, top_k: int = 40, language: str | None = None, fuzzy: bool = True
    ) -> dict[str, list[Document]]:
        """The fused `top_k` best chunks, best first, with `meta["lexical"]`/`["semantic"]`.
        `language`: the query's, for the lexical side's stemming; `fuzzy`: whether the
        lexical side may read unknown words as typos."""
        index = self.index
        rows, lex_scores, extra = self._lexical(query, top_k, language, fuzzy)
        w_sem = fuse_weight(self.semantic_weight, lex_scores)
        if extra:  # the lexical store is newer than this vector snapshot: lexical order only
            w_sem = 0.0
        vector = index.embed_query(query)
        known = bool(np.any(vector))
        sims = index.cosines(vector) if known and w_sem > 0 and index.size else None
        fused = rank_fusion(rows, sims, w_sem, top_k, index.min_similarity)
        docs = index.documents
        order = sorted(fused, key=lambda r: (-fused[r], (extra.get(r) or docs[r]).id))[:top_k]
        lex_score = dict(zip(rows, lex_scores, strict=True))
        if sims is not None:
            sem = {r: float(sims[r]) for r in order if r >= 0}
        elif known:
            kept = [r for r in order if r >= 0]
            sem = dict(zip(kept, index.cosines_of(kept, vector).tolist(), strict=True))
        else:
            sem = {}
        out = []
        for row in order:
            doc = extra.get(row) or docs[row]
            cos, lex = sem.get(row, 0.0), lex_score.get(row, 0.0)
            meta = {**doc.meta, "lexical": lex, "semantic": cos, "fused": fused[row]}
            score = lex if row in lex_score else max(0.0, cos)
            out.append(Document(id=doc.id, content=doc.content, meta=meta, score=score))
        return {"documents": out}

    def _lexical(
        self, query: str, top_k: int, language: str | None = None, fuzzy: bool = True
    ) -> tuple[list[int], list[float], dict[int, Document]]:
        """The lexical hits as (vector rows, scores, hits missing from the vector snapshot under
        negative rows), best first; from bm25s without building a Document per hit."""
        index = self.index
        extra: dict[int, Document] = {}  # a chunk newer than this vector snapshot (PostgreSQL)
        if isinstance(self.lexical, BM25sRetriever):
            hits = self.lexical.index.top_rows(
                query, top_k, self.lexical.scale_score, language, fuzzy
            )
            if hits is None:
                return [], [], extra
            rows = self._row_map(hits.docs)[hits.rows].tolist()
            for k, row in enumerate(rows):
                if row < 0:
                    rows[k] = -(len(extra) + 1)
                    extra[rows[k]] = hits.docs[int(hits.rows[k])]
            return rows, hits.scores, extra
        documents = self.lexical.run(query=query, top_k=top_k, language=language, fuzzy=fuzzy)[
            "documents"
        ]
        rows = []
        for doc in documents:
            row = index.row.get(doc.id)
            if row is None:
                row = -(len(extra) + 1)
                extra[row] = doc
            rows.append(row)
        return rows, [float(d.score or 0.0) for d in documents], extra

    def _row_map(self, docs: list[Document]) -> np.ndarray:
        """Vector row of each chunk of a bm25s snapshot (-1 when the vectors lack it), kept
        until the snapshot changes."""
        cached = self._rows
        if cached is not None and cached[0] is docs:
            return cached[1]
        row = self.index.row
        mapping = np.fromiter((row.get(d.id, -1) for d in docs), dtype=np.intp, count=len(docs))
        self._rows = (docs, mapping)
        return mapping


def fuse_weight(semantic_weight: float, lexical_scores: list[float]) -> float:
    """The semantic list's weight for this query: the configured one, shrunk as the best
    lexical match approaches "every query word in title and body" (see
    `WeightedRankFusion.run`); 0 once it gets there."""
    lex_top = max(lexical_scores, default=0.0)
    return semantic_weight * (1.0 - min(1.0, max(0.0, lex_top)))


def rank_fusion(
    lexical_rows: list[int],
    sims: np.ndarray | None,
    w_sem: float,
    top_k: int,
    min_similarity: float,
) -> dict[int, float]:
    """Weighted reciprocal rank fusion on row numbers: fused score per row. The lexical list
    weighs 1 - `w_sem`; the `top_k` rows nearest by cosine (`sims`, at least `min_similarity`)
    weigh `w_sem`."""
    fused: dict[int, float] = {}
    for rank, row in enumerate(lexical_rows):
        fused[row] = fused.get(row, 0.0) + (1.0 - w_sem) / (RRF_K + rank + 1)
    if sims is not None and len(sims) and w_sem > 0:
        best = top_desc(sims, top_k)
        for rank, row in enumerate(best.tolist()):
            if sims[row] < min_similarity:
                break
            fused[row] = fused.get(row, 0.0) + w_sem / (RRF_K + rank + 1)
    return fused
