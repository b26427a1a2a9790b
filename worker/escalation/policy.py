"""The escalation policy: for each customer message, hand over, offer a person, or carry on.

`before_answer` runs before the engine: a pressed "Talk to a person" button or an explicit
request escalates; strong negativity or a repeated question offers. `after_answer` runs once
the engine has replied: two unsure replies in a row offer a person. Pure functions: the caller
passes the turns since the bot last (re)gained the conversation and stores `to_dict()`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from worker.escalation.repeat import find_repeat
from worker.escalation.request import asks_for_person
from worker.escalation.sentiment import NEGATIVE_THRESHOLD, frustration, negativity, urgency

ESCALATE, OFFER, NONE = "escalate", "offer", "none"
PRIORITIES: tuple[str, ...] = ("low", "normal", "high", "urgent")
_ACTION_RANK = {NONE: 0, OFFER: 1, ESCALATE: 2}


@dataclass(frozen=True)
class PriorTurn:
    """A turn since the bot last (re)gained the conversation, oldest first."""

    role: str  # "user" | "assistant"
    content: str
    low_confidence: bool = False  # assistant turns: the engine abstained or was unsure


@dataclass
class Decision:
    """What to do about one customer message, why, how urgently, and the evidence."""

    action: str  # "escalate" | "offer" | "none"
    reasons: list[str]
    priority: str = "normal"  # "low" | "normal" | "high" | "urgent"
    signals: dict = field(default_factory=dict)

    @property
    def escalate(self) -> bool:
        """A person must take over now."""
        return self.action == ESCALATE

    @property
    def offer(self) -> bool:
        """A person should be offered (the customer decides)."""
        return self.action == OFFER

    def to_dict(self) -> dict:
        """JSON-ready form, stored on the message."""
        return {
            "action": self.action,
            "reasons": list(self.reasons),
            "priority": self.priority,
            "signals": dict(self.signals),
        }


def _raise(priority: str, steps: int = 1) -> str:
    """The priority `steps` levels higher, capped at 'urgent'."""
    return PRIORITIES[min(PRIORITIES.index(priority) + steps, len(PRIORITIES) - 1)]


def _sentiment_signals(text: str) -> dict:
    """Compound score, frustration phrase and urgency word of one message."""
    return {
        "sentiment_compound": round(negativity(text), 4),
        "sentiment_threshold": NEGATIVE_THRESHOLD,
        "frustration": frustration(text),
        "urgency": urgency(text),
    }


def _earlier_questions(prior: Sequence[PriorTurn]) -> list[str]:
    """The customer's earlier messages in this stretch of bot conversation."""
    return [turn.content for turn in prior if turn.role == "user" and turn.content]


def before_answer(
    text: str, *, requested: bool = False, prior: Sequence[PriorTurn] = ()
) -> Decision:
    """Decide before any answer is generated (a pressed button wins without reading text)."""
    if requested:
        return Decision(ESCALATE, ["customer_choice"], "normal", {"requested": True})
    signals = _sentiment_signals(text)
    reasons: list[str] = []
    detection = asks_for_person(text)
    if detection.matched:
        reasons.append("explicit_request")
        if detection.callback:
            reasons.append("callback_request")
        signals.update(request_rule=detection.rule, matched_phrase=detection.evidence)
    angry = signals["sentiment_compound"] <= NEGATIVE_THRESHOLD or bool(signals["frustration"])
    if angry:
        reasons.append("negative_sentiment")
    repeat = find_repeat(text, _earlier_questions(prior))
    if repeat:
        reasons.append("repeated_question")
        signals.update(similarity=repeat.similarity, repeats=repeat.earlier)
    action = ESCALATE if detection.matched else OFFER if reasons else NONE
    priority = "high" if angry else "normal"
    if signals["urgency"] and action != NONE:
        priority = _raise(priority)
    return Decision(action, reasons, priority, signals)


def _last_assistant(prior: Sequence[PriorTurn]) -> PriorTurn | None:
    """The bot's most recent reply before this one."""
    return next((turn for turn in reversed(prior) if turn.role == "assistant"), None)


def after_answer(
    decision: Decision, *, reply_low_confidence: bool, prior: Sequence[PriorTurn] = ()
) -> Decision:
    """Add 'low_confidence_twice' after two unsure replies in a row; never lowers an action."""
    result = dataclasses.replace(
        decision, reasons=list(decision.reasons), signals=dict(decision.signals)
    )
    result.signals["reply_low_confidence"] = reply_low_confidence
    previous = _last_assistant(prior)
    if not (reply_low_confidence and previous is not None and previous.low_confidence):
        return result
    if "low_confidence_twice" not in result.reasons:
        result.reasons.append("low_confidence_twice")
    if _ACTION_RANK[result.action] < _ACTION_RANK[OFFER]:
        result.action = OFFER
    return result
