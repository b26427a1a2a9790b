"""The offline answer engine: short extractive answers with citations, no language model needed.

It answers only from the help centre: it picks the sentences that address the question, cites
them, and when retrieval is not confident it says so and offers a person instead of guessing.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from worker.agent.base import Emit, Passage, Reply, Source, Turn
from worker.agent.bm25 import ANALYZER
from worker.agent.retrieval import KnowledgeBase, get_knowledge_base
from worker.ingest.sentences import split_sentences

_PERSON = r"(?:human|real person|person|agent|representative|rep|operator|somebody|someone|staff)"
_HUMAN_REQUEST = (
    re.compile(
        rf"\b(?:talk|speak|chat|connect|transfer|put)\b.{{0,25}}\b(?:to|with)\b.{{0,20}}"
        rf"\b{_PERSON}\b"
    ),
    re.compile(
        r"\b(?:want|need|get|give me|have)\b.{0,20}\b(?:human|real person|live agent|"
        r"representative|agent|operator)\b"
    ),
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
class _Sentence:
    """A candidate sentence with where it came from and how well it answers the question."""

    text: str
    passage: int
    position: int
    score: float
    is_list_item: bool


def stream(emit: Emit, text: str) -> None:
    """Send the reply as word groups; the deltas concatenate to exactly `text`."""
    pieces = re.findall(r"\s*\S+\s*", text)
    for i in range(0, len(pieces), _WORDS_PER_DELTA):
        emit("text", {"content": "".join(pieces[i : i + _WORDS_PER_DELTA])})


def classify(message: str) -> str:
    """'human' for an explicit request for a person, 'greeting'/'thanks'/'bye' for pure small
    talk, else 'question'."""
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
    return "greeting" if set(words) & _GREETING else "question"


def build_query(question: str, history: list[Turn], attachments: list[str]) -> tuple[str, bool]:
    """The search query: the question, plus the previous user turn when the question leans on
    it ("and how long does that take?"), plus the start of the first attachment."""
    query, enriched = question.strip(), False
    content = ANALYZER.content_terms(query)
    if len(content) <= 3 and (len(content) <= 1 or _ELLIPTICAL.search(query)):
        earlier = [t.content for t in history if t.role == "user" and t.content.strip() != query]
        if earlier:
            query, enriched = f"{earlier[-1].strip()} {query}", True
    if attachments and attachments[0].strip():
        query = f"{query} {' '.join(attachments[0].split()[:60])}".strip()
        enriched = True
    return query, enriched


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
        if kind in ("greeting", "thanks", "bye") and not attachments:
            return self._plain(emit, _SMALL_TALK[kind])
        emit("status", {"state": "searching"})
        query, enriched = build_query(question, history, attachments)
        passages = self.kb.search(query, limit=5)
        confidence = self.confidence(query, passages)
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
        """Geometric mean of the top passage's retrieval score and its idf-weighted coverage of
        the query's topic words: both must be high for a confident answer."""
        if not passages:
            return 0.0
        weights = self.kb.term_weights(query)
        if not weights:
            return 0.0
        top = passages[0]
        present = set(ANALYZER.content_terms(f"{top.title} {top.section or ''} {top.content}"))
        coverage = sum(w for t, w in weights.items() if t in present) / sum(weights.values())
        return round(math.sqrt(max(0.0, top.score) * coverage), 4)

    def compose(self, query: str, passages: list[Passage]) -> tuple[str, list[Source]]:
        """Pick the answering sentences, group them per passage and cite each group."""
        chosen = self._select(query, passages)
        sources: list[Source] = []
        parts: list[str] = []
        by_passage: dict[int, list[_Sentence]] = {}
        for s in chosen:
            by_passage.setdefault(s.passage, []).append(s)
        for p_index in sorted(by_passage):
            group = sorted(by_passage[p_index], key=lambda s: s.position)
            number = len(sources) + 1
            passage = passages[p_index]
            lines = [clean(s.text) for s in group]
            lines[-1] = cite(lines[-1], number)
            parts.append(_join_lines(lines, [s.is_list_item for s in group]))
            snippet = " ".join(" ".join(clean(s.text) for s in group).split())
            sources.append(
                Source(
                    index=number,
                    chunk_id=passage.chunk_id,
                    document_id=passage.document_id,
                    external_id=passage.external_id,
                    title=passage.title,
                    snippet=snippet[:300],
                    score=passage.score,
                )
            )
        return "\n\n".join(parts), sources

    def _select(self, query: str, passages: list[Passage]) -> list[_Sentence]:
        """Best sentence first, then supporting ones; a chosen step pulls in its whole list."""
        weights = self.kb.term_weights(query)
        total = sum(weights.values()) or 1.0
        top_score = passages[0].score or 1.0
        candidates: list[list[_Sentence]] = []
        for p_index, passage in enumerate(passages[: self.max_passages]):
            if passage.score < 0.6 * top_score and p_index > 0:
                break
            prior = passage.score / top_score
            sentences = []
            for pos, text in enumerate(split_sentences(passage.content)):
                terms = set(ANALYZER.content_terms(text))
                overlap = sum(w for t, w in weights.items() if t in terms) / total
                lead = 0.15 if pos == 0 and p_index == 0 else 0.0
                score = (overlap + lead) * prior
                sentences.append(_Sentence(text, p_index, pos, score, bool(_LIST_ITEM.match(text))))
            candidates.append(sentences)
        return _pick(candidates, self.max_sentences)

    def _plain(self, emit: Emit, text: str, escalate: str | None = None) -> Reply:
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
}


