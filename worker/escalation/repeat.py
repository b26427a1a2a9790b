"""Has the customer asked this already? Fuzzy comparison of content words with earlier turns.

Asking the same thing twice means the first answer did not land. Texts are compared on their
content words (stop words and courtesy dropped, contractions expanded, stemmed) with rapidfuzz's
token_set_ratio, which ignores word order and extra politeness ("again", "please"). Short texts
("refund?") would match almost anything that way, so they count only when identical.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import Stemmer
from rapidfuzz import fuzz

from worker.escalation.text import tokens

#: token_set_ratio (0-100) at or above which two questions are the same question.
SIMILARITY_THRESHOLD = 85.0
#: Below this many content words a text must match exactly.
MIN_CONTENT_WORDS = 3
#: token_sort_ratio floor: stops "refund" + a long unrelated story matching as a subset.
MIN_SORT_RATIO = 60.0

STOP_WORDS: frozenset[str] = frozenset(
    "a an the i me my we our you your it its is am are was were be been do does did to of in"
    " on at for with from by and or but so if then than that this these those there here what"
    " which who whom how when where why can could would should will shall may might must have"
    " has had please pls thanks thank again still just ok okay yes no yeah hi hello hey not"
    " any some about tell know want need like get let up out asked ask question yet already"
    " now".split()
)
_STEMMER = Stemmer.Stemmer("english")


@dataclass(frozen=True)
class Repeat:
    """The earlier turn this message repeats, and how similar they are (0-100)."""

    earlier: str
    similarity: float


@lru_cache(maxsize=2048)
def content(text: str) -> str:
    """The message's content words, normalised, stemmed ("ordered" = "ordering"), sorted.

    Cached: every answer compares the new message with each earlier one of the conversation,
    so without it the same earlier turns were tokenised again for every answer (and the new
    message once per earlier turn)."""
    words = [t.word for t in tokens(text) if t.word.isalnum() and t.word not in STOP_WORDS]
    return " ".join(sorted(set(_STEMMER.stemWords(words))))


def similarity(a: str, b: str) -> float:
    """0-100 similarity of two messages' content words (0 when either is too short to judge)."""
    ca, cb = content(a), content(b)
    if not ca or not cb:
        return 0.0
    if min(len(ca.split()), len(cb.split())) < MIN_CONTENT_WORDS:
        return 100.0 if ca == cb else 0.0
    if fuzz.token_sort_ratio(ca, cb) < MIN_SORT_RATIO:
        return 0.0
    return float(fuzz.token_set_ratio(ca, cb))


def find_repeat(text: str, earlier_user_texts: Iterable[str]) -> Repeat | None:
    """The most similar earlier question at or above the threshold, if any."""
    best: Repeat | None = None
    for earlier in earlier_user_texts:
        score = similarity(text, earlier)
        if score >= SIMILARITY_THRESHOLD and (best is None or score > best.similarity):
            best = Repeat(earlier, score)
    return best
