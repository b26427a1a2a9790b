"""Numbers for the operator's report, computed from the stored conversations.

Everything is read from the record (sessions, messages with the bot's confidence and abstention,
tickets, ratings, answer feedback), never from counters kept on the side, so a report of last
month is the same whether or not a process restarted meanwhile. Rows of the period are read
with the few columns needed and counted here: the same code on SQLite and PostgreSQL (JSON
metadata and time zones differ too much between them to push into SQL), and fast enough for
the volumes of one deployment (a month of 100k messages is read in well under a second).

"Per day" means a calendar day in the report's time zone (SUPPORT_TIMEZONE by default).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import exists, select
from sqlalchemy.orm import Session, aliased

from models.chat import LOW_CONFIDENCE_REASONS, ChatSession, Message, Rating, Ticket

MAX_DAYS = 366


@dataclass(frozen=True)
class Period:
    """Calendar days `start`..`end` (both included) in `zone`."""

    start: date
    end: date
    zone: ZoneInfo

    @property
    def utc_start(self) -> datetime:
        return datetime.combine(self.start, time(0), self.zone).astimezone(UTC)

    @property
    def utc_end(self) -> datetime:
        """Exclusive: midnight after the last day."""
        return datetime.combine(self.end + timedelta(days=1), time(0), self.zone).astimezone(UTC)

    def day(self, ts: datetime) -> str:
        """The local calendar day of a stored timestamp (SQLite hands back naive UTC)."""
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        return ts.astimezone(self.zone).date().isoformat()

    def days(self) -> list[str]:
        count = (self.end - self.start).days + 1
        return [(self.start + timedelta(days=n)).isoformat() for n in range(count)]

    def holds(self, column: Any) -> Any:
        """SQL condition: `column` falls inside the period."""
        return (column >= self.utc_start) & (column < self.utc_end)

    def as_dict(self) -> dict[str, str]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat(), "tz": self.zone.key}


def is_abstention(metadata: dict | None) -> bool:
    """The bot said it could not answer from the knowledge base."""
    meta = metadata or {}
    return bool(meta.get("requires_escalation")) and (
        meta.get("escalation_reason") in LOW_CONFIDENCE_REASONS
    )


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def summary(db: Session, period: Period) -> dict[str, Any]:
    """Conversations, deflection, abstentions, escalations, feedback and ratings of a period."""
    days: dict[str, dict[str, int]] = {d: dict.fromkeys(DAY_FIELDS, 0) for d in period.days()}
    conversations = _conversations(db, period)
    for day, bot_answered, person_asked in conversations:
        row = days[day]
        row["conversations"] += 1
        row["bot_only"] += int(bot_answered and not person_asked)
        row["escalated"] += int(person_asked)

    feedback = Counter()
    answers = db.execute(
        select(Message.created_at, Message.metadata_, Message.feedback_rating).where(
            Message.role == "assistant", period.holds(Message.created_at)
        )
    ).all()
    for created, meta, rating in answers:
        row = days[period.day(created)]
        row["answers"] += 1
        row["abstentions"] += int(is_abstention(meta))
        if rating in ("up", "down"):
            row[f"thumbs_{rating}"] += 1
            feedback[rating] += 1

    reasons: Counter[str] = Counter()
    tickets = db.execute(
        select(Ticket.created_at, Ticket.reasons).where(period.holds(Ticket.created_at))
    ).all()
    for created, ticket_reasons in tickets:
        days[period.day(created)]["tickets"] += 1
        reasons.update(set(ticket_reasons or []) or {"unspecified"})

    total = Counter()
    for row in days.values():
        total.update(row)
    return {
        "period": period.as_dict(),
        "totals": {
            **{k: total[k] for k in DAY_FIELDS},
            "deflection_rate": _share(total["bot_only"], total["conversations"]),
            "abstention_rate": _share(total["abstentions"], total["answers"]),
            "thumbs_up_rate": _share(feedback["up"], feedback["up"] + feedback["down"]),
        },
        "days": [{"date": d, **row} for d, row in days.items()],
        "escalation_reasons": [{"reason": r, "count": n} for r, n in reasons.most_common()],
        "ratings": _ratings(db, period),
    }


DAY_FIELDS = (
    "conversations",
    "bot_only",
    "escalated",
    "answers",
    "abstentions",
    "thumbs_up",
    "thumbs_down",
    "tickets",
)


def _conversations(db: Session, period: Period) -> list[tuple[str, bool, bool]]:
    """(local day, the bot answered, a person was asked for) per conversation started in the
    period; a session in which the customer never wrote is not a conversation."""
    said = exists().where(Message.session_id == ChatSession.id, Message.role == "user")
    answered = exists().where(Message.session_id == ChatSession.id, Message.role == "assistant")
    person = exists().where(Ticket.session_id == ChatSession.id)
    rows = db.execute(
        select(ChatSession.created_at, answered, person).where(
            period.holds(ChatSession.created_at), said
        )
    ).all()
    return [(period.day(created), bool(a), bool(p)) for created, a, p in rows]


def _ratings(db: Session, period: Period) -> list[dict[str, Any]]:
    """End-of-conversation scores (1–5) by who handled the conversation: bot or person."""
    scores: dict[str, Counter[int]] = defaultdict(Counter)
    for handled_by, score in db.execute(
        select(Rating.handled_by, Rating.score).where(period.holds(Rating.created_at))
    ):
        scores[handled_by][int(score)] += 1
    out = []
    for handled_by in ("bot", "person"):
        counts = scores.get(handled_by, Counter())
        n = sum(counts.values())
        out.append(
            {
                "handled_by": handled_by,
                "count": n,
                "average": round(sum(s * c for s, c in counts.items()) / n, 2) if n else None,
                "scores": {str(s): counts[s] for s in range(1, 6)},
            }
        )
    return out


_NOISE = re.compile(r"[\s\W_]+", re.UNICODE)


def _key(question: str) -> str:
    """Questions that differ only in case, spacing or punctuation are the same to-do item."""
    return _NOISE.sub(" ", question.casefold()).strip()


def to_do(db: Session, period: Period, limit: int) -> dict[str, Any]:
    """The knowledge base's to-do list: customer questions the bot abstained on or whose answer
    got a thumbs-down, most frequent first, then most recent."""
    question = aliased(Message)
    rows = db.execute(
        select(
            Message.id,
            Message.session_id,
            Message.content,
            Message.created_at,
            Message.metadata_,
            Message.feedback_rating,
            Message.feedback_reason,
            question.content,
        )
        .join(question, question.id == Message.reply_to_id)
        .where(Message.role == "assistant", period.holds(Message.created_at))
        .order_by(Message.created_at.desc())
    ).all()
    items: dict[str, dict[str, Any]] = {}
    for answer_id, session_id, answer, created, meta, rating, reason, asked in rows:
        abstained, disliked = is_abstention(meta), rating == "down"
        if not (abstained or disliked) or not (asked or "").strip():
            continue
        key = _key(asked)
        item = items.get(key)
        if item is None:  # rows come newest first: the first one seen is the latest
            item = items[key] = {
                "question": asked.strip(),
                "count": 0,
                "abstained": 0,
                "thumbs_down": 0,
                "reasons": [],
                "last_at": created,
                "session_id": session_id,
                "message_id": answer_id,
                "answer": answer[:300],
            }
        item["count"] += 1
        item["abstained"] += int(abstained)
        item["thumbs_down"] += int(disliked)
        if disliked and reason and reason not in item["reasons"] and len(item["reasons"]) < 5:
            item["reasons"].append(reason)
    ranked = sorted(items.values(), key=lambda i: (-i["count"], -_stamp(i["last_at"])))
    return {"period": period.as_dict(), "items": ranked[:limit], "total": len(ranked)}


def _stamp(ts: datetime) -> float:
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()
