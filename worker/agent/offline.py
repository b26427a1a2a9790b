"""The offline answer engine: short extractive answers with citations, no language model needed.

It answers only from the help centre: it picks the sentences that address the question, cites
them, and when retrieval is not confident it says so and offers a person instead of guessing.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from worker.agent.analysis import ANALYZER, Analyzer, analyzer_for, capped_mass
from worker.agent.base import Emit, Passage, Reply, Source, Turn
from worker.agent.compose import compose
from worker.agent.language import KIN, detect
from worker.agent.phrases import PHRASES, language_note, phrases_for, small_talk, without_courtesy
from worker.agent.questions import question_type, question_weights
from worker.agent.retrieval import KnowledgeBase, get_knowledge_base

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
_WORDS_PER_DELTA = 4
# Abstention with the semantic side on (calibrated on the tuning questions only: see
# bench/README.md). The lexical confidence says the passage holds the question's words; the
# cosine says it is about the same thing; the two rankings agreeing on the article is a third,
# independent vote. A passage that is not even loosely about the question (cosine under
# SIMILARITY_FLOOR) is not quoted for sharing a word or two ("sell" in "before selling") ...
LEXICAL_SHARE = 0.6
SEMANTIC_SHARE = 0.4
AGREEMENT_BONUS = 0.1
AGREEMENT_TOP = 2  # both rankings have the top article among their best two
SIMILARITY_FLOOR = 0.3
# ... unless the passage holds the question's words outright: a general-purpose model can miss
# how specialist or rare words relate ("store" and "showroom" are ~0 apart in WordLlama).
STRONG_LEXICAL = 0.7
MIX_CUT = 0.4  # where the mix separated answerable from unanswerable questions best ...
DEFAULT_THRESHOLD = 0.35  # ... rescaled so the documented default threshold is that cut


@dataclass(frozen=True)
class ConfidenceMix:
    """How the confidence weighs the lexical evidence, the top passage's cosine and the two
    rankings' agreement for one embedding model, and where the mix cuts (cosines of different
    models live on different scales, so each model has its own)."""

    lexical: float
    semantic: float
    agreement: float
    floor: float  # under this cosine no answer, unless the lexical evidence is STRONG_LEXICAL
    cut: float


WORDLLAMA_MIX = ConfidenceMix(
    LEXICAL_SHARE, SEMANTIC_SHARE, AGREEMENT_BONUS, SIMILARITY_FLOOR, MIX_CUT
)
# MiniLM (a sentence encoder): its cosine separates answerable from unanswerable questions
# better than the words do (AUC 0.92-1.0 vs 0.84-0.93 on the tuning sets), so it weighs more.
# The grid point that maximised the smaller pooled rate on the tuning questions only
# (bench/minilm_tune.py; covidfaq and the held-out split were not used).
MINILM_MIX = ConfidenceMix(lexical=0.4, semantic=0.6, agreement=0.1, floor=0.0, cut=0.47)


def mix_for(model_id: str | None) -> ConfidenceMix:
    """The confidence mix for the embedding model that made the cosines."""
    return MINILM_MIX if model_id and model_id.startswith("minilm/") else WORDLLAMA_MIX


CHUNKS_PER_ARTICLE = 5  # the answer may sit in another section than the best-matching one
# A short message with two or three topic words of its own is searched alone and with the
# previous user turn; the earlier words are kept only when they make the search this much more
# confident (the width of the "unsure" band above the threshold): a follow-up that leans on its
# context gains far more than that, a new question that stands on its own gains little or loses.
FOLLOW_UP_MARGIN = 0.1

# The engine's own sentences, in English; `phrases.PHRASES` has them in the other languages.
ABSTAIN_TEXT = PHRASES["en"].abstain
UNSURE_TAIL = PHRASES["en"].unsure
FILE_NOTE = PHRASES["en"].file_note
LANGUAGE_NOTE = PHRASES["en"].language_note


def stream(emit: Emit, text: str) -> None:
    """Send the reply as word groups; the deltas concatenate to exactly `text`."""
    pieces = re.findall(r"\s*\S+\s*", text)
    for i in range(0, len(pieces), _WORDS_PER_DELTA):
        emit("text", {"content": "".join(pieces[i : i + _WORDS_PER_DELTA])})


def classify(message: str) -> str:
    """Route before searching: 'greeting', 'thanks', 'bye', 'ack' or 'question'.

    Requests for a person never reach an engine: the escalation policy (worker/escalation/)
    decides them before any answer is generated, whatever engine is configured.
    """
    low = " ".join(message.lower().split())
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
    question: str, history: list[Turn], attachments: list[str], analyzer: Analyzer = ANALYZER
) -> list[tuple[str, bool]]:
    """(text, uses history) to try: follow-ups borrow the last user turn, one-word asks try both;
    with a file, the file's own text is tried too ("see my file" says nothing by itself, and
    a long question plus file dilutes a clear file). `analyzer`: the question's language's,
    which tells its topic words from its question words."""
    question = question.strip()
    file_text = file_query(attachments)
    base = f"{question} {file_text}".strip()
    tries = _question_queries(question, base, history, analyzer)
    if file_text and (file_text, False) not in tries:
        tries.append((file_text, False))
    return tries


def file_query(attachments: list[str]) -> str:
    """The attached files' text as a query: their first 60 words."""
    file_text = " ".join(" ".join(a.split()) for a in attachments if a.strip())
    return " ".join(file_text.split()[:60])


