"""Shared guards of the request rules: negation scope, reports, hypotheses, process questions.

A phrase that looks like a request is not one when it is negated ("no need for a human"),
reported ("I was talking to an agent"), hypothetical ("if I talk to an agent...") or a question
about the process ("do I need to talk to an agent to cancel?").
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.escalation import lexicon as lx
from worker.escalation.text import Token

Clause = list[Token]
_REPORT_PASS = frozenset("i you we he she they just still really actually already".split())


@dataclass(frozen=True)
class Hit:
    """One matched construction: which rule, the words it matched, a call-back or not."""

    rule: str
    evidence: str
    callback: bool = False


def word_at(c: Clause, i: int) -> str:
    """The word at i, or '' outside the clause."""
    return c[i].word if 0 <= i < len(c) else ""


def evidence(c: Clause, start: int, end: int) -> str:
    """The matched words as one string."""
    return " ".join(t.word for t in c[max(0, start) : end])


def negated(c: Clause, i: int) -> bool:
    """'do not (want to) talk', 'no need', 'without talking'; 'can not' is inability, not no."""
    for j in range(i - 1, max(-1, i - 7), -1):
        word = c[j].word
        if word in lx.NEGATORS:
            return not (word == "not" and word_at(c, j - 1) in {"can", "could"})
        if word not in lx.NEGATION_PASS:
            return False
    return False


def reported(c: Clause, i: int) -> bool:
    """A gerund after 'was/am/is': 'I was talking to an agent' reports, it does not ask."""
    if not c[i].word.endswith("ing"):
        return False
    for j in range(i - 1, max(-1, i - 4), -1):
        if c[j].word in lx.PROGRESSIVE_AUX:
            return True
        if c[j].word not in _REPORT_PASS:
            return False
    return False


def conditional(c: Clause, i: int) -> bool:
    """'if I talk to an agent, ...' is a hypothesis; 'I was told to contact...' a report."""
    before = {t.word for t in c[max(0, i - 4) : i]}
    return "if" in {t.word for t in c[max(0, i - 3) : i]} or bool(before & lx.REPORTING)


def necessity_question(c: Clause) -> bool:
    """'do I need to / have to talk to an agent?' asks about a process, not for a person."""
    words = [t.word for t in c if t.word not in {"so", "and", "also", "ok", "okay", "hi", ","}]
    return (
        len(words) > 4
        and words[0] in lx.NECESSITY_OPENERS
        and words[1] in {"i", "we"}
        and words[2] in {"need", "have", "got"}
        and words[3] == "to"
    )
