"""Per-process answer engine and knowledge base, made on first use (after the fork)."""

from __future__ import annotations

import os
import threading

from models.settings import get_settings
from worker.agent.base import AnswerEngine, Passage
from worker.agent.llm import LLMEngine
from worker.agent.offline import OfflineEngine
from worker.agent.retrieval import get_knowledge_base

_lock = threading.Lock()
_engine: AnswerEngine | None = None
_pid: int | None = None


def build_engine() -> AnswerEngine:
    """The configured engine: offline by default, an OpenAI-compatible model when asked."""
    s = get_settings()
    offline = OfflineEngine(get_knowledge_base(), threshold=s.confidence_threshold)
    if s.answer_engine != "openai":
        return offline
    return LLMEngine(
        get_knowledge_base().search,
        offline,
        model=s.llm_model,
        api_key=s.openai_api_key,
        base_url=s.openai_base_url,
        timeout=s.llm_timeout,
        confidence_threshold=s.confidence_threshold,
        max_retries=0,  # one attempt, then the offline engine: stays inside the task limit
        total_timeout=max(s.task_soft_time_limit - 10, 5),
    )


def answer_engine() -> AnswerEngine:
    """This process's engine, built on first use after the fork."""
    global _engine, _pid
    with _lock:
        if _engine is None or _pid != os.getpid():
            _engine, _pid = build_engine(), os.getpid()
        return _engine


def search_rows(query: str, limit: int) -> list[dict]:
    """Search results in the API's shape."""
    passages: list[Passage] = get_knowledge_base().search(query, limit)
    return [
        {
            "content": p.content,
            "metadata": {
                "chunk_id": p.chunk_id,
                "document_id": p.document_id,
                "external_id": p.external_id,
                "title": p.title,
                "section": p.section,
            },
            "url": p.url,
            "relevance_score": round(p.score, 4),
            "rank": rank,
        }
        for rank, p in enumerate(passages, start=1)
    ]
