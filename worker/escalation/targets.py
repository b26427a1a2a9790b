"""Who a clause is about: person noun phrases ("a real human", "customer care", "somebody").

The request rules ask "is there a person *here*?" at positions right after a verb; this module
answers it, and blanks out the phrases that only ask what the bot is ("are you a human?").
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from worker.escalation import lexicon as lx
from worker.escalation.text import Token

#: Placeholder for masked tokens: matches no rule and is no glue.
MASK = Token("_", "_")
_YOUR = frozenset({"your", "ur"})
_OWN_DESKS = frozenset({"team", "department", "office", "people"})
_PEOPLE_DESKS = frozenset({"helpline", "hotline", "helpdesk"})


@dataclass(frozen=True)
class Target:
    """A person-like noun phrase: kind, token span [start, end), and 'real/live' strength."""

    kind: str  # "person" | "desk" | "desk_bare" | "pronoun" | "bot" | "you"
    start: int
    end: int
    strong: bool = False


def _word(toks: list[Token], i: int) -> str:
    """The word at i, or '' outside the clause (so look-arounds need no bounds checks)."""
    return toks[i].word if 0 <= i < len(toks) else ""


def _person(toks: list[Token], i: int) -> Target | None:
    """A staff noun, unless a qualifier makes it software or someone else's."""
    prev = _word(toks, i - 1)
    if toks[i].lemma in {"assistant", "agent"} and prev in lx.SOFTWARE:
        return Target("bot", i, i + 1)
    start = i
    while start > 0 and toks[start - 1].word in lx.MODIFIERS | lx.DESK_QUALIFIERS:
        start -= 1
    if prev in lx.THIRD_PARTY or _word(toks, start - 1) in lx.THIRD_PARTY:
        return None  # "my travel agent", "my account manager"
    strong = any(t.word in lx.MODIFIERS for t in toks[start:i])
    return Target("person", start, i + 1, strong)


def _desk(toks: list[Token], i: int) -> Target:
    """'customer service' is people; bare 'support' only counts after 'contact'-like verbs."""
    word, prev = toks[i].word, _word(toks, i - 1)
    if word in _PEOPLE_DESKS:
        return Target("desk", i, i + 1)
    help_pages = prev == "help" and word in {"centre", "center"}
    if prev in lx.DESK_QUALIFIERS and prev != word and not help_pages:
        return Target("desk", i - 1, i + 1, strong=prev in lx.MODIFIERS)
    if prev in _YOUR and word in _OWN_DESKS:
        return Target("desk", i - 1, i + 1)
    return Target("desk_bare", i, i + 1)


def target_at(toks: list[Token], i: int) -> Target | None:
    """The person-like phrase whose head noun is token i, if any."""
    word = toks[i].word
    if _word(toks, i + 1) == "'s" or _word(toks, i + 1) in lx.THING_AFTER:
        return None  # "a person's signature", "a manager account": about a thing
    if word in lx.PERSON_NOUNS:
        nxt = _word(toks, i + 1)
        if word in lx.MODIFIERS and (nxt in lx.PERSON_NOUNS or nxt in lx.DESK_NOUNS):
            return None  # "human agent": the head is the next word
        return _person(toks, i)
    if word in lx.DESK_NOUNS:
        return _desk(toks, i)
    if word == "chat" and _word(toks, i - 1) == "live":  # "live chat" means a person
        return Target("desk", i - 1, i + 1, strong=True)
    if word in lx.PRONOUNS:
        return Target("pronoun", i, i + 1)
    if word in lx.BOT_NOUNS:
        return Target("bot", i, i + 1)
    if word == "you":
        return Target("you", i, i + 1)
    return None


def _passable(toks: list[Token], j: int, skipped: bool) -> bool:
    """Glue and qualifiers may sit before the noun; so may one company name ('a Rasa agent')."""
    word = toks[j].word
    if word in lx.GLUE or word in lx.MODIFIERS or word in lx.DESK_QUALIFIERS:
        return True
    blocked = lx.THIRD_PARTY | lx.SOFTWARE | lx.BOT_NOUNS
    return (
        not skipped
        and word.isalpha()
        and word not in blocked
        and _word(toks, j + 1) in (lx.PERSON_NOUNS)
    )


def find_target(
    toks: list[Token], start: int, kinds: Collection[str], max_gap: int = 6
) -> Target | None:
    """The first target of an accepted kind after `start`, across glue words only."""
    skipped = False
    for j in range(start, min(len(toks), start + max_gap + 1)):
        found = target_at(toks, j)
        if found and found.kind in kinds:
            return found
        if not _passable(toks, j, skipped):
            return None
        skipped = skipped or toks[j].word not in lx.GLUE | lx.MODIFIERS | lx.DESK_QUALIFIERS
    return None


def _nature_end(toks: list[Token], k: int) -> int | None:
    """Last index of 'a human or a bot' after a copula opener, if it names a being."""
    last = None
    for j in range(k, min(len(toks), k + 8)):
        word = toks[j].word
        found = target_at(toks, j)
        if found and found.kind != "you":
            last = j
        elif word not in lx.NATURE_GLUE | lx.MODIFIERS | lx.DESK_QUALIFIERS:
            break
    return last


def mask_nature(toks: list[Token]) -> list[Token]:
    """Blank out 'are you a human' / 'am I talking to a bot': questions, not requests."""
    out = list(toks)
    for j in range(len(toks) - 1):
        if (toks[j].word, toks[j + 1].word) in lx.NATURE_OPENERS:
            end = _nature_end(toks, j + 2)
            if end is not None:
                out[j : end + 1] = [MASK] * (end + 1 - j)
    return out