def _question_queries(
    question: str, base: str, history: list[Turn], analyzer: Analyzer = ANALYZER
) -> list[tuple[str, bool]]:
    earlier = [t.content for t in history if t.role == "user" and t.content.strip() != question]
    content = analyzer.content_terms(question)
    if not earlier or len(content) > 3:
        return [(base, False)]
    enriched = (f"{earlier[-1].strip()} {base}", True)  # "and how long does that take?"
    if _ELLIPTICAL.search(question):
        return [enriched]
    # a short message may be a follow-up ("how long do I hold it") or a new question ("do you
    # ship to Norway"): both are tried, and the earlier turn's words must earn their place
    # (see FOLLOW_UP_MARGIN)
    return [(base, False), enriched]


class OfflineEngine:
    """Extractive, cited answers from the knowledge base; abstains below the threshold."""

    name = "offline"
    # The whole reply exists within milliseconds: its stream may leave with the stored reply.
    streams_live = False

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
        """Answer from the KB, or abstain when the KB does not cover it."""
        kind = classify(question)
        if kind in _SMALL_TALK and not attachments:
            return self._plain(emit, _SMALL_TALK[kind])
        chat = None if attachments else small_talk(question, self.kb.main_language)
        if chat is not None:  # "Bonjour", "merci beaucoup": answered in the customer's language
            kind, said_in = chat
            return self._plain(emit, getattr(phrases_for(said_in), kind))
        emit("status", {"state": "searching"})
        language, note, speak = self._language(question)
        # the engine's own sentences in the customer's language when it is known (else the KB's)
        say = phrases_for(speak)
        # "Bonjour, ..." / "... merci": politeness is no topic (English's is in its stop list)
        question = without_courtesy(question, speak)
        asked = speak if note else None  # a language the KB lacks: no repair toward the KB's
        # the language the KB searches in (the question's, else the KB's own): its stemmer, its
        # stop and question words for the topic words, the confidence and the quoted sentences
        searched = language or self.kb.main_language
        analyzer = analyzer_for(searched)
        tries = []
        queries = build_queries(question, history, attachments, analyzer)
        # a message with topic words of its own, asked alone as well as with the earlier turn
        # (worked out only when an earlier turn is borrowed: most messages are asked alone)
        own: set[str] = set()
        if any(enriched for _, enriched in queries):
            own = set(analyzer.content_terms(self.kb.repair(question, asked or searched)))
        file_text = file_query(attachments)
        standalone = len(own) >= 2 and any(
            not enriched and query != file_text for query, enriched in queries
        )
        for i, (query, enriched) in enumerate(queries):
            query = self.kb.repair(query, asked or searched)  # the words meant, for confidence
            chunks = self.kb.search(
                query, limit=5, per_document=CHUNKS_PER_ARTICLE, language=language, asked=asked
            )
            if enriched and standalone and not _holds_own_words(own, chunks, analyzer):
                continue  # the earlier turn found its own article again, not this message's
            passages = _first_per_document(chunks)
            confidence = self.confidence(query, passages, language)
            rank = confidence - (FOLLOW_UP_MARGIN if enriched and standalone else 0.0)
            tries.append((rank, -i, query, enriched, chunks, confidence))
        # the file's text alone is a fallback for a question that says nothing by itself ("see
        # my file"): what the customer typed, with the file, is what they asked, so it wins
        # whenever it is answerable, however the file alone scores on another article
        asked = tries[:-1] if file_text == queries[-1][0] and len(tries) > 1 else tries
        best = max(asked, key=lambda t: t[:2])
        if best[5] < self.threshold:
            best = max(tries, key=lambda t: t[:2])
        _, _, query, enriched, chunks, confidence = best
        retrieved = len(_first_per_document(chunks))
        meta = {"query": query, "enriched": enriched, "retrieved": retrieved}
        if language:
            meta["language"] = language
        if confidence < self.threshold:
            text = f"{note}\n\n{say.abstain}" if note else say.abstain
            reply = self._plain(emit, text, escalate="low_confidence")
            reply.confidence, reply.metadata = confidence, meta
            return reply
        text, sources = self.compose(query, chunks, question=question, language=searched)
        if attachments and used_file(question, attachments, sources, analyzer):
            joiner = "\n" if re.match(r"(?:\d+[.)]|-) ", text) else " "  # a list keeps its lines
            text = f"{say.file_note}{joiner}{text}"
            meta["used_attachment"] = True
        if confidence < self.threshold + 0.1:
            text = f"{text}\n\n{say.unsure}"
        if note:
            text = f"{note}\n\n{text}"
        emit("sources", {"sources": [s.to_dict() for s in sources]})
        stream(emit, text)
        return Reply(text=text, sources=sources, confidence=confidence, metadata=meta)

    def _language(self, question: str) -> tuple[str | None, str | None, str | None]:
        """(language to search in, note for the customer, language to speak in): a question in
        a language the KB has articles in is answered from those; in one it lacks, we say the
        answer comes from the KB's own language rather than pretend. The engine's own
        sentences are in the question's language when it is clear, else in the KB's."""
        asked = detect(question)
        self.kb.refresh()  # the KB's languages as of its current version, even before a search
        have = self.kb.languages
        main = self.kb.main_language
        if not asked or not have or not main:
            return None, None, asked or main
        if asked not in have:  # read as Danish, the KB in Norwegian: the KB's of the pair
            asked = next((k for k in KIN.get(asked, ()) if k in have), asked)
        if asked == main:
            return None, None, asked
        if asked in have:
            return asked, None, asked
        return None, language_note(asked, main), asked

    def confidence(self, query: str, passages: list[Passage], language: str | None = None) -> float:
        """How surely the top article answers: lexical evidence (geometric mean of its score
        and the idf-weighted share of query words it holds), mixed with its cosine to the
        query and whether both rankings put it first, when the semantic side is on.
        `language`: the one searched in, whose stemmer matches the query's words to the
        article's (the index stemmed that language's articles with it)."""
        if not passages:
            return 0.0
        language = language or self.kb.main_language  # as the KB stemmed the search
        weights = self.kb.term_weights(query, language)
        top = passages[0]
        lexical = 0.0
        if weights:
            analyzer = analyzer_for(language)
            text = f"{top.title} {top.section or ''} {top.content}"
            present = set(analyzer.content_terms(text))
            matched = sum(w for t, w in weights.items() if t in present)
            coverage = min(1.0, matched / capped_mass(list(weights.values())))
            lexical = math.sqrt(max(0.0, top.score) * coverage)
        if top.semantic is None:
            return round(lexical, 4)
        embedder = self.kb.embedder
        mix = mix_for(embedder.model_id if embedder is not None else None)
        if top.semantic < mix.floor and lexical < STRONG_LEXICAL:
            return 0.0
        by_lexical = sorted(passages, key=lambda p: -p.lexical)[:AGREEMENT_TOP]
        by_meaning = sorted(passages, key=lambda p: -(p.semantic or 0.0))[:AGREEMENT_TOP]
        agree = top in by_lexical and top in by_meaning
        score = mix.lexical * lexical + mix.semantic * top.semantic + mix.agreement * agree
        return round(min(1.0, score * DEFAULT_THRESHOLD / mix.cut), 4)

    def compose(
        self,
        query: str,
        passages: list[Passage],
        *,
        question: str | None = None,
        language: str | None = None,
    ) -> tuple[str, list[Source]]:
        """Quote the sentences that answer `question` (default: the query), cited per article.

        Topic words come from the query actually searched (it may borrow an earlier turn); the
        kind of answer wanted ("how long", "how much") comes from what the customer just asked.
        `language`: the one searched in (default: the KB's main one), which the passages are
        written in: the query's words and the sentences' are stemmed with its analyzer.
        """
        question = question or query
        language = language or self.kb.main_language
        return compose(
            passages,
            question_weights(self.kb.term_weights(query, language), question),
            question_type(question, language),
            question=question,
            max_sentences=self.max_sentences,
            max_documents=self.max_passages,
            analyzer=analyzer_for(language),
        )

    def _plain(self, emit: Emit, text: str, escalate: str | None = None) -> Reply:
        """A fixed, uncited reply (abstention, small talk), streamed like any other."""
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


