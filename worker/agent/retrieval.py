"""The knowledge base as the answer engines see it: warm per-process search that follows KB edits.

Each worker process keeps one index warm and rebuilds it only when `KBState.version` moves, so a
search costs milliseconds; results are cached (Redis, shared by all workers, else in-process)
under the version, which makes every cache entry stale the moment the KB changes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import threading
import time
from typing import Any

from haystack import Document, Pipeline
from sqlalchemy import select

from models.kb import KBChunk, KBDocument, KBState
from models.settings import Settings, get_settings
from worker.agent.analysis import ANALYZER, is_noise
from worker.agent.base import Passage
from worker.agent.bm25 import BM25sIndex, BM25sRetriever
from worker.agent.cache import SearchCache, redis_for_cache, redis_from_url
from worker.agent.chunks import best_per_document, chunk_document
from worker.agent.pgstore import PgFullTextRetriever, engine_for

__all__ = ["KnowledgeBase", "get_knowledge_base", "normalise_query", "redis_from_url"]

log = logging.getLogger(__name__)


def normalise_query(query: str) -> str:
    """The words retrieval actually uses, so "Refund?" and "refund" share a cache entry."""
    return " ".join(ANALYZER.words(query, keep_stop_words=True))


def resolve_store(kb_store: str, is_postgres: bool) -> str:
    """`auto` means PostgreSQL full text when the record is in PostgreSQL, else bm25s."""
    if kb_store == "auto":
        return "postgres" if is_postgres else "bm25s"
    return kb_store


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
    ) -> None:
        """`background_rebuild`: a rebuild taking over `rebuild_wait` s finishes in a thread."""
        self.background_rebuild, self.rebuild_wait = background_rebuild, rebuild_wait
        self.settings = settings or get_settings()
        self.store = resolve_store(store or self.settings.kb_store, self.settings.is_postgres)
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
        if self.store == "postgres":
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
        kb._install(documents, 0, f"mem-{digest.hexdigest()[:16]}")
        return kb

    @property
    def version(self) -> int | None:
        """The KB version the current index was built from (None before the first load)."""
        return self._current.version

    @property
    def index(self) -> BM25sIndex | None:
        """The in-memory index (None for PostgreSQL, which holds its own)."""
        return self._current.index

    def search(self, query: str, limit: int = 5, per_document: int = 1) -> list[Passage]:
        """Passages of up to `limit` articles, best first, scores normalised to 0..1.

        Each article contributes its best chunk, plus up to `per_document` - 1 more of its
        chunks (for quoting); the first passage of each article is always its best one.
        """
        norm = normalise_query(query)
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
        # the raw text goes to the store (PostgreSQL must parse it as it parsed the KB)
        result = current.pipeline.run({"retriever": {"query": query, "top_k": top_k}})
        passages = best_per_document(result["retriever"]["documents"], limit, per_document)
        if key:
            self.cache.set(key, passages)
        return passages

    def term_weights(self, text: str) -> dict[str, float]:
        """Idf weight per content term (uniform for PostgreSQL, which exposes no cheap idf)."""
        if self.index is not None:
            return self.index.term_weights(text)
        return dict.fromkeys((t for t in ANALYZER.content_terms(text) if not is_noise(t)), 1.0)

    def refresh(self, force: bool = False) -> None:
        """Check the version (at most every `check_interval` s) and rebuild if it moved."""
        if self._static:
            return
        now = time.monotonic()
        if not force and now - self._checked_at < self.check_interval:
            return
        blocking = self._current.pipeline is None  # nothing to serve yet: wait for the first build
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
        with engine_for(self.database_url).connect() as conn:
            version = conn.execute(select(KBState.version).where(KBState.id == 1)).scalar()
        version = int(version or 0)
        if version == self._current.version:
            return False
        if self.store == "postgres":
            self._current = dataclasses.replace(
                self._current, version=version, namespace=f"pg-{version}"
            )
            self.cache.clear_local()
            return False
        if self.background_rebuild and self._current.pipeline is not None:
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
                documents = _load_chunks(conn)
            self._install(documents, version, f"v{version}")
            self.cache.clear_local()
            log.info(
                "kb index rebuilt: version=%s chunks=%s in %.2fs",
                version,
                len(documents),
                time.perf_counter() - started,
            )
        except Exception:
            if not release:
                raise
            log.exception("background kb index rebuild failed; serving the previous index")
        finally:
            if release:
                self._lock.release()

    def _install(self, documents: list[Document], version: int, namespace: str) -> None:
        """Build the index fully, then swap it in, so searches never see a half-built one."""
        index = BM25sIndex(documents=documents, **self.index_params)
        index.warm_up()
        pipeline = _single(BM25sRetriever(index=index, scale_score=True))
        self._current = _Snapshot(index, pipeline, version, namespace)


@dataclasses.dataclass(frozen=True)
class _Snapshot:
    """What a search uses, swapped as one object so it never mixes two KB versions."""

    index: BM25sIndex | None
    pipeline: Pipeline | None
    version: int | None
    namespace: str


def _single(retriever: Any) -> Pipeline:
    """A one-component pipeline, so stores stay swappable and extendable (rankers, filters)."""
    pipeline = Pipeline()
    pipeline.add_component("retriever", retriever)
    return pipeline


def _load_chunks(conn: Any) -> list[Document]:
    """Every chunk with its article's ids and title, in a stable order."""
    stmt = (
        select(
            KBChunk.id,
            KBChunk.document_id,
            KBChunk.position,
            KBChunk.title,
            KBChunk.section,
            KBChunk.content,
            KBDocument.external_id,
            KBDocument.title.label("document_title"),
            KBDocument.metadata_["url"].as_string().label("url"),
        )
        .join(KBDocument, KBDocument.id == KBChunk.document_id)
        .order_by(KBChunk.document_id, KBChunk.position)
    )
    return [
        chunk_document(
            chunk_id=row.id,
            document_id=row.document_id,
            content=row.content or "",
            title=row.title or row.document_title or "",
            section=row.section,
            position=row.position or 0,
            external_id=row.external_id,
            url=row.url,
        )
        for row in conn.execute(stmt)
    ]


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
