"""Per-process answer engine and knowledge base, made on first use (after the fork)."""

from __future__ import annotations

import os
import threading

from models.settings import get_settings
from worker.agent.base import AnswerEngine, Passage

_lock = threading.Lock()
_state: dict[str, object] = {}


def _fresh() -> dict[str, object]:
    """Reset cached objects when this code runs in a new (forked) process."""
    if _state.get("pid") != os.getpid():
        _state.clear()
        _state["pid"] = os.getpid()
    return _state


def knowledge_base():  # type: ignore[no-untyped-def]
    """The warm retrieval index of this process (rebuilt when the KB version changes)."""
    from worker.agent.retrieval import get_knowledge_base

    return get_knowledge_base()


def answer_engine() -> AnswerEngine:
    """The configured engine: offline by default, an OpenAI-compatible model when asked."""
    from worker.agent.offline import OfflineEngine

    kb = knowledge_base()
    with _lock:
        state = _fresh()
        if "engine" not in state:
            s = get_settings()
            offline = OfflineEngine(kb, threshold=s.confidence_threshold)
            engine: AnswerEngine = offline
            if s.answer_engine == "openai":
                from worker.agent.llm import LLMEngine

                engine = LLMEngine(
                    kb.search,
                    offline,
                    model=s.llm_model,
                    api_key=s.openai_api_key,
                    base_url=s.openai_base_url,
                    timeout=s.llm_timeout,
                    confidence_threshold=s.confidence_threshold,
                    max_retries=0,
                    total_timeout=max(s.task_soft_time_limit - 10, 5),
                )
            state["engine"] = engine
        return state["engine"]  # type: ignore[return-value]


def search_rows(query: str, limit: int) -> list[dict]:
    """Search results in the API's shape."""
    passages: list[Passage] = knowledge_base().search(query, limit)
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
            "relevance_score": round(p.score, 4),
            "rank": rank,
        }
        for rank, p in enumerate(passages, start=1)
    ]
