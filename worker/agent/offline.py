"""The offline answer engine: short extractive answers with citations, no language model needed.

It answers only from the help centre: it picks the sentences that address the question, cites
them, and when retrieval is not confident it says so and offers a person instead of guessing.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from worker.agent.base import Emit, Passage, Reply, Source, Turn
from worker.agent.bm25 import ANALYZER, capped_mass
from worker.agent.retrieval import KnowledgeBase, get_knowledge_base
from worker.ingest.sentences import split_sentences

_PERSON = r"(?:human|real person|person|agent|representative|rep|operator|somebody|someone|staff)"
_HUMAN_REQUEST = (
    re.compile(
        rf"\b(?:talk|speak|chat|connect|transfer|put)\b.{{0,25}}\b(?:to|with)\b.{{0,20}}"
        rf"\b{_PERSON}\b"
    ),
    re.compile(
        r"\b(?:want|need|get|give me|have|request)\b.{0,20}\b(?:human|real person|"
        r"live (?:agent|person)|representative|operator)\b"
    ),
    re.compile(r"\b(?:want|need|get)\b.{0,12}\bagent\b"),
    re.compile(
        r"^\W*(?:a\s+)?(?:human|real person|live agent|representative|agent|operator)"
        r"(?:\s+(?:please|pls|now|asap))?\W*$"
    ),
)
_GREETING = frozenset("hi hello hey hiya heya yo morning afternoon evening greetings".split())
_THANKS = frozenset("thanks thank thx ty cheers appreciated appreciate".split())
_BYE = frozenset("bye goodbye later cya farewell".split())
_FILLER = frozenset(
    "good you very much so a lot ok okay great cool awesome perfect nice lovely brilliant "
    "there all that it helps helped got see alright fine super again guys team for the".split()
)
_ELLIPTICAL = re.compile(
    r"^\s*(?:and|also|but|so|what about|how about|what if)\b|"
    r"\b(?:it|that|this|those|these|they|them|there|one)\b",
    re.I,
)
_MARKDOWN = (
    (re.compile(r"!\[[^\]]*\]\([^)]*\)"), ""),
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),
    (re.compile(r"(\*\*|__|`)"), ""),
    (re.compile(r"^\s{0,3}#{1,6}\s+"), ""),
)
_LIST_ITEM = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+")
_NAVIGATION = re.compile(r"\bsee [\"“]|^(?:here'?s|here is|this (?:article|page|guide))\b", re.I)
_MAX_LIST_LINES = 8
_WORDS_PER_DELTA = 4

ABSTAIN_TEXT = (
    "I'm sorry, I couldn't find anything in our help centre that covers this, and I'd rather not "
    "guess. Would you like me to connect you with a member of our support team?"
)
HANDOFF_TEXT = (
    "Of course. I'm connecting you with a member of our support team now; please stay "
    "in this chat and they'll be with you shortly."
)
UNSURE_TAIL = "If that doesn't answer your question, I can connect you with a person."


@dataclass
class _Unit:
    """The smallest quotable piece: one sentence, or a lead-in line with its list items."""

    lines: list[str]
    passage: int
    position: int
    score: float
    is_list: bool
    usable: bool = True


def stream(emit: Emit, text: str) -> None:
    """Send the reply as word groups; the deltas concatenate to exactly `text`."""
    pieces = re.findall(r"\s*\S+\s*", text)
    for i in range(0, len(pieces), _WORDS_PER_DELTA):
        emit("text", {"content": "".join(pieces[i : i + _WORDS_PER_DELTA])})


def classify(message: str) -> str:
    """Route before searching: 'human', 'greeting', 'thanks', 'bye', 'ack' or 'question'."""
    low = " ".join(message.lower().split())
    if any(p.search(low) for p in _HUMAN_REQUEST):
        return "human"
    words = re.findall(r"[a-z]+", low)
    if not words or len(words) > 8:
        return "question"
    if not set(words) <= _GREETING | _THANKS | _BYE | _FILLER:
        return "question"
    if set(words) & _THANKS:
        return "thanks"
    if set(words) & _BYE:
        return "bye"
    return "greeting" if set(words) & _GREETING else "ack"


def build_queries(
    question: str, history: list[Turn], attachments: list[str]
) -> list[tuple[str, bool]]:
    """(text, uses history) to try: follow-ups borrow the last user turn, one-word asks try both."""
    question = question.strip()
    base = f"{question} {' '.join(attachments[0].split()[:60]) if attachments else ''}".strip()
    earlier = [t.content for t in history if t.role == "user" and t.content.strip() != question]
    content = ANALYZER.content_terms(question)
    if not earlier or len(content) > 3:
        return [(base, False)]
    enriched = (f"{earlier[-1].strip()} {base}", True)  # "and how long does that take?"
    if _ELLIPTICAL.search(question):
        return [enriched]
    return [(base, False), enriched] if len(content) <= 1 else [(base, False)]


def clean(sentence: str) -> str:
    """Chat-friendly text: markdown links, emphasis and heading marks removed."""
    for pattern, repl in _MARKDOWN:
        sentence = pattern.sub(repl, sentence)
    return " ".join(sentence.split()) if not _LIST_ITEM.match(sentence) else sentence.strip()


def cite(sentence: str, index: int) -> str:
    """Put `[n]` after the sentence it supports, inside the final full stop."""
    if sentence and sentence[-1] in ".!?":
        return f"{sentence[:-1]} [{index}]{sentence[-1]}"
    return f"{sentence} [{index}]"


class OfflineEngine:
    """Extractive, cited answers from the knowledge base; abstains below the threshold."""

    name = "offline"

    def __init__(
        self,
        kb: KnowledgeBase | None = None,
        *,
        threshold: float | None = None,
        max_sentences: int = 4,
        max_passages: int = 3,
    ) -> None:
        self.kb = kb or get_knowledge_base()
        self.threshold = self.kb.settings.confidence_threshold if threshold is None else threshold
        self.max_sentences, self.max_passages = max_sentences, max_passages

    def answer(
        self, question: str, *, history: list[Turn], attachments: list[str], emit: Emit
    ) -> Reply:
        """Answer from the KB, hand off on request, or abstain when the KB does not cover it."""
        kind = classify(question)
        if kind == "human":
            return self._plain(emit, HANDOFF_TEXT, escalate="user_request")
        if kind in _SMALL_TALK and not attachments:
            return self._plain(emit, _SMALL_TALK[kind])
        emit("status", {"state": "searching"})
        tries = []
        for i, (query, enriched) in enumerate(build_queries(question, history, attachments)):
            passages = self.kb.search(query, limit=5)
            tries.append((self.confidence(query, passages), -i, query, enriched, passages))
        confidence, _, query, enriched, passages = max(tries, key=lambda t: t[:2])
        meta = {"query": query, "enriched": enriched, "retrieved": len(passages)}
        if confidence < self.threshold:
            reply = self._plain(emit, ABSTAIN_TEXT, escalate="low_confidence")
            reply.confidence, reply.metadata = confidence, meta
            return reply
        text, sources = self.compose(query, passages)
        if confidence < self.threshold + 0.1:
            text = f"{text}\n\n{UNSURE_TAIL}"
        emit("sources", {"sources": [s.to_dict() for s in sources]})
        stream(emit, text)
        return Reply(text=text, sources=sources, confidence=confidence, metadata=meta)

    def confidence(self, query: str, passages: list[Passage]) -> float:
        """Geometric mean of top score and idf-weighted query coverage: both must be high."""
        if not passages:
            return 0.0
        weights = self.kb.term_weights(query)
        if not weights:
            return 0.0
        top = passages[0]
        present = set(ANALYZER.content_terms(f"{top.title} {top.section or ''} {top.content}"))
        matched = sum(w for t, w in weights.items() if t in present)
        coverage = min(1.0, matched / capped_mass(list(weights.values())))
        return round(math.sqrt(max(0.0, top.score) * coverage), 4)

    def compose(self, query: str, passages: list[Passage]) -> tuple[str, list[Source]]:
        """Pick the answering sentences, group them per passage and cite each group."""
        weights = self.kb.term_weights(query)
        top = passages[0].score or 1.0
        units: list[list[_Unit]] = []
        for p_index, passage in enumerate(passages[: self.max_passages]):
            prior = (passage.score / top) ** 2
            units.append(_units(split_sentences(passage.content), p_index, weights, prior))
        chosen = _pick(units, passages, self.max_sentences) or units[0][:2]  # never say nothing
        sources: list[Source] = []
        parts: list[str] = []
        for p_index in sorted({u.passage for u in chosen}):
            group = sorted((u for u in chosen if u.passage == p_index), key=lambda u: u.position)
            passage, number = passages[p_index], len(sources) + 1
            parts.append(_render(group, number))
            snippet = " ".join(clean(line) for u in group for line in u.lines)
            sources.append(
                Source(
                    index=number,
                    chunk_id=passage.chunk_id,
                    document_id=passage.document_id,
                    external_id=passage.external_id,
                    title=passage.title,
                    snippet=" ".join(snippet.split())[:300],
                    score=passage.score,
                )
            )
        return "\n\n".join(parts), sources

    def _plain(self, emit: Emit, text: str, escalate: str | None = None) -> Reply:
        """A fixed, uncited reply (handoff, abstention, small talk), streamed like any other."""
        stream(emit, text)
        return Reply(
            text=text,
            confidence=1.0 if escalate != "low_confidence" else 0.0,
            requires_escalation=escalate is not None,
            escalation_reason=escalate,
        )


_SMALL_TALK = {
    "greeting": "Hi! How can I help you today?",
    "thanks": "You're welcome! Is there anything else I can help you with?",
    "bye": "Thanks for getting in touch. Have a great day!",
    "ack": "Great! Is there anything else I can help you with?",
}


def _overlap(text: str, weights: dict[str, float]) -> float:
    """Idf-weighted share of the query's topic words that `text` contains."""
    terms = set(ANALYZER.content_terms(text))
    total = sum(weights.values()) or 1.0
    return sum(w for t, w in weights.items() if t in terms) / total


