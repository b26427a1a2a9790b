"""The knowledge base as the answer engines see it: warm per-process search that follows KB edits.

Each worker process keeps one index warm and rebuilds it only when `KBState.version` moves, so a
search costs milliseconds; results are cached (Redis, shared by all workers, else in-process)
under the version, which makes every cache entry stale the moment the KB changes.

Search is a haystack pipeline: the lexical retriever (bm25s in memory, or PostgreSQL full text)
and, unless `EMBEDDINGS_PROVIDER=none`, a semantic retriever over the chunks' stored vectors,
merged by weighted reciprocal rank fusion (`worker.agent.semantic`). The vectors live in
`kb_chunks.embedding`; an index build re-embeds any chunk whose vector is missing or was made by
another model, and writes it back, so a model change needs no manual step.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import threading
import time
from collections import Counter
from typing import Any

import numpy as np
from haystack import Document, Pipeline
from sqlalchemy import bindparam, func, select, update

from models.kb import KBChunk, KBDocument, KBState
from models.settings import Settings, get_settings
from worker.agent.analysis import ANALYZER, QueryRepair, analyzer_for, is_noise
from worker.agent.base import Passage
from worker.agent.bm25 import BM25sIndex, BM25sRetriever
from worker.agent.cache import SearchCache, redis_for_cache, redis_from_url
from worker.agent.chunks import best_per_document, chunk_document
from worker.agent.embeddings import (
    Embedder,
    EmbeddingError,
    chunk_text_for_embedding,
    from_blob,
    get_embedder,
    to_blob,
)
from worker.agent.language import ARTICLE_CHUNKS, article_language
from worker.agent.pgstore import PgFullTextRetriever, engine_for, pg_languages
from worker.agent.selfcheck import choose_weight
from worker.agent.semantic import HybridRetriever, VectorIndex, cosines

__all__ = ["KnowledgeBase", "get_knowledge_base", "normalise_query", "redis_from_url"]

log = logging.getLogger(__name__)

_SETTINGS = object()  # "the embedder the settings name", as opposed to None (semantic side off)
_EMBED_BATCH = 256
# an embedder without a measured weight of its own (an OpenAI-compatible endpoint: any model)
DEFAULT_SEMANTIC_WEIGHT = 0.35


def normalise_query(query: str) -> str:
    """The words retrieval actually uses, so "Refund?" and "refund" share a cache entry."""
    return " ".join(ANALYZER.words(query, keep_stop_words=True))


def resolve_store(
    kb_store: str, is_postgres: bool, chunks: int | None = None, memory_chunks: int = 0
) -> str:
    """The store to rank with: `auto` is bm25s in memory, except on PostgreSQL for a KB of
    more than `memory_chunks` chunks (or of unknown size), which PostgreSQL's full text serves.

    In memory ranks better (term frequency, length, exact forms: covidfaq R@1 0.646 vs 0.474,
    bench/README.md), answers faster and sees an ingest at once, but every worker process
    holds the index and rebuilds it on each KB change; past the limit, PostgreSQL keeps the
    corpus out of the processes' memory.
    """
    if kb_store != "auto":
        return kb_store
    if not is_postgres:
        return "bm25s"
    return "bm25s" if chunks is not None and chunks <= memory_chunks else "postgres"


class KnowledgeBase:
    """Search over the help centre for one process; rebuilds itself when the KB version moves."""

    def __init__(
        self,
        *,
        store: str | None = None,
        database_url: str | None = None,
        redis_client: Any | None = None,
        use_redis: bool = True,
        settings: Settings | None = None,
        cache_ttl: float = 60.0,
        cache_size: int = 1024,
        check_interval: float = 1.0,
        candidates: int = 40,
        index_params: dict[str, Any] | None = None,
        background_rebuild: bool = True,
        rebuild_wait: float = 3.0,
        embedder: Embedder | None | object = _SETTINGS,
        semantic_weight: float | None = None,
    ) -> None:
        """`background_rebuild`: a rebuild taking over `rebuild_wait` s finishes in a thread.

        `embedder` defaults to the configured one (`EMBEDDINGS_PROVIDER`); None turns the
        semantic side off. `semantic_weight` defaults to `SEMANTIC_WEIGHT`, else to the
        embedder's own `fusion_weight` (the weight measured best for that model).
        """
        self.background_rebuild, self.rebuild_wait = background_rebuild, rebuild_wait
        self.settings = settings or get_settings()
        self.embedder: Embedder | None = (
            get_embedder(self.settings) if embedder is _SETTINGS else embedder  # type: ignore[assignment]
        )
        if semantic_weight is None:
            semantic_weight = self.settings.semantic_weight
        if semantic_weight is None:  # SEMANTIC_WEIGHT unset: what was measured for this model
            semantic_weight = getattr(self.embedder, "fusion_weight", DEFAULT_SEMANTIC_WEIGHT)
        self.semantic_weight: float = semantic_weight
        configured = store or self.settings.kb_store
        self.store = resolve_store(configured, self.settings.is_postgres)
        # auto on PostgreSQL: in memory or in the database, by the KB's size at each version
        self._by_size = configured == "auto" and self.store == "postgres"
        self.database_url = database_url
        self.check_interval, self.candidates = check_interval, candidates
        self.index_params = dict(index_params or {})
        if use_redis and redis_client is None:
            redis_client = redis_for_cache(self.settings)
        prefix = self.settings.event_channel_prefix
        self.cache = SearchCache(
            redis_client if use_redis else None, ttl=cache_ttl, maxsize=cache_size, prefix=prefix
        )
        self._current = _Snapshot(None, None, None, "")
        self._checked_at = float("-inf")
        self._lock = threading.Lock()
        self._static = False
        if self.store == "postgres" and self.embedder is None and not self._by_size:
            retriever = PgFullTextRetriever(database_url=database_url, scale_score=True)
            self._current = _Snapshot(None, _single(retriever), None, "")

    @classmethod
    def from_documents(cls, documents: list[Document], **kwargs: Any) -> KnowledgeBase:
        """An in-memory KB (tests, benchmarks): bm25s over the given chunk Documents, no DB."""
        kwargs.setdefault("use_redis", False)
        kb = cls(store="bm25s", **kwargs)
        kb._static = True
        digest = hashlib.sha1(usedforsecurity=False)
        for doc in documents:
            digest.update(doc.id.encode())
        matrix = None
        if kb.embedder is not None:
            matrix = kb.embedder.embed([_embedding_text(d) for d in documents])
        kb._install(documents, 0, f"mem-{digest.hexdigest()[:16]}", matrix)
        return kb

    @property
    def namespace(self) -> str:
        """The cache namespace: the KB version, plus the embedding model and weight in use."""
        return self._current.namespace

    @property
    def semantic(self) -> bool:
        """True when searches fuse the semantic side in."""
        return self._current.vectors is not None

    @property
    def version(self) -> int | None:
        """The KB version the current index was built from (None before the first load)."""
        return self._current.version

    @property
    def index(self) -> BM25sIndex | None:
        """The in-memory index (None for PostgreSQL, which holds its own)."""
        return self._current.index

    @property
    def languages(self) -> dict[str, int]:
        """Articles per detected language (empty before the first load)."""
        return dict(self._current.languages)

    @property
    def main_language(self) -> str | None:
        """The language most articles are written in (None before the first load): a question
        in no other language the KB has is stemmed as this one."""
        return self._current.main_language

    def search(
        self,
        query: str,
        limit: int = 5,
        per_document: int = 1,
        language: str | None = None,
        *,
        asked: str | None = None,
    ) -> list[Passage]:
        """Passages of up to `limit` articles, best first, scores normalised to 0..1.

        Each article contributes its best chunk, plus up to `per_document` - 1 more of its
        chunks (for quoting); the first passage of each article is always its best one.
        `language` keeps only articles written in that language (see `languages`). `asked`:
        the question's own language when the KB has no articles in it (its words are then
        not "repaired" toward the KB's language; see `QueryRepair`).
        """
        norm = normalise_query(query)
        if language:
            norm = f"{norm} @{language}"
        if asked:
            norm = f"{norm} !{asked}"
        if not norm or limit <= 0 or per_document <= 0:
            return []
        self.refresh()
        current = self._current  # one consistent snapshot, even while a rebuild swaps it
        if current.pipeline is None:
            return []
        key = None
        if current.namespace:
            key = self.cache.key(current.namespace, norm, limit, per_document)
        cached = self.cache.get(key) if key else None
        if cached is not None:
            return cached
        top_k = max(self.candidates, limit * 4)
        stem_as = language or current.main_language  # undetected: the KB's own language
        if current.repair is not None:  # "pakage" -> "package", both sides gain
            query = current.repair.repair(query, asked or stem_as)
        # the raw text goes to the store (PostgreSQL must parse it as it parsed the KB)
        inputs: dict[str, Any] = {"query": query, "top_k": top_k}
        if stem_as:
            inputs["language"] = stem_as  # its stemmer and stop words
        if asked:
            inputs["fuzzy"] = False  # another language's words are no typos of the KB's
        result = current.pipeline.run({"retriever": inputs})
        documents = result["retriever"]["documents"]
        if language:
            documents = [d for d in documents if d.meta.get("language") == language]
        passages = best_per_document(documents, limit, per_document)
        if key:
            self.cache.set(key, passages)
        return passages

    def repair(self, text: str, language: str | None = None) -> str:
        """`text` with misspelt words fixed (see `QueryRepair`); unchanged before a first build.
        `language` (default: the KB's main one, as `search` stems it): the text's, whose stop
        and question words are left alone."""
        self.refresh()
        repair = self._current.repair
        if repair is None:
            return text
        return repair.repair(text, language or self._current.main_language)

    def term_weights(self, text: str, language: str | None = None) -> dict[str, float]:
        """Idf weight per content term (uniform for PostgreSQL, which exposes no cheap idf);
        `language` (default: the KB's main one) stems `text` as the in-memory index stemmed
        that language's chunks."""
        language = language or self.main_language
        if self.index is not None:
            return self.index.term_weights(text, language)
        terms = analyzer_for(language).content_terms(text)
        return dict.fromkeys((t for t in terms if not is_noise(t)), 1.0)

    def refresh(self, force: bool = False) -> None:
        """Check the version (at most every `check_interval` s) and rebuild if it moved."""
        if self._static:
            return
        now = time.monotonic()
        # Nothing worth serving yet (no build, or a build of an empty KB): wait for the build,
        # and look at the version on every search. A help centre's first import must answer
        # at once, not after a check interval plus a background rebuild of "nothing found".
        blocking = self._current.empty
        # Checked recently, and there is an index to serve. While the first build is still under
        # way in another thread (the worker's warm-up), `_checked_at` is already recent but
        # there is nothing to serve: wait for that build below instead of searching nothing.
        if not force and not blocking and now - self._checked_at < self.check_interval:
            return
        if not self._lock.acquire(blocking=blocking):
            return  # another thread is rebuilding; keep serving the current index
        handed_off = False
        try:
            self._checked_at = now
            handed_off = self._check_version()
        except Exception:
            log.exception("knowledge base refresh failed; serving the previous index")
        finally:
            if not handed_off:
                self._lock.release()

    def _check_version(self) -> bool:
        """Follow a version change; True if a background thread now owns the lock."""
        languages: dict[str, int] = {}
        with engine_for(self.database_url).connect() as conn:
            if conn.dialect.name == "postgresql":  # read only: no ROLLBACK (see load_context)
                conn.execution_options(isolation_level="AUTOCOMMIT")
            version = int(
                conn.execute(select(KBState.version).where(KBState.id == 1)).scalar() or 0
            )
            if version == self._current.version:
                return False
            if self._by_size:
                chunks = int(conn.execute(select(func.count()).select_from(KBChunk)).scalar() or 0)
                limit = self.settings.kb_memory_chunks
                store = resolve_store("auto", True, chunks, limit)
                if store != self.store or self._current.pipeline is None:
                    log.info("kb store: %s (%s chunks; in memory up to %s)", store, chunks, limit)
                self.store = store
            if self.store == "postgres" and self.embedder is None:
                languages = pg_languages(conn)  # no chunks loaded: as ingestion tagged them
        if self.store == "postgres" and self.embedder is None:
            current = self._current
            if current.pipeline is None or current.index is not None:  # first, or was in memory
                retriever = PgFullTextRetriever(database_url=self.database_url, scale_score=True)
                current = _Snapshot(None, _single(retriever), None, "")
            self._current = dataclasses.replace(
                current,
                version=version,
                namespace=f"pg-{version}",
                languages=languages,
                chunks=None,  # searched in the database, not counted
            )
            self.cache.clear_local()
            return False
        if self.background_rebuild and not self._current.empty:
            worker = threading.Thread(
                target=self._rebuild, args=(version, True), name="kb-index-rebuild", daemon=True
            )
            worker.start()
            worker.join(self.rebuild_wait)  # usually done by then; if not, serve the old index
            return True
        self._rebuild(version, False)
        return False

    def _rebuild(self, version: int, release: bool) -> None:
        """Load every chunk and swap in a new index (releases the lock if asked)."""
        try:
            started = time.perf_counter()
            with engine_for(self.database_url).connect() as conn:
                documents, blobs = _load_chunks(conn)
            matrix = self._vectors(documents, blobs) if self.embedder is not None else None
            self._install(documents, version, f"v{version}", matrix)
            self.cache.clear_local()
            log.info(
                "kb index rebuilt: version=%s chunks=%s semantic=%s in %.2fs",
                version,
                len(documents),
                matrix is not None,
                time.perf_counter() - started,
            )
        except Exception:
            if not release:
                raise
            log.exception("background kb index rebuild failed; serving the previous index")
        finally:
            if release:
                self._lock.release()

    def _vectors(
        self, documents: list[Document], blobs: list[tuple[Any, Any]]
    ) -> np.ndarray | None:
        """Stored vectors of this model; missing or stale ones are embedded and written back.

        None when the embedder fails (an endpoint down): search then runs lexical only rather
        than not at all, and the next version change tries again.
        """
        embedder = self.embedder
        assert embedder is not None
        model = embedder.model_id
        # the model id names the dimension too, so vectors of one model always stack
        rows: list[np.ndarray | None] = [
            from_blob(blob, len(blob) // 4) if made_by == model and blob else None
            for blob, made_by in blobs
        ]
        stale = [i for i, row in enumerate(rows) if row is None]
        if stale:
            try:
                fresh = np.concatenate(
                    [
                        embedder.embed([_embedding_text(documents[i]) for i in part])
                        for part in _batches(stale, _EMBED_BATCH)
                    ]
                )
            except EmbeddingError:
                log.exception("chunk embeddings unavailable; searching lexically only")
                return None
            for i, vec in zip(stale, fresh, strict=True):
                rows[i] = vec
            self._store_vectors([(documents[i].id, fresh[k]) for k, i in enumerate(stale)], model)
        if not rows:
            return None
        return np.vstack(rows).astype(np.float32)

    def _store_vectors(self, pairs: list[tuple[str, np.ndarray]], model: str) -> None:
        """Write recomputed vectors back, so other processes and the next build reuse them."""
        if self._static or not pairs:
            return
        try:
            with engine_for(self.database_url).begin() as conn:
                conn.execute(
                    update(KBChunk)
                    .where(KBChunk.id == bindparam("chunk_id"))
                    .values(embedding=bindparam("vec"), embedding_model=model),
                    [{"chunk_id": cid, "vec": to_blob(vec)} for cid, vec in pairs],
                )
            log.info("chunk embeddings stored: chunks=%s model=%s", len(pairs), model)
        except Exception:
            log.exception("could not store recomputed chunk embeddings (kept in memory)")

    def _install(
        self,
        documents: list[Document],
        version: int,
        namespace: str,
        matrix: np.ndarray | None = None,
    ) -> None:
        """Build the index fully, then swap it in, so searches never see a half-built one."""
        # languages first: the bm25s index stems each chunk with its language's stemmer
        languages = _tag_languages(documents)
        index = None
        if self.store == "postgres":
            lexical: Any = PgFullTextRetriever(database_url=self.database_url, scale_score=True)
        else:
            index = BM25sIndex(documents=documents, **self.index_params)
            index.warm_up()
            lexical = BM25sRetriever(index=index, scale_score=True)
        vectors = None
        if matrix is not None and self.embedder is not None:
            vectors = VectorIndex(
                documents,
                matrix,
                self.embedder,
                min_similarity=self.settings.embeddings_min_similarity,
            )
            # whether the meaning may vote on this KB: its own titles and bodies decide
            weight = choose_weight(documents, self.embedder, self.semantic_weight).weight
            if weight <= 0:
                vectors = None  # neither ranking nor confidence: the cosine was no evidence
        if vectors is not None and self.embedder is not None:
            pipeline = _fused(lexical, vectors, weight)
            namespace = f"{namespace}:{self.embedder.model_id}:w{weight:g}"
        else:
            pipeline = _single(lexical)
        pipeline.warm_up()  # here, in the build, rather than in the first customer's search
        self._current = _Snapshot(
            index,
            pipeline,
            version,
            namespace,
            vectors,
            self._query_repair(documents, synonyms=vectors is not None, index=index),
            languages,
            len(documents),
        )

    def _query_repair(
        self, documents: list[Document], synonyms: bool, index: BM25sIndex | None = None
    ) -> QueryRepair | None:
        """Typo repair from this KB's words (counted) and the embedding model's word list;
        `synonyms`: also map words the KB lacks onto its own by the model's word vectors (not
        where the self-check found the model's sense of meaning no help on this KB). The
        bodies' words come from the bm25s `index` when there is one (it counted them)."""
        if not documents:
            return None
        bodies = index.body_word_counts() if index is not None else None
        if bodies is None:
            bodies = Counter()
            for doc in documents:
                bodies.update(ANALYZER.words(doc.content or ""))
        titles: dict[str, list[str]] = {}  # an article's chunks share its title
        counts: Counter[str] = Counter()
        for doc in documents:
            title = str(doc.meta.get("title") or "")
            words = titles.get(title)
            if words is None:
                words = titles[title] = ANALYZER.words(title)
            counts.update(words)
        counts.update(bodies)
        kb_words = {w: n for w, n in counts.items() if w.isalpha()}
        vocabulary = getattr(self.embedder, "vocabulary", None)
        known = vocabulary() if callable(vocabulary) else None
        synonyms = synonyms and getattr(self.embedder, "synonyms", True)  # see MiniLMEmbedder
        synonym = (
            _Synonyms(kb_words, self.embedder) if synonyms and known and self.embedder else None
        )
        languages = {str(d.meta.get("language") or "en") for d in documents}
        return QueryRepair(
            kb_words,
            known,
            synonym,
            languages=languages,
            by_language=_words_by_language(documents, kb_words),
            known_language=getattr(self.embedder, "vocabulary_language", "en"),
        )


@dataclasses.dataclass(frozen=True)
class _Snapshot:
    """What a search uses, swapped as one object so it never mixes two KB versions."""

    index: BM25sIndex | None
    pipeline: Pipeline | None
    version: int | None
    namespace: str
    vectors: VectorIndex | None = None
    repair: QueryRepair | None = None
    languages: dict[str, int] = dataclasses.field(default_factory=dict)
    chunks: int | None = None  # loaded into memory (None: searched in PostgreSQL, not counted)

    @property
    def empty(self) -> bool:
        """Nothing to search: no build yet, or a build of a KB without chunks."""
        return self.pipeline is None or self.chunks == 0

    @property
    def main_language(self) -> str | None:
        """The language with the most articles (ties: the alphabetically first code)."""
        have = self.languages
        return min(have, key=lambda c: (-have[c], c)) if have else None


class _Synonyms:
    """The KB word closest in meaning to a word the KB lacks, by the embedding model's word
    vectors ("headset" -> "headphones", "noise" -> "sound"): cosine at least `MIN_COSINE`.

    Static word vectors put words used alike close together, antonyms included ("off" near
    "on"), so only content words of 4+ letters take part and the bar is high."""

    MIN_COSINE = 0.55
    MIN_LETTERS = 4

    def __init__(self, counts: dict[str, int], embedder: Embedder) -> None:
        from worker.agent.analysis import SOFT_STOP_WORDS, STOP_WORDS

        self.embedder = embedder
        self.words = [
            w
            for w in counts
            if len(w) >= self.MIN_LETTERS and w not in STOP_WORDS and w not in SOFT_STOP_WORDS
        ]
        self.matrix = embedder.embed(self.words) if self.words else None
        self._memo: dict[str, str | None] = {}

    def __call__(self, word: str) -> str | None:
        if self.matrix is None or len(word) < self.MIN_LETTERS:
            return None
        if word not in self._memo:
            if len(self._memo) > 10_000:
                self._memo.clear()
            sims = cosines(self.matrix, self.embedder.embed([word])[0])
            best = int(np.argmax(sims))
            self._memo[word] = self.words[best] if sims[best] >= self.MIN_COSINE else None
        return self._memo[word]


def _tag_languages(documents: list[Document]) -> dict[str, int]:
    """Tag each article's chunks with its language (`meta["language"]`) and count articles
    per language. The language stored at ingestion is used as it is; an article without one
    (ingested before it was stored, or from rows in memory) is detected once, from its first
    chunks, with the same recipe. Undetectable ones count as the majority language."""
    texts: dict[str, list[str]] = {}
    stored: dict[str, str | None] = {}
    for doc in documents:
        key = str(doc.meta.get("document_id") or doc.id)
        stored.setdefault(key, doc.meta.get("language"))
        parts = texts.setdefault(key, [])
        if len(parts) < ARTICLE_CHUNKS:
            parts.append(doc.content or "")
    found = {d: stored[d] or article_language(parts) for d, parts in texts.items()}
    counts: dict[str, int] = {}
    for code in found.values():
        if code:
            counts[code] = counts.get(code, 0) + 1
    main = max(counts, key=lambda c: counts[c]) if counts else "en"
    for d, code in found.items():
        if not code:
            counts[main] = counts.get(main, 0) + 1
            found[d] = main
    for doc in documents:
        doc.meta["language"] = found[str(doc.meta.get("document_id") or doc.id)]
    return counts


def _words_by_language(
    documents: list[Document], counts: dict[str, int]
) -> dict[str, dict[str, int]]:
    """The KB's words (as counted in `counts`) per language of the articles holding them, so a
    question in one language is repaired toward its own language's words only. The language
    with the most chunks gets what the others leave (no second pass over most of the KB); an
    English-only KB is `counts` itself."""
    by_doc: dict[str, list[Document]] = {}
    for doc in documents:
        by_doc.setdefault(str(doc.meta.get("language") or "en"), []).append(doc)
    if len(by_doc) <= 1:
        return {code: counts for code in by_doc}
    largest = max(by_doc, key=lambda code: (len(by_doc[code]), code))
    out: dict[str, dict[str, int]] = {}
    rest: Counter[str] = Counter(counts)
    for code, docs in by_doc.items():
        if code == largest:
            continue
        words: Counter[str] = Counter()
        for title in {str(d.meta.get("title") or "") for d in docs}:
            words.update(ANALYZER.words(title))
        for doc in docs:
            words.update(ANALYZER.words(doc.content or ""))
        out[code] = {w: n for w, n in words.items() if w in counts}
        rest.subtract(out[code])
    out[largest] = {w: n for w, n in rest.items() if n > 0}
    return out


def _batches(items: list[int], size: int) -> list[list[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _embedding_text(doc: Document) -> str:
    """A chunk Document's text for its vector (same recipe as at ingestion)."""
    return chunk_text_for_embedding(
        str(doc.meta.get("title") or ""), doc.meta.get("section"), doc.content or ""
    )


def _fused(lexical: Any, vectors: VectorIndex, semantic_weight: float) -> Pipeline:
    """Lexical and semantic retrieval merged by weighted rank fusion, as one component."""
    return _single(HybridRetriever(lexical=lexical, index=vectors, semantic_weight=semantic_weight))


def _single(retriever: Any) -> Pipeline:
    """A one-component pipeline, so stores stay swappable and extendable (rankers, filters)."""
    pipeline = Pipeline()
    pipeline.add_component("retriever", retriever)
    return pipeline


def _load_chunks(conn: Any) -> tuple[list[Document], list[tuple[Any, Any]]]:
    """Every chunk with its article's ids and title, in a stable order, and its stored vector
    with the model that made it."""
    stmt = (
        select(
            KBChunk.id,
            KBChunk.document_id,
            KBChunk.position,
            KBChunk.title,
            KBChunk.section,
            KBChunk.content,
            KBChunk.embedding,
            KBChunk.embedding_model,
            KBChunk.language,
            KBDocument.external_id,
            KBDocument.title.label("document_title"),
            KBDocument.metadata_["url"].as_string().label("url"),
        )
        .join(KBDocument, KBDocument.id == KBChunk.document_id)
        .order_by(KBChunk.document_id, KBChunk.position)
    )
    rows = conn.execute(stmt).all()
    blobs = [(row.embedding, row.embedding_model) for row in rows]
    documents = []
    for row in rows:
        doc = chunk_document(
            chunk_id=row.id,
            document_id=row.document_id,
            content=row.content or "",
            title=row.title or row.document_title or "",
            section=row.section,
            position=row.position or 0,
            external_id=row.external_id,
            url=row.url,
        )
        if row.language:
            doc.meta["language"] = row.language  # detected at ingestion (see _tag_languages)
        documents.append(doc)
    return documents, blobs


_shared: KnowledgeBase | None = None
_shared_pid: int | None = None
_shared_lock = threading.Lock()


def get_knowledge_base() -> KnowledgeBase:
    """The process's knowledge base, re-created after fork (indexes and sockets are per process)."""
    global _shared, _shared_pid
    with _shared_lock:
        if _shared is None or _shared_pid != os.getpid():
            _shared, _shared_pid = KnowledgeBase(), os.getpid()
        return _shared