def _usable(s: _Sentence) -> bool:
    """Answers are statements: skip headings, rhetorical questions and fragments."""
    text = s.text.strip()
    if text.startswith("#") or (text.endswith("?") and not s.is_list_item):
        return False
    return len(text.split()) >= 3 or s.is_list_item


def _pick(candidates: list[list[_Sentence]], max_sentences: int) -> list[_Sentence]:
    """Anchor on the best sentence, keep coherent context, add strong support from elsewhere."""
    pool = [s for group in candidates for s in group if _usable(s)]
    if not pool:
        return []
    anchor = max(pool, key=lambda s: (s.score, -s.passage, -s.position))
    group = candidates[anchor.passage]
    chosen = {(anchor.passage, anchor.position): anchor}
    block = _list_block(group, anchor.position)
    for s in block:
        chosen[(s.passage, s.position)] = s
    if len(chosen) == 1:  # one bare sentence reads abruptly: add the next one for context
        nxt = next((s for s in group if s.position == anchor.position + 1 and _usable(s)), None)
        if nxt is not None and not nxt.is_list_item:
            chosen[(nxt.passage, nxt.position)] = nxt
    prose_budget = max_sentences - sum(1 for s in chosen.values() if not s.is_list_item)
    extras = sorted(pool, key=lambda s: -s.score)
    for s in extras:
        if prose_budget <= 0 or s.score < 0.5 * anchor.score or s.score <= 0:
            break
        if (s.passage, s.position) not in chosen and not s.is_list_item:
            chosen[(s.passage, s.position)] = s
            prose_budget -= 1
    return list(chosen.values())


def _list_block(group: list[_Sentence], position: int) -> list[_Sentence]:
    """The steps list around `position` (with its lead-in line), or [] if it is not in a list."""
    at = group[position]
    lead_in = at.text.rstrip().endswith(":")
    if not at.is_list_item and not lead_in:
        return []
    start = position
    while start > 0 and group[start].is_list_item:
        start -= 1
    end = position + 1
    while end < len(group) and group[end].is_list_item:
        end += 1
    block = group[start:end]
    if not group[start].is_list_item and not group[start].text.rstrip().endswith(":"):
        block = block[1:]
    return block[:7]


def _join_lines(lines: list[str], is_item: list[bool]) -> str:
    """Prose flows as a paragraph; list items keep one line each."""
    out = ""
    for i, (line, item) in enumerate(zip(lines, is_item, strict=True)):
        if i == 0:
            out = line
        elif item or is_item[i - 1] or out.endswith(":"):
            out += "\n" + line
        else:
            out += " " + line
    return out
