"""Escalation policy: hand a conversation to a person, offer one, or let the bot carry on.

Pure functions, independent of any answer engine (no database, Redis, Flask or haystack):

- `before_answer(text, requested=..., prior=...)` before the engine runs;
- `after_answer(decision, reply_low_confidence=..., prior=...)` once it has replied;
- `asks_for_person(text)`, the explicit-request detector alone;
- `negativity(text)`, VADER's compound score.
"""

from worker.escalation.policy import (
    ESCALATE,
    NONE,
    OFFER,
    Decision,
    PriorTurn,
    after_answer,
    before_answer,
)
from worker.escalation.request import Detection, asks_for_person
from worker.escalation.sentiment import NEGATIVE_THRESHOLD, negativity

__all__ = [
    "ESCALATE",
    "NEGATIVE_THRESHOLD",
    "NONE",
    "OFFER",
    "Decision",
    "Detection",
    "PriorTurn",
    "after_answer",
    "asks_for_person",
    "before_answer",
    "negativity",
]
