"""Extractive answers: choose the retrieved sentences that answer the question, then cite them.

Retrieval finds the right article; this decides which of its units (see `units`) to quote. A
unit scores by the idf-weighted share of the question's topic words it holds (words only in its
section heading or article title count less; a sentence that refers back, "This takes 2 days.",
borrows most of the relevance of the sentence it refers to), raised when it holds the kind of
fact the question asks for (a duration for "how long", an amount for "how much", steps for
"how do I"), times how well its passage was retrieved. Units that only point elsewhere
("Here's how...", "See ..."), run long, or say the opposite ("off" for "switch on") are
penalised. The best unit is the anchor; a neighbour it needs and strong units that mention the
question complete an answer of a few sentences with one citation per article.
"""

from __future__ import annotations

import re
from collections import defaultdict

from worker.agent.analysis import ANALYZER, Analyzer, iso_code, related_stems
from worker.agent.base import Passage, Source
from worker.agent.questions import (
    Ask,
    answer_match,
    asks_wait,
    contradicts,
    is_navigational,
    lasting_only,
)
from worker.agent.units import Unit, build_units, render

# A sentence that starts mid-thought: a pronoun or connective first ("It...", "Then..."), or a
# sequence word early on ("Card refunds then take...") that points at what came before.
_ANAPHOR = re.compile(
    r"^(?:it|its|this|that|these|those|they|them|their|then|so|also|such|there|otherwise|"
    r"however|instead|after that|afterwards|if so|if not)\b|"
    r"^\W*(?:\w+\s+){1,2}(?:then|too|as well|afterwards|again)\b|"
    # a clause about a state the previous sentence or step brought about: "Once you're in, ..."
    r"^(?:once|when|after)\s+(?:you[’']?(?:re|ve|\s+are|\s+have)\s+)?"
    r"(?:in|done|finished|there|it|this|that|they|these|those)\b",
    re.I,
)
_MIN_PREFIX = 5
# Relevance
HEADING_WEIGHT = 0.8  # a question word found only in the section heading counts nearly fully
TITLE_WEIGHT = 0.5  # ... and one found only in the article title counts half
RELATED_CREDIT = 0.7  # "price" in the text for "cost" in the question
REFERENT_CREDIT = 0.9  # "This takes 2 days." borrows this share of the sentence it refers to
# Priors: how well the unit's passage was retrieved, relative to the best
DOC_EXPONENT = 1.0  # an article's prior is its score over the best article's, to this power
CHUNK_EXPONENT = 1.0  # ... times another chunk's score over its article's best, to this power
# Answer type and penalties
TYPE_BOOST = 0.5  # holding the asked-for kind of fact scales relevance up by this much ...
TYPE_WEIGHT = 0.2  # ... and adds this much
NAVIGATION_PENALTY = 0.3
OPPOSITE_PENALTY = 0.5
LONG_WORDS = 25  # past this many words a sentence starts paying for its length
LENGTH_PENALTY = 0.5
LEAD_BONUS = 0.05  # help articles tend to answer in their first sentence
# Selection
FACT_RATIO = 0.7  # a unit holding the asked-for fact is the anchor if within this of the best
SUPPORT_RATIO = 0.6  # a second unit must score at least this share of the anchor
OTHER_DOC_RATIO = 0.8  # ... and one from another article this much
STRONG_RATIO = 0.8  # ... which must itself have scored this close to the best article
CONTEXT_RATIO = 0.6  # a neighbour joins unasked only if this relevant
SHORT_ANCHOR_WORDS = 12  # an anchor shorter than this brings the sentence after it
LIST_COST = 3  # a steps list counts as this many sentences against the length budget
MAX_CHARS = 600  # support stops before the answer grows past this (a long list may alone)
PARAGRAPH_WORDS = 45  # a prose anchor brings its whole paragraph when the paragraph is this short


# A KB's sentences, headings and titles come back answer after answer: their topic words are
# worked out once per process (the tokenising was most of an offline answer's CPU), per
# language: a sentence is stemmed with the analyzer of the language the question was searched in.
_TERMS: dict[str, dict[str, frozenset[str]]] = {}
_TERMS_LIMIT = 100_000


