"""What kind of answer a question wants, and whether a sentence has that kind of content.

Word overlap alone picks the sentence that *mentions* the question's topic most, which is often an
introduction ("Here's how long it takes") rather than the fact. Customers' question words say
what the fact looks like: "how long" wants a duration, "how much" an amount, "how do I" steps.
These patterns are about English question and answer forms only, never about one help centre's
topics, so they carry over to any knowledge base.
"""

from __future__ import annotations

import re
from enum import StrEnum
from functools import lru_cache

from worker.agent.analysis import ANALYZER, form_related_stems, related_stems


class Ask(StrEnum):
    """The shape of answer a question expects."""

    DURATION = "duration"  # how long, when, until when, does it expire
    AMOUNT = "amount"  # how much, cost, price, fee
    COUNT = "count"  # how many (not of a time unit)
    STEPS = "steps"  # how do I, how to
    YESNO = "yesno"  # can I, do you, is there
    OTHER = "other"  # what, which, why, and everything else


_LEAD = r"^\W*(?:(?:so|and|but|also|ok|okay|hi|hello|hey|um|well|please|quick question)\W+)*"
_TIME_UNIT = (
    r"(?:seconds?|secs?|minutes?|mins?|hours?|hrs?|days?|nights?|weeks?|wks?|months?|years?|yrs?)"
)
_NUMBER = (
    r"(?:\d+(?:[.,]\d+)?(?:\s*(?:[–—-]|to)\s*\d+(?:[.,]\d+)?)?|one|two|three|four|five|six|"
    r"seven|eight|nine|ten|eleven|twelve|fourteen|fifteen|twenty|thirty|a few|several|a couple of)"
)
_CURRENCY = r"(?:[€$£¥₹]|\b(?:eur|euros?|usd|dollars?|gbp|pounds?|chf|francs?|cents?|kr)\b)"

_QUESTION: tuple[tuple[Ask, re.Pattern[str]], ...] = (
    (Ask.AMOUNT, re.compile(_LEAD + r"how much\b")),
    # "what happens if I don't pay the import charges?" asks for a consequence: its nouns
    # ("charges", "fee") and negations are the situation, not a request for an amount or a fix
    (
        Ask.OTHER,
        re.compile(_LEAD + r"what (?:happens|will happen|happened) (?:if|when|after|to)\b"),
    ),
    (Ask.DURATION, re.compile(rf"\bhow many (?:(?:business|working|calendar) )?{_TIME_UNIT}\b")),
    (Ask.COUNT, re.compile(r"\bhow many\b")),
    (
        Ask.DURATION,
        re.compile(
            r"\bhow (?:long|soon|quickly|fast|late|early|often)\b|\bwhen (?:will|do|does|did|is|"
            r"are|can|should|would|was|were)\b|\b(?:what time|which day|what day|by when|till "
            r"when|until when|deadline|expires?|expired|expiry|expiration|valid for|validity|"
            r"time limit|time frame|timeframe|window)\b|" + _LEAD + r"when\b"
        ),
    ),
    (
        Ask.AMOUNT,
        re.compile(
            r"\bhow much\b|\b(?:cost|costs|costing|price|prices|pricing|priced|fee|fees|charge|"
            r"charges|expensive|cheap|cheaper|tariff|rates?|amount|value)\b"
        ),
    ),
    (
        Ask.STEPS,
        re.compile(
            _LEAD + r"(?:how (?:do|can|should|would|to)\b|what (?:are|is) the steps\b|"
            r"steps? (?:to|for)\b|walk me through\b)|\bhow (?:do|can) (?:i|we)\b|"
            # "what do I do now?" asks for a course of action, not a yes or a no
            r"\bwhat (?:do|can|should|shall|must) (?:i|we) do\b|\bwhat (?:now|next)\b"
        ),
    ),
    (
        Ask.YESNO,
        re.compile(
            _LEAD + r"(?:can|could|do|does|did|is|are|was|will|would|should|may|am|have|has|"
            r"isnt|arent|dont|doesnt|cant|wont)\b|\b(?:can|could|may|do|does|will|would|is|are) "
            r"(?:i|we|you|it|they|there|this|that)\b"
        ),
    ),
    (
        # a reported problem ("headphones wont connect", "card keeps getting declined") wants a fix
        Ask.STEPS,
        re.compile(
            r"\b(?:wont|doesnt|dont|cant|cannot|isnt|arent|didnt|hasnt|havent|not working|"
            r"stopped|keeps|kept|fails?|failed|broken|broke|error|crash(?:es|ed|ing)?|"
            r"freez(?:es|ing)|frozen|stuck|dead|slow)\b"
        ),
    ),
)