def _units(
    sentences: list[str], p_index: int, weights: dict[str, float], prior: float
) -> list[_Unit]:
    """Sentences of one passage as units; a steps list (with its lead-in line) stays whole."""
    units: list[_Unit] = []
    i = 0
    while i < len(sentences):
        lead_in = sentences[i].rstrip().endswith(":") and i + 1 < len(sentences)
        if _LIST_ITEM.match(sentences[i]) or (lead_in and _LIST_ITEM.match(sentences[i + 1])):
            j = i + 1
            while j < len(sentences) and _LIST_ITEM.match(sentences[j]):
                j += 1
            lines = sentences[i:j][:_MAX_LIST_LINES]
            score = max(_overlap(line, weights) for line in lines)
            units.append(_Unit(lines, p_index, i, score * prior, True))
            i = j
            continue
        text = sentences[i].strip()
        score = _overlap(text, weights) * prior
        if _NAVIGATION.search(text):
            score *= 0.3  # "see X" and "here's what..." point at answers rather than give them
        # headings, rhetorical questions and fragments are not answers
        usable = not (text.startswith("#") or text.endswith("?") or len(text.split()) < 4)
        units.append(_Unit([text], p_index, i, score if usable else 0.0, False, usable))
        i += 1
    if units and p_index == 0:
        units[0].score += 0.05  # help articles tend to answer first
    return units


