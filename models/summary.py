"""A ticket's summary and category, read from the conversation so far (no model needed).

An agent opening a ticket should see at a glance what the customer wanted and what the bot
already tried: the first and the latest customer messages, how many turns there were, and how
many bot answers fell short. The category is the help-centre section the bot's recent answers
came from (a document's `category` metadata, else the first part of its external id).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.chat import Message

QUOTE_CHARS = 140
RECENT = 30


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return f"“{text[: QUOTE_CHARS - 1]}…”" if len(text) > QUOTE_CHARS else f"“{text}”"


def _recent(db: Session, session_id: str) -> list[Message]:
    rows = db.scalars(
        select(Message)
        .where(Message.session_id == session_id)
        .order_by(Message.seq.desc())
        .limit(RECENT)
    ).all()
    return list(reversed(rows))


def summarize(db: Session, session_id: str) -> str:
    """'First asked: “…”. Latest: “…”. 4 customer messages; 2 of 3 bot answers fell short.'"""
    rows = _recent(db, session_id)
    asked = [m for m in rows if m.role == "user" and not (m.metadata_ or {}).get("request")]
    bot = [m for m in rows if m.role == "assistant"]
    short = [m for m in bot if (m.metadata_ or {}).get("requires_escalation")]
    parts = []
    if asked:
        parts.append(f"First asked: {_quote(asked[0].content)}.")
        if len(asked) > 1:
            parts.append(f"Latest: {_quote(asked[-1].content)}.")
    else:
        parts.append("The customer asked for a person before asking anything else.")
    count = f"{len(asked)} customer message{'s' if len(asked) != 1 else ''}"
    if bot:
        count += f"; {len(short)} of {len(bot)} bot answers fell short"
    parts.append(count + ".")
    return " ".join(parts)


def categorize(db: Session, session_id: str) -> str | None:
    """The help-centre section most cited by the bot in this conversation, if any."""
    counts: dict[str, int] = {}
    for msg in _recent(db, session_id):
        for source in msg.sources or []:
            section = _section(source)
            if section:
                counts[section] = counts.get(section, 0) + 1
    return max(counts, key=lambda k: counts[k]) if counts else None


def _section(source: dict) -> str | None:
    category = (source.get("metadata") or {}).get("category") or source.get("category")
    if isinstance(category, str) and category.strip():
        return category.strip()[:64]
    external = source.get("external_id")
    if isinstance(external, str) and "/" in external:
        return external.split("/", 1)[0][:64]
    return None
