"""The answer-engine interface: what every engine (offline, LLM) takes and returns.

Engines are plain objects the `generate_reply` task calls; they stream through `emit` so the
task can publish deltas without an engine knowing about Redis or the database.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

# emit(event_type, fields): event_type is "status", "sources" or "text" ({"content": delta}).
Emit = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class Turn:
    """One earlier turn of the conversation, oldest first."""

    role: str  # "user" | "assistant" | "agent"
    content: str


@dataclass(frozen=True)
class Passage:
    """A retrieved knowledge-base chunk with its score (higher is better, engine-specific).

    `position` is the chunk's place in its article, so text quoted from several chunks of one
    article can be put back in reading order. `lexical` and `semantic` are the two retrieval
    signals behind the fused rank (scaled BM25 score, cosine to the query); with the semantic
    side off, `semantic` is None.
    """

    chunk_id: str
    document_id: str
    external_id: str | None
    title: str
    content: str
    score: float
    section: str | None = None
    position: int = 0
    url: str | None = None  # the article's public address, from its metadata
    lexical: float = 0.0
    semantic: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the search cache's); see `plain_fields`."""
        return plain_fields(self)


def plain_fields(obj: Passage | Source) -> dict[str, Any]:
    """A dataclass of plain values (str, number, None) as a dict, in field order.

    `dataclasses.asdict` deep-copies every value and walks for nested dataclasses: for these
    flat records that is the same dict at several times the cost, paid for every source of
    every answer and every cached search.
    """
    return dict(vars(obj))


@dataclass(frozen=True)
class Source:
    """A citation: `index` is the number used as [index] in the reply text."""

    index: int
    chunk_id: str
    document_id: str
    external_id: str | None
    title: str
    snippet: str
    score: float
    url: str | None = None  # where the customer can read the whole article (None: nowhere)

    @classmethod
    def from_passage(cls, index: int, passage: Passage) -> Source:
        """A passage as citation number `index`, its text shortened to a snippet."""
        snippet = " ".join(passage.content.split())
        if len(snippet) > 240:
            snippet = snippet[:240].rsplit(" ", 1)[0] + "…"
        return cls(
            index=index,
            chunk_id=passage.chunk_id,
            document_id=passage.document_id,
            external_id=passage.external_id,
            title=passage.title,
            snippet=snippet,
            score=passage.score,
            url=passage.url,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form stored on the message (clients get it through SourceOut)."""
        return plain_fields(self)


@dataclass
class Reply:
    """A finished answer; `requires_escalation` is the signal the handoff logic acts on."""

    text: str
    sources: list[Source] = field(default_factory=list)
    confidence: float = 0.0
    requires_escalation: bool = False
    escalation_reason: str | None = None
    engine: str = "offline"
    metadata: dict[str, Any] = field(default_factory=dict)


class AnswerEngine(Protocol):
    """Turn a question (plus history and attachment text) into a grounded, cited reply."""

    name: str

    def answer(
        self,
        question: str,
        *,
        history: list[Turn],
        attachments: list[str],
        emit: Emit,
    ) -> Reply:
        """Stream deltas through `emit` and return the complete reply."""
        ...
