"""Does a message ask, now, to be put in touch with a person? Clause patterns over lemmas.

A request is a *construction*, not a keyword: a contact verb reaching a person ("put me through
to a live agent"), a wish for one ("I need a real human"), a question whether one exists ("is
there anyone I can talk to?"), a call-back ("can someone ring me back"), refusing the bot ("I
don't want to talk to a machine"), or a message that is nothing but a person noun ("Agent!").
Guards cancel what only looks like one: questions about the bot's nature, negation ("no need
for a human"), reports ("I was talking to an agent"), third parties ("my travel agent").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

from worker.escalation import forms, rules
from worker.escalation.forms import bare_message_hit
from worker.escalation.guards import Clause, Hit, necessity_question
from worker.escalation.targets import mask_nature
from worker.escalation.text import clauses


@dataclass(frozen=True)
class Detection:
    """The explicit-request verdict; `evidence` is the matched phrase, `rule` the pattern."""

    matched: bool
    callback: bool = False
    evidence: str | None = None
    rule: str | None = None

    def to_dict(self) -> dict:
        """JSON-ready form (stored with the decision's signals)."""
        return asdict(self)


NO_REQUEST = Detection(False)

#: (name, rule) in the order a rule's name is preferred as the reported evidence.
RULES: tuple[tuple[str, Callable[[Clause, int], Hit | None]], ...] = (
    ("callback", rules.callback_rule),
    ("contact", rules.contact_rule),
    ("desire", rules.desire_rule),
    ("availability", rules.availability_rule),
    ("named_person", rules.named_rule),
    ("person_subject", rules.person_subject_rule),
    ("contact_channel", forms.channel_rule),
    ("anti_bot", forms.no_bot_rule),
    ("open_contact", forms.open_contact_rule),
    ("escalate", forms.escalate_rule),
    ("real_person", forms.strong_noun_rule),
)
_QUESTION_SAFE_RULES = frozenset({"callback", "availability"})


def _clause_hits(clause: list) -> Iterator[Hit]:
    """Every rule at every position of one (masked) clause."""
    necessity = necessity_question(clause)
    for i in range(len(clause)):
        for name, rule in RULES:
            if necessity and name not in _QUESTION_SAFE_RULES:
                continue
            hit = rule(clause, i)
            if hit:
                yield hit


def asks_for_person(text: str) -> Detection:
    """Detect an explicit request for a human (or a call-back) in one customer message."""
    if not text or not text.strip():
        return NO_REQUEST
    parts = [mask_nature(c) for c in clauses(text)]
    hits = [hit for part in parts for hit in _clause_hits(part)]
    hits += [hit for part in parts if (hit := bare_message_hit(part))]
    if not hits:
        return NO_REQUEST
    return Detection(True, any(h.callback for h in hits), hits[0].evidence, hits[0].rule)
