"""Fixtures for retrieval and offline-engine tests: a small help centre, real SQL and Redis."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")

from haystack import Document  # noqa: E402

from models.settings import Settings, get_settings  # noqa: E402

REDIS_CLOSED_URL = "redis://localhost:1/15"  # nothing listens on port 1: Redis is "down"
PG_ADMIN_URL = "postgresql://postgres@localhost:5432/postgres"
# one scratch database per test run (pid): parallel runs (CI shards, several checkouts on one
# server) must not drop each other's tables mid-test
PG_TEST_DB = f"helpline_agent_{os.getpid()}_test"

# A made-up help centre (our own text): (external id, title, [(section, content), ...]).
ARTICLES: list[tuple[str, str, list[tuple[str | None, str]]]] = [
    (
        "billing/refund-timing",
        "How long does a refund take?",
        [
            (
                None,
                "Refunds go back to the original payment method. Card refunds usually appear "
                "within 5 business days after we approve them. PayPal refunds arrive within 24 "
                "hours.",
            ),
            (
                "Bank transfers",
                "If you paid by bank transfer, the refund takes up to 10 business days because "
                "banks process transfers in batches.",
            ),
        ],
    ),
    (
        "accounts/reset-password",
        "How do I reset my password?",
        [
            (
                "Reset your password",
                "To reset your password:\n1. Open the sign-in page.\n2. Select Forgot password.\n"
                "3. Enter your email address and select Send link.\n4. Open the email and choose "
                "a new password.",
            ),
            (
                "Password rules",
                "Your new password needs at least 10 characters, including a number. The reset "
                "link expires after 60 minutes.",
            ),
        ],
    ),
    (
        "shipping/delivery-times",
        "Delivery times",
        [
            (
                None,
                "Standard delivery takes 2 to 4 working days. Express delivery arrives the next "
                "working day if you order before 2 pm. We do not deliver on Sundays.",
            ),
        ],
    ),
    (
        "shipping/international",
        "Shipping abroad and customs",
        [
            (
                None,
                "We ship to every country in the European Union and to Switzerland, Norway and "
                "the United Kingdom. Orders outside the EU may be charged import duties by the "
                "carrier on delivery.",
            ),
        ],
    ),
    (
        "returns/start-a-return",
        "How do I return an item?",
        [
            (
                None,
                "You can return most items within 30 days of delivery. Register the return "
                "under Account > Orders and print the prepaid label.",
            ),
            (
                "Drop-off",
                "Drop the parcel at any parcel point within 14 days of registering the return. "
                "Keep the receipt until your refund arrives.",
            ),
        ],
    ),
    (
        "devices/speaker-manual",
        "Pulse speaker manual",
        [
            ("Charging", f"Charging {i}: connect the cable and wait for the light. " * 3)
            for i in range(6)
        ]
        + [("Refund note", "A refund for the speaker follows the normal return rules.")],
    ),
]


def run_offline(code: str, timeout: float = 60) -> str:
    """Run `code` in a fresh Python with every proxy pointing at a closed port and the
    Hugging Face hub offline, from the repository root; return its stdout.

    A model that claims to load offline proves it here: any download attempt fails at once
    instead of quietly succeeding on a machine that happens to have network.
    """
    env = {
        **os.environ,
        "HTTPS_PROXY": "http://127.0.0.1:1",
        "HTTP_PROXY": "http://127.0.0.1:1",
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": "/nonexistent-helpline-test",
    }
    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, "-c", code]
    out = subprocess.run(
        command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def chunk_rows() -> list[dict[str, Any]]:
    """The articles as chunk rows (external id doubles as document id in memory)."""
    rows = []
    for ext_id, title, sections in ARTICLES:
        for position, (section, content) in enumerate(sections):
            rows.append(
                {
                    "chunk_id": f"{ext_id}#{position}",
                    "document_id": ext_id,
                    "external_id": ext_id,
                    "title": title,
                    "section": section,
                    "position": position,
                    "content": content,
                }
            )
    return rows


@pytest.fixture
def kb_documents() -> list[Document]:
    """The help centre as chunk Documents."""
    from worker.agent.bm25 import documents_from_rows

    return documents_from_rows(chunk_rows())


@pytest.fixture
def settings() -> Settings:
    """The run's settings (Redis: its own claimed database, tests/conftest.py), in-memory KB."""
    return dataclasses.replace(get_settings(), kb_store="bm25s")