def used_file(
    question: str, attachments: list[str], sources: list[Source], analyzer: Analyzer = ANALYZER
) -> bool:
    """True when the quoted text shares a topic word with the attached file that the typed
    question lacks: the file, not only the question, led to this answer. `analyzer`: the
    language searched in's."""
    own = set(analyzer.content_terms(question))
    from_file = {
        t for a in attachments for t in analyzer.content_terms(" ".join(a.split()[:200]))
    } - own
    quoted = {t for s in sources for t in analyzer.content_terms(f"{s.title} {s.snippet}")}
    return bool(from_file & quoted)


def _holds_own_words(own: set[str], chunks: list[Passage], analyzer: Analyzer) -> bool:
    """Whether the top article of a search that borrowed the earlier turn holds at least half
    of the new message's own topic words (stems).

    The earlier turn's words always make its own article score well again, so confidence alone
    cannot tell "how long do I hold the button" (a follow-up: the reset article has "hold" and
    "button") from "do you sell cars?" after a password question (a new question the KB cannot
    answer: the password article has neither word). A follow-up is about the same article, so
    its own words are in it. `analyzer` stemmed `own`; the chunks are stemmed with it too.
    """
    if not chunks:
        return False
    top = chunks[0].document_id
    words: set[str] = set()
    for chunk in chunks:
        if chunk.document_id == top:
            text = f"{chunk.title} {chunk.section or ''} {chunk.content}"
            words.update(analyzer.content_terms(text))
    return 2 * len(own & words) >= len(own)


def _first_per_document(passages: list[Passage]) -> list[Passage]:
    """Each article's best chunk, in rank order: what confidence and the source list are about."""
    seen: set[str] = set()
    out = []
    for passage in passages:
        if passage.document_id not in seen:
            seen.add(passage.document_id)
            out.append(passage)
    return out
