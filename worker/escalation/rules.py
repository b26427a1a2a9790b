"""The clause patterns of the request detector; each looks at one position of one clause.

Every rule is `(clause, i) -> Hit | None`: a verb (talk, want, is there, call) and the person
it reaches. Shared guards (negation, reports, conditionals) live in `guards.py` so each rule
reads as one sentence of grammar; verbless forms ("Agent!", "no bots") are in `forms.py`.
"""

from __future__ import annotations

from worker.escalation import lexicon as lx
from worker.escalation.guards import (
    Clause,
    Hit,
    conditional,
    evidence,
    negated,
    reported,
    word_at,
)
from worker.escalation.targets import Target, find_target, target_at

_CORE_CONTACT = frozenset(
    "talk speak chat connect transfer contact call escalate forward hand".split()
)
_SUBJECTS = frozenset("i we you they he she it".split()) | set(lx.PRONOUNS)
_ANTI_BOT_CUES = frozenset("stop tired sick hate enough done quit fed".split())
_AVAILABLE = frozenset("available around online there free here".split())
_AVAILABLE_TAIL = frozenset(
    "now right to talk chat speak help assist me please for who i can".split()
)
_NOT_A_NAME = (
    frozenset("you me him her them us it this that who what the a an".split())
    | lx.GLUE
    | lx.FILLERS
)


def _contact_kinds(lemma: str) -> set[str]:
    """What a verb may reach: 'contact support' and 'contact you' work; 'see you' does not."""
    kinds = {"person", "desk", "bot"}
    if lemma in _CORE_CONTACT | {"ask"}:
        kinds.add("pronoun")
    if lemma in _CORE_CONTACT:
        kinds.add("desk_bare")
    if lemma in {"contact", "call"}:
        kinds.add("you")
    return kinds


def _is_contact_verb(c: Clause, i: int) -> str | None:
    """The contact lemma at i ('in touch' is 'contact'; 'a call' is a noun), or None."""
    word, prev = c[i].word, word_at(c, i - 1)
    if word == "touch" and prev == "in":
        return "contact"
    if word in lx.PASSIVE_CONTACT and prev in {"be", "get", "getting"}:
        return lx.PASSIVE_CONTACT[word]
    if prev in {"a", "an", "the", "my", "your", "this", "that", "our"}:
        return None
    if word_at(c, i + 1) in {"centre", "center"}:  # "call centre" is a noun
        return None
    return lx.CONTACT_VERBS.get(word)


def _anti_bot(c: Clause, i: int, t: Target, rule: str) -> Hit | None:
    """Refusing the bot is asking for a person: 'I don't want to talk to a machine'."""
    cue = negated(c, i) or any(tok.word in _ANTI_BOT_CUES for tok in c[max(0, i - 4) : i])
    return Hit("anti_bot", evidence(c, i - 3, t.end)) if cue else None


def contact_rule(c: Clause, i: int) -> Hit | None:
    """A contact verb reaching a person: 'put me through to a live agent'."""
    lemma = _is_contact_verb(c, i)
    if lemma is None or reported(c, i) or conditional(c, i):
        return None
    found = find_target(c, i + 1, _contact_kinds(lemma))
    if found is None:
        return None
    if found.kind == "bot":
        return _anti_bot(c, i, found, "contact")
    if negated(c, i):
        return None
    phone = lemma in lx.PHONE_VERBS or any(t.word == "call" for t in c[found.start : found.end])
    return Hit("contact", evidence(c, i, found.end), phone)


def _modal_subject(c: Clause, i: int) -> bool:
    """'can I have' / 'could we have' (but not 'I have a person who...')."""
    return word_at(c, i - 2) in {"can", "could", "may"} and word_at(c, i - 1) in {"i", "we"}


def desire_rule(c: Clause, i: int) -> Hit | None:
    """Wanting a person: 'I need a real human', 'give me an agent', 'can I have a rep'."""
    word = c[i].word
    if word not in lx.DESIRE_VERBS or (word == "have" and not _modal_subject(c, i)):
        return None
    if word in {"like", "rather"} and word_at(c, i - 1) != "would":
        return None
    found = find_target(c, i + 1, {"person", "desk", "bot", "pronoun"})
    if found is None:
        return None
    if found.kind == "pronoun" and word_at(c, found.end) not in _WHO_FOLLOWS:
        return None  # "I need someone to sign for it" is not about us
    if found.kind == "bot":
        return _anti_bot(c, i, found, "desire")
    if negated(c, i) or conditional(c, i):
        return None
    return Hit("desire", evidence(c, i, found.end))