WEAK = 0.5
FORM_WEIGHT = 0.5  # "how much" also looks for cost/price words, at half a topic word
YESNO_STRENGTH = 0.25
# (strong, weak) evidence that a sentence holds the kind of fact a question type asks for.
_ANSWER: dict[Ask, tuple[re.Pattern[str], re.Pattern[str] | None]] = {
    Ask.DURATION: (
        re.compile(
            rf"\b{_NUMBER}[\s-]+(?:(?:business|working|calendar)[\s-]+)?{_TIME_UNIT}\b|"
            r"\b\d{1,2}:\d{2}\b|\b\d{1,2}(?:[.:]\d{2})?\s?(?:am|pm)\b|\b(?:monday|tuesday|wednesday|"
            r"thursday|friday|saturday|sunday|weekends?|january|february|march|april|may|june|"
            r"july|august|september|october|november|december)\b",
            re.I,
        ),
        re.compile(
            r"\b(?:immediately|straight away|right away|instantly|same day|next (?:business |"
            r"working )?day|overnight|any time|as soon as|once|until|after|before|within|"
            r"daily|weekly|monthly|yearly|annually|tomorrow|today|expires?|valid)\b",
            re.I,
        ),
    ),
    Ask.AMOUNT: (
        re.compile(rf"{_CURRENCY}\s?\d|\d(?:[.,]\d+)?\s?{_CURRENCY}", re.I),
        re.compile(r"\b(?:free|no charge|at no cost|nothing extra|\d+\s?%|percent)", re.I),
    ),
    Ask.COUNT: (
        re.compile(
            r"\b\d+\b|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|once|twice)\b", re.I
        ),
        None,
    ),
    Ask.STEPS: (  # a numbered list is the strong form (see compose); prose can instruct too
        None,
        re.compile(
            r"^(?:(?:with|on|in|to|if|when|once|after|before|from|for|while)\b[^,]{0,60},\s*)?"
            r"(?:press|hold|tap|select|go|open|click|turn|switch|enter|choose|restart|unplug|plug|"
            r"remove|connect|disconnect|reset|charge|wait|try|check|use|install|reinstall|update|"
            r"sign|log|contact|set|put|leave|make|follow|pair|forget|delete|send|email|call|add|"
            r"keep|type|scan|allow|download|move|run|find|ask|pick|drop|pack|print|register|"
            r"confirm|clear|swipe|visit|start|cancel|edit|change)\b",
            re.I,
        ),
    ),
    Ask.YESNO: (
        re.compile(r"^(?:yes|no)\b", re.I),
        re.compile(
            r"\b(?:no|not|none|nothing|never|only|always|cannot|can[’']?t|don[’']?t|doesn[’']?t|"
            r"isn[’']?t|aren[’']?t|won[’']?t|unless|except)\b",
            re.I,
        ),
    ),
}