def _pick(units: list[list[_Unit]], passages: list[Passage], max_sentences: int) -> list[_Unit]:
    """Anchor on the best unit, keep its neighbours as context, add strong support; one list."""
    pool = [u for group in units for u in group if u.score > 0]
    if not pool:
        return []
    anchor = max(pool, key=lambda u: (u.score, -u.passage, -u.position))
    chosen = [anchor] + _context(units[anchor.passage], anchor)
    top = passages[0].score or 1.0
    for unit in sorted(pool, key=lambda u: -u.score):
        prose = sum(1 for u in chosen if not u.is_list)
        if prose >= max_sentences or unit.score < 0.5 * anchor.score:
            break
        if unit in chosen or (unit.is_list and any(u.is_list for u in chosen)):
            continue
        other = unit.passage != anchor.passage
        if other and (passages[unit.passage].score < 0.8 * top or unit.score < 0.8 * anchor.score):
            continue
        chosen.append(unit)
    return chosen


def _context(group: list[_Unit], anchor: _Unit) -> list[_Unit]:
    """Neighbouring prose that supports the anchor; a lone short sentence gets the next one."""
    at = group.index(anchor)
    near = [u for u in group[max(0, at - 1) : at + 2] if u is not anchor and u.usable]
    near = [u for u in near if not (u.is_list and anchor.is_list)]
    picked = [u for u in near if u.score >= 0.3 * anchor.score and u.score > 0]
    if not picked and not anchor.is_list and len(anchor.lines[0].split()) < 20:
        picked = [u for u in near if u.position > anchor.position and not u.is_list][:1]
    return picked


def _render(group: list[_Unit], number: int) -> str:
    """One passage's units as text: prose flows, list items keep a line each, cite at the end."""
    out = ""
    for k, unit in enumerate(group):
        lines = [clean(line) for line in unit.lines]
        if k == len(group) - 1:
            lines[-1] = cite(lines[-1], number)
        text = "\n".join(lines) if unit.is_list else lines[0]
        sep = "\n" if unit.is_list or (k and group[k - 1].is_list) else " "
        out = text if not out else out + sep + text
    return out
