"""Request forms without a main verb: "Agent!", "no bots please", "get in touch", "a real person".

Like the verb rules in `rules.py`, each is `(clause, i) -> Hit | None`, except
`bare_message_hit`, which judges a whole clause that is nothing but a person noun and filler.
"""

from __future__ import annotations

from worker.escalation import lexicon as lx
from worker.escalation.guards import Clause, Hit, conditional, evidence, negated, word_at
from worker.escalation.targets import Target, target_at
from worker.escalation.text import Token

_FALLBACK_BEFORE = frozenset(
    "like as than be being pretend if sound sounds seem seems or not no never without will"
    " would does do did is are was were".split()
)
_FALLBACK_AFTER = frozenset("was were said told did had is has answered replied".split())
_OPEN_CONTACT_PREV = frozenset("to i we please can could how just and or".split())
_OPEN_CONTACT_TAIL = frozenset("please now asap you guys soon today again".split())
_HANDOVER_VERBS = frozenset("transfer connect escalate forward".split())
_STOP_BOT = frozenset("stop skip bypass end disable".split())
_BARE_EXTRA = frozenset("from at of your ur or not no insteadof ratherthan".split())


def no_bot_rule(c: Clause, i: int) -> Hit | None:
    """'no bots please', 'not a robot', 'skip the bot'."""
    word = c[i].word
    if word not in {"no", "not"} | _STOP_BOT or any(t.word == "_" for t in c[:i]):
        return None  # after a masked "I'm a human," it describes, it does not refuse
    j = i + 1
    while word_at(c, j) in {"a", "an", "the", "this", "more", "any", "your"}:
        j += 1
    if word_at(c, j) not in lx.BOT_NOUNS:
        return None
    after = word_at(c, j + 1)
    if after in {"", "please", "thanks", "again", "anymore", ","} or after in lx.PERSON_NOUNS:
        return Hit("anti_bot", evidence(c, i, j + 1))
    return None


def open_contact_rule(c: Clause, i: int) -> Hit | None:
    """'get in touch', 'how do I contact you?': contact with nobody named means the company."""
    word = c[i].word
    if word == "touch":
        ok = word_at(c, i - 1) == "in" and word_at(c, i - 2) == "get"
    elif word in _HANDOVER_VERBS and word_at(c, i + 1) in {"me", "us"}:
        ok, i = True, i + 1  # "transfer me", "connect us please"
    else:
        ok = word == "contact" and (i == 0 or word_at(c, i - 1) in _OPEN_CONTACT_PREV)
    if not ok or negated(c, i) or conditional(c, i):
        return None
    if all(t.word in _OPEN_CONTACT_TAIL for t in c[i + 1 :]):
        return Hit("contact", evidence(c, i - 2, len(c)))
    return None


def escalate_rule(c: Clause, i: int) -> Hit | None:
    """'please escalate this' / 'can you escalate my case': handing over, nobody named."""
    if c[i].word != "escalate" or negated(c, i) or conditional(c, i):
        return None
    tail = c[i + 1 : i + 5]
    if len(tail) == len(c) - i - 1 and all(t.word in lx.ESCALATE_OBJECTS for t in tail):
        return Hit("escalate", evidence(c, i, len(c)))
    return None


def strong_noun_rule(c: Clause, i: int) -> Hit | None:
    """'a real person' / 'live agent' anywhere, unless compared, negated or reported."""
    found = target_at(c, i)
    if not found or not found.strong or found.kind not in {"person", "desk"}:
        return None
    if {t.word for t in c[max(0, found.start - 3) : found.start]} & _FALLBACK_BEFORE:
        return None
    after = word_at(c, found.end)
    if after in _FALLBACK_AFTER or after.endswith("ing"):
        return None
    return Hit("real_person", evidence(c, found.start, found.end))


def bare_message_hit(toks: list[Token]) -> Hit | None:
    """A message that is only a person noun and filler: 'Agent', 'human please', 'live agent'."""
    rest = [i for i, t in enumerate(toks) if t.word not in lx.FILLERS]
    if not rest or len(rest) > 6:
        return None
    found: Target | None = None
    for i in rest:
        word = toks[i].word
        here = target_at(toks, i)
        if here and here.kind in {"person", "desk"} and not negated(toks, here.start):
            found = found or here
        elif here and here.kind == "pronoun" and word_at(toks, i + 1) in lx.MODIFIERS:
            found = found or here  # "someone real please"
        elif here and here.kind in {"pronoun", "bot"}:
            continue
        elif word in lx.REQUEST_WORDS:
            found = found or Target("person", i, i + 1)
        elif word not in lx.MODIFIERS | lx.DESK_QUALIFIERS | lx.BOT_NOUNS | _BARE_EXTRA:
            return None
    if found is None:
        return None
    return Hit("bare", evidence(toks, found.start, found.end), toks[found.start].word == "callback")


_CHANNEL_HEADS = frozenset(
    "contact helpline hotline support care service centre center desk".split()
)
_CHANNEL_NOUNS = frozenset({"number", "no", "line"})
_NOT_OURS = frozenset("my our his her their update change edit correct".split())


def channel_rule(c: Clause, i: int) -> Hit | None:
    """Asking how to phone people: 'customer care number', 'a number I can call'."""
    if c[i].word not in _CHANNEL_NOUNS or {t.word for t in c[max(0, i - 4) : i]} & _NOT_OURS:
        return None
    head = word_at(c, i - 1)
    named = head in _CHANNEL_HEADS or (
        head == "phone" and word_at(c, i - 2) in _CHANNEL_HEADS | {"your", "ur"}
    )
    to_call = c[i].word == "number" and any(t.lemma == "call" for t in c[i + 1 : i + 4])
    if (named or to_call) and not negated(c, i - 1):
        return Hit("contact_channel", evidence(c, i - 2, i + 1), True)
    return None