def _terms(text: str, analyzer: Analyzer = ANALYZER) -> frozenset[str]:
    """Stemmed topic words of `text`, memoised (they depend on the text and language alone)."""
    memo = _TERMS.get(analyzer.language)
    if memo is None:
        memo = _TERMS.setdefault(analyzer.language, {})
    found = memo.get(text)
    if found is None:
        if len(memo) >= _TERMS_LIMIT:
            memo.clear()  # a bound, not an LRU: a KB larger than this re-warms cheaply
        found = memo[text] = frozenset(analyzer.content_terms(text))
    return found


_PREFIX_HITS: dict[tuple[frozenset[str], str], bool] = {}


def _contains(terms: frozenset[str] | set[str], term: str) -> bool:
    """Stem match, or one stem a prefix of the other ("expir"/"expiri", "deliv"/"deliveri")."""
    if term in terms:
        return True
    if len(term) < _MIN_PREFIX:
        return False
    if not isinstance(terms, frozenset):
        return _prefix_match(terms, term)
    key = (terms, term)  # a memoised text's terms: the same frozenset, its hash kept
    hit = _PREFIX_HITS.get(key)
    if hit is None:
        if len(_PREFIX_HITS) >= _TERMS_LIMIT:
            _PREFIX_HITS.clear()
        hit = _PREFIX_HITS[key] = _prefix_match(terms, term)
    return hit


def _prefix_match(terms: frozenset[str] | set[str], term: str) -> bool:
    return any(len(t) >= _MIN_PREFIX and (t.startswith(term) or term.startswith(t)) for t in terms)


def relevance(
    weights: dict[str, float],
    text: str,
    heading: str = "",
    title: str = "",
    analyzer: Analyzer = ANALYZER,
) -> float:
    """Idf-weighted share of question words in `text`; heading and title words count less.

    A section heading scopes every sentence under it ("Pulse Mini" above "hold Power and
    Volume +"), so its words count nearly fully; the article title applies to all its sentences.
    `analyzer` stems the texts as `weights`' terms were stemmed, and its language's
    related-word groups apply.
    """
    return _Relevance(weights, analyzer).of(text, heading, title)[0]


class _Relevance:
    """`relevance` for one question's weights against many units: the question's terms and
    their related-word groups looked up once, not once per unit, and a unit's own-text share
    (does the text itself mention the question?) found in the same pass as its full score."""

    def __init__(self, weights: dict[str, float], analyzer: Analyzer = ANALYZER) -> None:
        self.total = sum(weights.values()) or 1.0
        self.terms = [(t, w, related_stems(t, analyzer)) for t, w in weights.items()]
        self.analyzer = analyzer

    def of(self, text: str, heading: str = "", title: str = "") -> tuple[float, float]:
        """(relevance with heading and title, relevance of the text alone)."""
        own, head, top = (_terms(t, self.analyzer) for t in (text, heading, title))
        credit = own_credit = 0.0
        for term, weight, related in self.terms:
            if _contains(own, term):
                credit += weight
                own_credit += weight
                continue
            if related & own:
                credit += RELATED_CREDIT * weight
                own_credit += RELATED_CREDIT * weight
                continue
            for found, share in ((head, HEADING_WEIGHT), (top, TITLE_WEIGHT)):
                if _contains(found, term):
                    credit += share * weight
                    break
                if related & found:
                    credit += share * RELATED_CREDIT * weight
                    break
        return credit / self.total, own_credit / self.total


def _value(relevance: float, match: float) -> float:
    """Relevance scaled up, plus a floor, for holding the asked-for kind of fact.

    The scaling decides between sentences that all mention the topic; the additive part lets a
    sentence that holds the fact under a matching heading beat one that only repeats the topic.
    """
    return relevance * (1.0 + TYPE_BOOST * match) + TYPE_WEIGHT * match


def _brevity(text: str) -> float:
    """Long sentences match more words by chance and bury the fact: past `LONG_WORDS` words each
    further `LONG_WORDS` cost a `LENGTH_PENALTY` share of the score."""
    extra = max(0, len(text.split()) - LONG_WORDS) / LONG_WORDS
    return 1.0 / (1.0 + LENGTH_PENALTY * extra)


