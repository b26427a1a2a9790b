"""How upset a message is: VADER's compound score, bot-directed frustration, urgency words.

VADER scores general sentiment, so "I am sad" or "payment error" come out negative while "you
can't help me" or "you aren't helpful" barely move it. The frustration cues below catch the
fed-up-with-the-bot class VADER misses; urgency words only ever raise a priority.
"""

from __future__ import annotations

import re
from functools import lru_cache

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from worker.escalation.text import tokens

#: Compound score at or below which a message counts as strongly negative. One mild word
#: ("error", "problem", "sad") scores -0.40 to -0.48 on its own; -0.5 needs more than that.
NEGATIVE_THRESHOLD = -0.5

_FAIL_SUBJECT = r"(?:you|this|it|the bot|this bot|this chat|that)"
_FAIL_VERB = r"(?:help|helping|helpful|understand|understanding|work|working|useful|get it)"

#: Phrases of frustration with the service itself, on normalised words (one regex each).
FRUSTRATION_PATTERNS: tuple[str, ...] = (
    rf"\b{_FAIL_SUBJECT} (?:are|is|do|does|can|could|will) not (?:\w+ )?{_FAIL_VERB}\b",
    r"\b(?:not|never) (?:very |at all |really )?(?:helpful|useful)\b",
    r"\b(?:unhelpful|useless|pointless|pathetic|ridiculous|rubbish|garbage|worthless)\b",
    r"\b(?:waste of (?:my )?time|going in circles|leading (?:to )?nowhere|leading to nothing)\b",
    r"\b(?:fed up|sick of|tired of|had enough|done with)\b",
    r"\b(?:worst|terrible|horrible|awful|poor|bad|lousy) (?:customer )?(?:service|support)\b",
    r"\b(?:annoying|frustrat\w+|infuriating|unacceptable|rude|furious|pissed)\b",
    r"\b(?:fuck\w*|shit\w*|damn|goddamn|bloody|crap\w*|wtf|ffs|bullshit)\b",
    r"\b(?:stupid|dumb|idiot\w*|moron\w*)\b|\b(?:is|are|what) a joke\b",
)
_FRUSTRATION = re.compile("|".join(FRUSTRATION_PATTERNS))

#: Words that make any escalation or offer more urgent (they do not trigger one).
URGENCY_PATTERNS: tuple[str, ...] = (
    r"\b(?:urgent\w*|emergency|asap|immediately|critical)\b",
    r"\bright (?:now|away)\b",
    r"\b(?:stolen|hacked|fraudulent|unauthori[sz]ed|locked out|scammed)\b",
)
_URGENCY = re.compile("|".join(URGENCY_PATTERNS))


@lru_cache(maxsize=1)
def _analyser() -> SentimentIntensityAnalyzer:
    """VADER loads its lexicon from disk: build it once per process."""
    return SentimentIntensityAnalyzer()


def preload() -> None:
    """Load the lexicon now (the worker's parent does, before its pool forks)."""
    _analyser()


def negativity(text: str) -> float:
    """VADER compound score of the message, -1 (most negative) to 1."""
    if not text or not text.strip():
        return 0.0
    return float(_analyser().polarity_scores(text)["compound"])


def _plain(text: str) -> str:
    """Normalised words joined by spaces, so the patterns see "do not", never "don't"."""
    return " ".join(t.word for t in tokens(text) if t.word.isalnum() or "'" in t.word)


def frustration(text: str) -> str | None:
    """The first phrase of frustration with the bot or service, if any."""
    match = _FRUSTRATION.search(_plain(text))
    return match.group(0) if match else None


def urgency(text: str) -> str | None:
    """The first urgency word, if any."""
    match = _URGENCY.search(_plain(text))
    return match.group(0) if match else None