def _availability_start(c: Clause, i: int) -> tuple[int, bool] | None:
    """Where 'is there' / 'do you have' ends, and whether the noun must be 'real/live'."""
    word = c[i].word
    if word == "there" and word_at(c, i - 1) in {"is", "are"}:
        return i + 1, False
    if word in {"have", "got"} and word_at(c, i - 1) == "you":
        if word_at(c, i - 2) in {"do", "does", "have", "did"}:
            return i + 1, True
    return None


def availability_rule(c: Clause, i: int) -> Hit | None:
    """Asking whether a person exists: 'is there a real person?', 'anyone available?'."""
    here = target_at(c, i)
    if here and here.kind in {"person", "desk", "pronoun"} and word_at(c, i + 1) in _AVAILABLE:
        if all(t.word in _AVAILABLE_TAIL for t in c[i + 2 :]):  # not "...available on Sundays"
            return Hit("availability", evidence(c, here.start, i + 2))
    start = _availability_start(c, i)
    if start is None:
        return None
    found = find_target(c, start[0], {"person", "desk", "pronoun"})
    if found is None:
        return None
    follows = {t.lemma for t in c[found.end : found.end + 4]} & set(lx.CONTACT_VERBS.values())
    if start[1] and not (found.strong or follows or word_at(c, found.end) in _AVAILABLE):
        return None
    return Hit("availability", evidence(c, i - 1, found.end))


_WHO_FOLLOWS = frozenset("who from real human live else in at".split())
_MODALS = frozenset({"can", "could", "will", "would", "may"})
_STAFF_ACTIONS = frozenset(
    "help assist call contact phone ring look check review handle answer reach take sort fix"
    " deal explain get respond reply".split()
)


def person_subject_rule(c: Clause, i: int) -> Hit | None:
    """A person as the one to act: 'can a human help me?', 'could an agent look at this'."""
    if c[i].word not in _MODALS or negated(c, i):
        return None
    found = find_target(c, i + 1, {"person", "desk"}, max_gap=3)
    if found is None or word_at(c, found.end) not in _STAFF_ACTIONS:
        return None
    return Hit("person_subject", evidence(c, i, found.end + 1))


def _callback_subject_ok(c: Clause, i: int) -> bool:
    """'can you / someone call me back' asks; 'I will call back', 'they call me', 'does the
    courier call me', 'call me crazy' do not."""
    if word_at(c, i + 2) in lx.CALL_IDIOMS:
        return False
    for j in range(i - 1, max(-1, i - 4), -1):
        word = c[j].word
        if word in lx.EXTERNAL_CALLERS:
            return False
        if word in _SUBJECTS or word in lx.PERSON_NOUNS:
            return word not in {"i", "we", "they", "he", "she", "it"}
    return True


def _call_noun(c: Clause, i: int) -> bool:
    """'request a callback', 'give me a call', 'need a call from your rep'."""
    if c[i].word not in lx.CALL_NOUNS:
        return False
    for j in range(i - 1, max(-1, i - 5), -1):
        word = c[j].word
        if word in lx.CALL_ARRANGERS:
            return not negated(c, j) and (word != "have" or _modal_subject(c, j))
        if word not in {"a", "an", "the", "me", "us", "phone", "for", "quick", "to", "on"}:
            return False
    return False


def callback_rule(c: Clause, i: int) -> Hit | None:
    """A call-back: 'call me back', 'can someone phone me', 'schedule a callback'."""
    word, nxt = c[i].word, word_at(c, i + 1)
    verb = c[i].lemma in {"call", "contact"} and word not in {"reach", "reaching"}
    if word == "callback" and not negated(c, i):
        return Hit("callback", "callback", True)
    if _call_noun(c, i):
        return Hit("callback", evidence(c, i - 2, i + 2), True)
    if not verb or negated(c, i) or any(t.word in _ANTI_BOT_CUES | {"keep", "why"} for t in c[:i]):
        return None
    addressed = (nxt == "me" or (nxt == "us" and word != "contact")) and not (
        i + 2 < len(c) and c[i + 2].cap
    )
    back = nxt == "back" and word in {"call", "phone", "ring"}
    if (addressed or back) and _callback_subject_ok(c, i):
        return Hit("callback", evidence(c, i, i + 3), True)
    return None


def named_rule(c: Clause, i: int) -> Hit | None:
    """A named person: 'could I talk to Sarah?' (a capitalised word that is no other token)."""
    if c[i].lemma not in {"talk", "speak", "chat", "ask"} or word_at(c, i + 1) not in {
        "to",
        "with",
        "for",
    }:
        return None
    if i + 2 >= len(c) or negated(c, i) or reported(c, i) or conditional(c, i):
        return None
    name = c[i + 2]
    if name.cap and name.word.isalpha() and name.word not in _NOT_A_NAME | lx.BOT_NOUNS:
        return Hit("named_person", evidence(c, i, i + 3))
    return None