@pytest.fixture
def memory_kb(kb_documents: list[Document], settings: Settings):  # type: ignore[no-untyped-def]
    """An in-memory knowledge base over the help centre (no DB, no Redis)."""
    from worker.agent.retrieval import KnowledgeBase

    return KnowledgeBase.from_documents(kb_documents, settings=settings)


@pytest.fixture
def own_redis() -> Iterator[Any]:
    """A Redis database claimed for this test alone (empty), emptied and given back after: never
    a fixed number, which another run (or this run's stack) may be using."""
    import redis

    from tests.conftest import redis_url, release_redis

    url = redis_url("agent-cache")
    client = redis.Redis.from_url(url, socket_timeout=1)
    try:
        client.ping()
        yield client
    finally:
        client.close()
        release_redis("agent-cache")


def load_rows(url: str, rows: list[dict[str, Any]], version: int) -> None:
    """Replace the KB tables' contents with `rows` and set the KB version. Each article's
    chunks get its language as ingestion detects it (a row's own "language" key wins)."""
    from sqlalchemy import delete
    from sqlalchemy.orm import Session

    from models import KBChunk, KBDocument, KBState
    from worker.agent.language import article_language
    from worker.agent.pgstore import engine_for

    texts: dict[str, list[str]] = {}
    for row in rows:
        texts.setdefault(row["document_id"], []).append(row["content"])
    languages = {doc_id: article_language(parts) for doc_id, parts in texts.items()}
    with Session(engine_for(url)) as session, session.begin():
        session.execute(delete(KBChunk))
        session.execute(delete(KBDocument))
        session.execute(delete(KBState))
        ids: dict[str, str] = {}
        for row in rows:
            if row["document_id"] not in ids:
                doc = KBDocument(external_id=row["external_id"], title=row["title"])
                session.add(doc)
                session.flush()
                ids[row["document_id"]] = doc.id
            keep = {k: row[k] for k in ("position", "title", "section", "content")}
            language = row.get("language", languages[row["document_id"]])
            session.add(KBChunk(document_id=ids[row["document_id"]], language=language, **keep))
        session.add(KBState(id=1, version=version))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    """A real SQLite file database with the app's tables."""
    from models import Base
    from worker.agent import pgstore

    url = f"sqlite:///{tmp_path / 'kb.db'}"
    Base.metadata.create_all(pgstore.engine_for(url))
    yield url
    pgstore._engines.pop(url).dispose()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A scratch PostgreSQL database (helpline_agent_<pid>_test) with tables and FTS column."""
    import psycopg
    from sqlalchemy import text

    from models import Base
    from worker.agent import pgstore

    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is needed for these tests: {exc}")
    with admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{PG_TEST_DB}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{PG_TEST_DB}"')
    url = f"postgresql+psycopg://postgres@localhost:5432/{PG_TEST_DB}"
    engine = pgstore.engine_for(url)
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        pgstore.ensure_pg_fts(conn)
        conn.execute(text("SELECT 1"))
    try:
        yield url
    finally:
        pgstore._engines.pop(url).dispose()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{PG_TEST_DB}" WITH (FORCE)')


class Events:
    """An `emit` that records (type, fields) in order."""

    def __init__(self) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, type_: str, fields: dict[str, Any]) -> None:
        self.items.append((type_, dict(fields)))

    @property
    def types(self) -> list[str]:
        """Event types in order."""
        return [t for t, _ in self.items]

    @property
    def text(self) -> str:
        """All text deltas joined."""
        return "".join(f["content"] for t, f in self.items if t == "text")


@pytest.fixture
def events() -> Callable[[], Events]:
    """Factory for recording emitters."""
    return Events