# Sentences about the text rather than the topic: they point at an answer instead of giving it.
_NAVIGATION = re.compile(
    r"^(?:here[’']?s|here is|here are|below|the (?:steps|table|list|sections?) below)\b|"
    # sympathy carries no fact: "We're sorry if your product arrived broken" is not the answer
    r"^(?:we[’']?re|we are|we[’']?re really|i[’']?m|i am) (?:so |very |really )?sorry\b|"
    r"^sorry\b|^(?:we )?apologi[sz]e\b|"
    r"^this (?:article|page|guide|section|help page|faq)\b|"
    r"\b(?:this|the following) (?:article|page|guide|section) (?:explains|covers|describes|"
    r"shows|lists|is about)\b|\b(?:see|read|check out|visit) [\"“‘']|"
    r"\b(?:work through|follow|try) (?:the|these) (?:steps|checks|tips) below\b|"
    r"\b(?:these|the following|the) (?:steps|checks|tips) (?:below )?(?:usually |should )?"
    r"(?:fix|solve|help)\b|"
    r"\b(?:learn|find out|read) more\b|\bfor more (?:information|details|help)\b",
    re.I,
)


_FORM_WORDS = re.compile(r"\bhow (many|much|long|soon|often|far|big|old)\b")


def form_words(question: str) -> set[str]:
    """The words of "how many", "how long"...: they say what kind of answer, not what topic."""
    return set(_FORM_WORDS.findall(question.lower()))


def question_type(question: str) -> Ask:
    """The first matching form wins; the table is ordered from the most to the least specific."""
    low = " ".join(question.lower().replace("’", "'").replace("'", "").split())
    for ask, pattern in _QUESTION:
        if pattern.search(low):
            return ask
    return Ask.OTHER


def answer_match(ask: Ask, text: str) -> float:
    """How surely `text` holds the kind of fact the question wants: 1 strong, `WEAK` weak, 0 none.

    A yes/no question has no fact shape of its own (a "yes" is any statement about the topic),
    so its evidence, a negation or a modal, only counts `YESNO_STRENGTH` as much.
    """
    strong, weak = _ANSWER.get(ask, (None, None))
    scale = YESNO_STRENGTH if ask == Ask.YESNO else 1.0
    if strong is not None and strong.search(text):
        return scale
    if weak is not None and weak.search(text):
        return scale * WEAK
    return 0.0


# Word pairs that flip an instruction's meaning: "switch 2FA on" is not answered by "switch it off".
_OPPOSITES: tuple[tuple[str, str], ...] = (
    ("on", "off"),
    ("enable", "disable"),
    ("activate", "deactivate"),
    ("lock", "unlock"),
)
_WORDS = re.compile(r"[a-z]+")


def contradicts(question: str, text: str) -> bool:
    """True when `text` uses the opposite of a polarity word the question uses, and not the word."""
    asked = set(_WORDS.findall(question.lower()))
    said = set(_WORDS.findall(text.lower()))
    for a, b in _OPPOSITES:
        for word, opposite in ((a, b), (b, a)):
            if word in asked and opposite not in asked and opposite in said and word not in said:
                return True
    return False


@lru_cache(maxsize=16384)
def is_navigational(text: str) -> bool:
    """True for meta sentences ("Here's how...", "See ...", "This article explains...").

    Cached per sentence: every answer asks it of every candidate KB sentence, the same
    sentences again and again, and the pattern's many word-boundary alternatives are scanned
    across the whole sentence (it was ~7 % of a pool process's CPU).
    """
    return bool(_NAVIGATION.search(text.strip()))


def question_weights(weights: dict[str, float], question: str) -> dict[str, float]:
    """Topic words to look for: the question's, minus its form words ("how many"), plus the
    words that form is answered with ("how much": price, cost) at half the mean topic weight,
    so a "Prices" heading marks the section that answers."""
    form = {ANALYZER.stem(w) for w in form_words(question)}
    topic = {t: w for t, w in weights.items() if t not in form} or dict(weights)
    if topic:
        extra = FORM_WEIGHT * sum(topic.values()) / len(topic)
        words = ANALYZER.words(question, keep_stop_words=True)
        for stem in sorted(form_related_stems(words)):
            if stem not in topic and not related_stems(stem) & topic.keys():
                topic[stem] = extra  # one entry per group: "cost" also credits "price" text
    return topic