def score_units(
    units: list[Unit],
    weights: dict[str, float],
    ask: Ask,
    priors: list[float],
    titles: dict[int, str],
    question: str = "",
    analyzer: Analyzer = ANALYZER,
) -> None:
    """Relevance plus the answer-type bonus, times the passage prior; pointers are penalised,
    and so are units saying the opposite of the question ("off" for "switch on"). A steps list
    is as relevant as its best step or the line introducing it ("If the box is crushed:" says
    what the steps are for). `analyzer`: the language the passages were searched in (see
    `relevance`)."""
    code = iso_code(analyzer)  # the answer shapes ("deux jours") of the passages' language
    scorer = _Relevance(weights, analyzer)
    wait = ask == Ask.DURATION and asks_wait(question)
    first_seen: set[int] = set()
    steps_children: dict[int, float] = defaultdict(float)
    lead_ins: dict[int, tuple[float, bool]] = {}  # a list's group -> its lead-in's relevance
    mentioned: dict[int, bool] = {}
    pointers: list[tuple[Unit, float, float]] = []  # (pointer, its unpenalised score, relevance)
    referent: tuple[tuple[int, int, int], float] | None = None  # (doc, slot, line), relevance
    for unit in units:
        if unit.kind == "steps":
            continue
        rel, own = scorer.of(unit.text, unit.context, titles.get(unit.doc, ""))
        line = (unit.doc, unit.order[0], unit.order[1] // 100)
        if referent is not None and referent[0] == line and _ANAPHOR.match(unit.text):
            # "This takes up to 2 business days." is about what the sentence before it named
            # ("before we remove 2FA"): it holds the fact but none of the topic words
            rel = max(rel, REFERENT_CREDIT * referent[1])
        referent = (line, rel) if unit.kind == "sentence" else None
        unit.mentions = own > 0
        unit.match = answer_match(ask, unit.text, code)
        if wait and unit.match > 0 and lasting_only(unit.text):
            unit.match = 0.0  # "valid for 7 days" is not how long it takes
        unit.score = priors[unit.order[0]] * _value(rel, unit.match)
        unit.score *= _brevity(unit.text)
        if is_navigational(unit.text):
            pointers.append((unit, unit.score, rel))
            unit.score *= NAVIGATION_PENALTY
        elif unit.doc == 0 and unit.doc not in first_seen and unit.kind == "sentence":
            unit.score += LEAD_BONUS
        first_seen.add(unit.doc)
        if contradicts(question, f"{unit.context} {unit.text}"):
            unit.score *= OPPOSITE_PENALTY
        if not unit.usable:
            unit.score = 0.0
        if unit.parent is not None:
            steps_children[unit.parent] = max(steps_children[unit.parent], rel)
            mentioned[unit.parent] = mentioned.get(unit.parent, False) or unit.mentions
        if unit.lead_in and unit.group is not None:
            lead_ins[unit.group] = (rel, unit.mentions)
    for unit in units:
        if unit.kind == "steps":
            unit.match = 1.0 if ask == Ask.STEPS else 0.0
            lead_rel, lead_mentions = lead_ins.get(unit.group, (0.0, False))
            rel = max(steps_children.get(unit.uid, 0.0), lead_rel)
            unit.mentions = mentioned.get(unit.uid, False) or lead_mentions
            unit.score = priors[unit.order[0]] * _value(rel, unit.match)
            if contradicts(question, f"{unit.context} {unit.text}"):
                unit.score *= OPPOSITE_PENALTY
    _hand_on(units, pointers)


# A pointer at a procedure ("these steps usually fix it", "work through the steps below")
_STEPS_POINTER = re.compile(
    r"\b(?:these|the following|the|this) (?:steps|checks)\b|\bsteps below\b", re.I
)


def _hand_on(units: list[Unit], pointers: list[tuple[Unit, float, float]]) -> None:
    """A pointer or a sympathy line restates the question ("We're sorry your product arrived
    broken", "Here's how to reset it"); what it points at is the answer, so the prose sentence
    or list right after it in the same passage scores at least as well as the pointer would; a
    pointer at steps ("these steps usually fix it") points at the article's next numbered list."""
    for pointer, score, rel in pointers:
        if _STEPS_POINTER.search(pointer.text):
            # "these steps usually fix it" points at the article's next numbered list, which
            # may sit under a heading of its own, in a later passage
            lists = [u for u in units if u.doc == pointer.doc and u.kind == "steps"]
            later = [u for u in lists if u.order > pointer.order]
            if later:
                nxt = min(later, key=lambda u: u.order)
                nxt.score = max(nxt.score, score)
                nxt.mentions = nxt.mentions or rel > 0
                continue
        later = [
            u
            for u in units
            if u.doc == pointer.doc
            and u.order[0] == pointer.order[0]
            and u.order > pointer.order
            and u.parent is None
            and u.usable
            and not u.lead_in
        ]
        if later:
            nxt = min(later, key=lambda u: u.order)
            if not is_navigational(nxt.text):
                nxt.score = max(nxt.score, score)
                nxt.mentions = nxt.mentions or rel > 0


def _overlaps(a: Unit, b: Unit) -> bool:
    """A steps list and a sentence inside it say the same thing twice."""
    return a.parent == b.uid or b.parent == a.uid


def pick(
    units: list[Unit], ask: Ask, max_sentences: int, strong_docs: set[int], language: str = "en"
) -> list[Unit]:
    """Anchor on the best unit, add a supporting neighbour, then other strong units.
    `language` (ISO 639-1): the units', for telling an instruction from a statement."""
    pool = [u for u in units if u.score > 0 and u.usable and not u.lead_in]
    if not pool:
        return []
    anchor = max(pool, key=lambda u: (u.score, -u.doc, -len(u.text)))
    typed = ask in (Ask.DURATION, Ask.AMOUNT, Ask.COUNT)
    facts = [u for u in pool if u.match >= 1.0]
    if typed and facts and anchor.match < 1.0:  # "how much" is answered by an amount if any fits
        fact = max(facts, key=lambda u: (u.score, -u.doc, -len(u.text)))
        anchor = fact if fact.score >= FACT_RATIO * anchor.score else anchor
    if ask == Ask.STEPS and anchor.kind == "steps":
        anchor = _main_procedure(anchor, units)
    if anchor.parent is not None and _needs_its_list(anchor, units, typed, language):
        # a step that leans on the one before ("Card refunds then take...", "Once you're in,
        # ...") reads right only as the whole numbered list, which also keeps its first fact
        parent = next((u for u in units if u.uid == anchor.parent), None)
        if parent is not None:
            anchor = parent
    chosen = [anchor, *_context(units, anchor, typed)]
    by_uid = {u.uid: u for u in units}
    paragraphs = _short_paragraphs(units)
    # between equally good supports, the one that needs no opening sentence costs less
    for unit in sorted(pool, key=lambda u: (-u.score, _earlier(u, paragraphs))):
        if _cost(chosen) >= max_sentences or unit.score < SUPPORT_RATIO * anchor.score:
            break
        instructs = unit.parent is not None and _instructs(unit, language)
        if instructs and not (typed and unit.match >= 1.0):
            # an instruction quoted as support is read as the procedure it belongs to ("Go to
            # Account > Privacy > Delete my account." alone is not how to delete it): its whole
            # list, or nothing; a step that states a fact ("Solid amber means no internet") or
            # holds the asked-for duration or amount still stands alone
            if not unit.mentions:
                continue
            unit, whole = by_uid.get(unit.parent, unit), True
        else:
            whole = False
        if unit in chosen or any(_overlaps(unit, c) for c in chosen):
            continue
        if unit.kind == "steps" and any(c.kind == "steps" for c in chosen):
            continue
        if unit.kind == "steps" and not whole and ask != Ask.STEPS:
            continue  # a whole list supports only a how-to answer
        if unit.kind == "steps" and unit.doc != anchor.doc:
            continue  # another article's procedure is another answer, not support for this one
        if unit.kind == "item" and len(unit.text.split()) < 4:
            continue  # "Purple: optical" says nothing on its own
        if not unit.mentions:
            continue  # support must itself be about the question, not just sit under its heading
        if unit.kind == "sentence" and _ANAPHOR.match(unit.text):
            continue  # a supporting sentence must stand on its own, not start mid-thought
        if typed and unit.match == 0:
            continue  # a support sentence for "how long" must hold a time too
        if unit.doc != anchor.doc and (
            unit.doc not in strong_docs or unit.score < OTHER_DOC_RATIO * anchor.score
        ):
            continue  # another article must be nearly as good to be worth a second citation
        # a later sentence of a short paragraph comes with the sentences it follows, or not
        adding = [*(_opening(unit, paragraphs, chosen) or []), unit]
        if _cost([*chosen, *adding]) > max_sentences or _length([*chosen, *adding]) > MAX_CHARS:
            continue
        chosen.extend(adding)
    return _with_lead_ins(_whole_bullets(_whole_lists(chosen, units), units, anchor), units)


# A lead-in that makes a procedure a fallback: it applies when what came before did not help
_FALLBACK = re.compile(
    r"^(?:if (?:the |this |that |it |they |these |your )?(?:\w+ )?(?:\w+ )?(?:continues?|persists?|"
    r"keeps? happening|still\b|comes? back|doesn[’']?t (?:help|work|fix)|didn[’']?t (?:help|"
    r"work|fix)|don[’']?t (?:help|work|fix))|if (?:none of (?:this|these|the above)|nothing "
    r"(?:else )?(?:works|helps|worked|helped))|still (?:not|no|nothing|having|doesn)\b)",
    re.I,
)


def _main_procedure(anchor: Unit, units: list[Unit]) -> Unit:
    """A fallback procedure ("If the crashes continue, send a report:") is no first answer to
    "how do I fix it" when the article's main procedure, an earlier numbered list, was
    retrieved too: troubleshooting articles give the fix first and what to do if it fails
    after it, so the earlier list answers and the fallback may still follow as support."""
    lead = next((u for u in units if u.lead_in and u.group == anchor.group), None)
    if anchor.group is None or lead is None or not _FALLBACK.match(lead.text):
        return anchor
    earlier = [
        u
        for u in units
        if u.kind == "steps" and u.doc == anchor.doc and u.order < anchor.order and u.usable
    ]
    return min(earlier, key=lambda u: u.order) if earlier else anchor


def _needs_its_list(step: Unit, units: list[Unit], typed: bool, language: str = "en") -> bool:
    """True when a sentence of a numbered list cannot be quoted alone: it starts mid-thought, or
    it is a later step of a how-to (step 3 of a procedure is not an answer without 1 and 2), or
    the first of several and an instruction.
    A later step that holds the asked-for fact ("the link expires after 60 minutes" for "how
    long is the link valid") answers by itself."""
    if _ANAPHOR.match(step.text):
        return True
    if typed and step.match >= 1.0:
        return False
    steps = [u.order for u in units if u.parent == step.parent]
    # a first step that instructs is no answer alone either: "Go to Account > Privacy > Delete
    # my account." is not how to delete it when step 2 confirms
    first = step.order <= min(steps, default=step.order)
    return not first or (len(steps) > 1 and _instructs(step, language))


def _instructs(step: Unit, language: str = "en") -> bool:
    """True for a sentence that tells the reader to do something ("Go to...", "Select...",
    "Ouvrez..."): one instruction of a procedure, as opposed to a fact stated inside a list."""
    return answer_match(Ask.STEPS, step.text, language) > 0


def _whole_lists(chosen: list[Unit], units: list[Unit]) -> list[Unit]:
    """Two sentences from one steps list read better as the numbered list itself."""
    by_uid = {u.uid: u for u in units}
    for parent in {u.parent for u in chosen if u.parent is not None}:
        kids = [u for u in chosen if u.parent == parent]
        if len(kids) >= 2 and parent in by_uid and not any(u.kind == "steps" for u in chosen):
            at = chosen.index(kids[0])
            chosen = [u for u in chosen if u not in kids]
            chosen.insert(at, by_uid[parent])
    return chosen


def _whole_bullets(chosen: list[Unit], units: list[Unit], anchor: Unit) -> list[Unit]:
    """A bulleted list that a line introduces ("Before you start:") is one thought: quoted, it
    comes whole and in order, not one bullet of five. When the whole list would push a reply
    past `MAX_CHARS`, a list that only supports the answer is left out, and the anchor's own
    list keeps just the bullets chosen (a long list of options answering one of them)."""
    led = {u.group for u in units if u.lead_in and u.group is not None}
    for group in {u.group for u in chosen if u.kind == "item" and u.group in led}:
        items = [u for u in units if u.kind == "item" and u.group == group and u.usable]
        missing = [u for u in items if u not in chosen]
        if not missing:
            continue
        if _length([*chosen, *missing]) <= MAX_CHARS:
            at = min(chosen.index(u) for u in chosen if u in items)
            rest = [u for u in chosen if u not in items]
            chosen = [*rest[:at], *items, *rest[at:]]
        elif anchor not in items:
            chosen = [u for u in chosen if u not in items]
    return chosen


def _with_lead_ins(chosen: list[Unit], units: list[Unit]) -> list[Unit]:
    """A quoted list or list item comes with the line that introduces it ("To reset it:")."""
    groups = {u.group for u in chosen if u.kind in ("steps", "item") and u.group is not None}
    return chosen + [u for u in units if u.lead_in and u.group in groups and u not in chosen]


def _length(units: list[Unit]) -> int:
    """Characters the units will take in the reply."""
    return sum(len(line) + 1 for u in units for line in u.lines)


def _cost(units: list[Unit]) -> int:
    """Sentences against the budget: a steps list costs more than one sentence."""
    return sum(LIST_COST if u.kind == "steps" else 1 for u in units)


def _context(units: list[Unit], anchor: Unit, typed: bool = False) -> list[Unit]:
    """The prose neighbour an anchor needs: the sentence an "It..."/"This..." refers back to,
    the next one after a short anchor, or a neighbour relevant enough to stand on its own."""
    same = [u for u in units if u.doc == anchor.doc and u.kind != "steps" and u.parent is None]
    if anchor.kind != "sentence" or anchor not in same:
        return []
    paragraph = _paragraph(same, anchor, typed)
    if paragraph is not None:
        return paragraph
    at = same.index(anchor)
    before = same[at - 1 : at] if at else []
    after = same[at + 1 : at + 2]
    ok = [
        u
        for u in before + after
        if u.kind == "sentence"
        and u.usable
        and not u.lead_in
        and not is_navigational(u.text)
        and u.order[0] == anchor.order[0]
    ]
    if _ANAPHOR.match(anchor.text):
        found = [u for u in ok if u in before]
    elif len(anchor.text.split()) < SHORT_ANCHOR_WORDS:
        # a short anchor brings the sentence after it, or, at the end of its passage, the one
        # before ("No appointment is needed." alone says little)
        found = [u for u in ok if u in after] or [u for u in ok if u in before]
    else:
        found = [u for u in ok if u.score >= CONTEXT_RATIO * anchor.score][:1]
    if found and found[0] in before and _ANAPHOR.match(found[0].text):
        # the sentence brought in for context leans back itself ("This takes up to 2 days."):
        # it needs its own predecessor, or it is left out
        earlier = _context(units, found[0], typed) if found[0] is not anchor else []
        found = [*earlier, *found] if earlier else []
    return found


def _paragraph(same: list[Unit], anchor: Unit, typed: bool) -> list[Unit] | None:
    """The rest of the anchor's paragraph when the whole paragraph is short: a help article's
    paragraph is one thought (its first sentence states the fact, the next ones qualify it),
    so quoting it from its start never starts mid-thought nor drops the fact it opens with.
    After a duration, amount or count the sentences that follow are often another fact ("A label
    costs €4.95" after "refunds take 5 days"), so there only those leaning back on it or about
    the question in their own right (scoring like a context neighbour) join: "your first payment
    is taken on day 15" after "we email you 3 days before the trial ends"."""
    line = (anchor.order[0], anchor.order[1] // 100)
    members = [u for u in same if u.kind == "sentence" and (u.order[0], u.order[1] // 100) == line]
    if len(members) < 2 or sum(len(u.text.split()) for u in members) > PARAGRAPH_WORDS:
        return None
    out = []
    for unit in members:
        if unit is anchor or not unit.usable or unit.lead_in or is_navigational(unit.text):
            continue
        if (
            unit.order > anchor.order
            and typed
            and not _ANAPHOR.match(unit.text)
            and unit.score < CONTEXT_RATIO * anchor.score
        ):
            continue
        out.append(unit)
    return out


def _line(unit: Unit) -> tuple[int, int, int]:
    """The paragraph a unit sits in: its article, passage and line."""
    return (unit.doc, unit.order[0], unit.order[1] // 100)


def _short_paragraphs(units: list[Unit]) -> dict[tuple[int, int, int], list[Unit]]:
    """Prose paragraphs of two or more sentences and at most `PARAGRAPH_WORDS` words, by line,
    their sentences in reading order (units come in reading order)."""
    lines: dict[tuple[int, int, int], list[Unit]] = defaultdict(list)
    for unit in units:
        if unit.kind == "sentence" and unit.parent is None:
            lines[_line(unit)].append(unit)
    return {
        line: members
        for line, members in lines.items()
        if len(members) >= 2 and sum(len(u.text.split()) for u in members) <= PARAGRAPH_WORDS
    }


def _earlier(unit: Unit, paragraphs: dict[tuple[int, int, int], list[Unit]]) -> int:
    """How many sentences come before `unit` in its short paragraph (0 outside one)."""
    members = paragraphs.get(_line(unit)) if unit.kind == "sentence" else None
    return members.index(unit) if members and unit in members else 0


def _opening(
    unit: Unit, paragraphs: dict[tuple[int, int, int], list[Unit]], chosen: list[Unit]
) -> list[Unit]:
    """The sentences a supporting sentence's short paragraph opens with, not yet chosen.

    A help paragraph is one thought whose first sentence states it (see `_paragraph`): a later
    sentence quoted alone drops that first fact ("Changing country affects VAT..." without "The
    new address must be in the same country."). So support from a paragraph of at most
    `PARAGRAPH_WORDS` words comes with the sentences before it in that paragraph, or not at all
    when they do not fit the budget. Empty when the unit is not a prose sentence of such a
    paragraph (a long paragraph's sentences stand alone, as before), when its opening cannot be
    quoted (a lead-in, a pointer), or when nothing before it is missing."""
    members = paragraphs.get(_line(unit)) if unit.kind == "sentence" else None
    if not members or unit not in members:
        return []
    before = members[: members.index(unit)]
    if any(not u.usable or u.lead_in or is_navigational(u.text) for u in before):
        return []  # an opening that cannot be quoted: the sentence keeps the old rule
    return [u for u in before if u not in chosen]


def compose(
    passages: list[Passage],
    weights: dict[str, float],
    ask: Ask,
    *,
    question: str = "",
    max_sentences: int = 4,
    max_documents: int = 3,
    analyzer: Analyzer = ANALYZER,
) -> tuple[str, list[Source]]:
    """Pick the answering units, group them per article (reading order) and cite each group.
    `analyzer`: the language the passages are in (the one searched in), which stemmed
    `weights`' terms: the sentences' words are stemmed with it too."""
    docs: dict[str, int] = {}
    best: dict[str, Passage] = {}
    for passage in passages:
        if passage.document_id not in docs and len(docs) < max_documents:
            docs[passage.document_id] = len(docs)
            best[passage.document_id] = passage
    passages = [p for p in passages if p.document_id in docs]
    top = max(best[next(iter(docs))].score, 1e-9)
    units, slots = build_units(passages, docs)
    doc_prior = {d: min(1.0, p.score / top) ** DOC_EXPONENT for d, p in best.items()}
    priors = [
        doc_prior[p.document_id]
        * min(1.0, p.score / max(best[p.document_id].score, 1e-9)) ** CHUNK_EXPONENT
        for p in slots
    ]
    strong = {docs[d] for d, p in best.items() if p.score >= STRONG_RATIO * top}
    titles = {i: best[d].title for d, i in docs.items()}
    score_units(units, weights, ask, priors, titles, question, analyzer)
    chosen = pick(units, ask, max_sentences, strong, iso_code(analyzer))
    if not chosen:  # never say nothing: fall back to the best passage's opening
        chosen = [u for u in units if u.doc == 0 and u.usable][:2] or units[:1]
    sources: list[Source] = []
    parts: list[str] = []
    for doc in sorted({u.doc for u in chosen}):
        group = sorted((u for u in chosen if u.doc == doc), key=lambda u: u.order)
        passage = slots[max(group, key=lambda u: u.score).order[0]]
        number = len(sources) + 1
        parts.append(render(group, number))
        snippet = " ".join(line for u in group for line in u.lines)
        sources.append(
            Source(
                index=number,
                chunk_id=passage.chunk_id,
                document_id=passage.document_id,
                external_id=passage.external_id,
                title=passage.title,
                snippet=" ".join(snippet.split())[:300],
                score=best[passage.document_id].score,
                url=passage.url,
            )
        )
    return "\n\n".join(parts), sources
