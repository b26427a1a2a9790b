"""Fixtures for the LLM engine tests: a real local OpenAI-compatible server and tiny test inputs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.fake_openai import FakeOpenAI
from worker.agent.base import Passage, Reply, Turn
from worker.agent.llm import LLMEngine

PASSAGES = [
    Passage(
        chunk_id="c-reset",
        document_id="d-account",
        external_id="kb-101",
        title="Resetting your password",
        content="Open Settings > Security and choose Reset password. A link is emailed to you.",
        score=0.9,
        section="Security",
    ),
    Passage(
        chunk_id="c-2fa",
        document_id="d-account",
        external_id="kb-102",
        title="Two-factor authentication",
        content="Enable two-factor authentication under Settings > Security > 2FA.",
        score=0.7,
    ),
    Passage(
        chunk_id="c-billing",
        document_id="d-billing",
        external_id=None,
        title="Invoices",
        content="Invoices are available under Billing > History as PDF files.",
        score=0.5,
    ),
]


class Events:
    """The `emit` callable: records (type, fields, monotonic time) in order."""

    def __init__(self) -> None:
        self.items: list[tuple[str, dict[str, Any], float]] = []

    def __call__(self, type_: str, fields: dict[str, Any]) -> None:
        self.items.append((type_, dict(fields), time.monotonic()))

    def of(self, type_: str) -> list[dict[str, Any]]:
        """Fields of every event of one type."""
        return [f for t, f, _ in self.items if t == type_]

    @property
    def types(self) -> list[str]:
        """Event types in order."""
        return [t for t, _, _ in self.items]

    @property
    def deltas(self) -> list[str]:
        """Text deltas in order."""
        return [f["content"] for f in self.of("text")]


class OfflineStandIn:
    """A minimal engine with the AnswerEngine shape, standing in for the offline engine."""

    name = "offline"
    TEXT = "I couldn't find that in our help center. Would you like to talk to a person?"

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def answer(
        self,
        question: str,
        *,
        history: list[Turn],
        attachments: list[str],
        emit: Callable[[str, dict[str, Any]], None],
    ) -> Reply:
        """Abstain the way the offline engine does when nothing matches."""
        self.calls.append({"question": question, "history": history, "attachments": attachments})
        emit("status", {"state": "searching"})
        emit("text", {"content": self.TEXT})
        return Reply(
            text=self.TEXT,
            requires_escalation=True,
            escalation_reason="no_match",
            engine="offline",
            metadata={"offline": True},
        )


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    """A fresh local OpenAI-compatible server per test."""
    with FakeOpenAI(reply="Open Settings > Security and choose Reset password [1].") as server:
        yield server


@pytest.fixture
def events() -> Events:
    """A recording `emit`."""
    return Events()


@pytest.fixture
def offline() -> OfflineStandIn:
    """The fallback engine stand-in."""
    return OfflineStandIn()


@pytest.fixture
def retrieved() -> list[Passage]:
    """What the fixed `retrieve` returns; tests may replace its contents."""
    return list(PASSAGES)


@pytest.fixture
def queries() -> list[str]:
    """Queries the fixed `retrieve` received."""
    return []


@pytest.fixture
def make_engine(
    fake: FakeOpenAI, offline: OfflineStandIn, retrieved: list[Passage], queries: list[str]
) -> Iterator[Callable[..., LLMEngine]]:
    """Build an LLMEngine wired to the fake server; closes every engine it made."""
    made: list[LLMEngine] = []

    def retrieve(query: str, k: int) -> list[Passage]:
        queries.append(query)
        return retrieved[:k]

    def build(**overrides: Any) -> LLMEngine:
        kwargs: dict[str, Any] = {
            "model": "gpt-4o-mini",
            "api_key": "sk-test-not-a-real-key-123456",
            "base_url": fake.base_url,
            "timeout": 5.0,
            "confidence_threshold": 0.35,
            "max_retries": 0,
        }
        kwargs.update(overrides)
        engine = LLMEngine(retrieve, offline, **kwargs)
        made.append(engine)
        return engine

    yield build
    for engine in made:
        engine.close()
