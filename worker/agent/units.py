"""Retrieved passages as quotable units (sentences, list items, table rows, steps lists) and back.

Chunk text is markdown-ish: a paragraph's sentences share a line, and each paragraph, list item
and table row has its own (see `worker.ingest.chunking`), so a prose line is one paragraph and a
list's last line is its last item alone. A numbered list is kept whole (steps read badly out of
order) but its sentences are also units, so "how long is the link valid" can quote one step; a
table row becomes a sentence that carries its column headers ("Visa — Time after we issue the
refund: 3–5 business days.").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from worker.agent.base import Passage
from worker.ingest.sentences import split_sentences

_MARKDOWN = (
    (re.compile(r"!\[[^\]]*\]\([^)]*\)"), ""),
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),
    (re.compile(r"(\*\*|__|`)"), ""),
    (re.compile(r"^\s{0,3}#{1,6}\s+"), ""),
)
_NUMBERED = re.compile(r"^\s*\d{1,3}[.)]\s+")
_BULLET = re.compile(r"^\s*[-*+•]\s+")
_TABLE_ROW = re.compile(r"^\s*\|")
_TABLE_RULE = re.compile(r"^\s*\|?[\s:|-]*-{2,}[\s:|-]*$")
_MAX_LIST_LINES = 8
_STEP_SENTENCES = 2  # a step shows its instruction and one remark; the rest is detail


def clean(sentence: str) -> str:
    """Chat-friendly text: markdown links, emphasis and heading marks removed."""
    for pattern, repl in _MARKDOWN:
        sentence = pattern.sub(repl, sentence)
    return " ".join(sentence.split())


@dataclass(eq=False)  # identity: two units may read alike but sit in different places
class Unit:
    """The smallest quotable piece: a sentence, a list item, a table row or a whole steps list.

    `group` ties a bullet list's items to their lead-in line; `parent` links a sentence inside a
    steps list to that list, so the two are never quoted together.
    """

    lines: list[str]
    doc: int
    order: tuple[int, int]
    kind: str  # "sentence" | "item" | "row" | "steps"
    context: str = ""
    group: int | None = None
    parent: int | None = None
    lead_in: bool = False
    usable: bool = True
    score: float = 0.0
    match: float = 0.0
    mentions: bool = False  # the text itself (not just its heading) has a question word
    key: str = ""  # identity for de-duplication across overlapping chunks
    uid: int = 0

    @property
    def text(self) -> str:
        """All lines as one string (for term matching and answer-type patterns)."""
        return " ".join(self.lines)


def _cells(row: str) -> list[str]:
    """The cells of a markdown table row."""
    return [clean(c) for c in row.strip().strip("|").split("|")]


def _row_text(cells: list[str], header: list[str] | None) -> str:
    """A table row as a sentence: "Visa, Mastercard — Time after we issue the refund: 3–5 days."."""
    first, rest = cells[0], cells[1:]
    if header and len(header) == len(cells):
        rest = [f"{h}: {c}" if h else c for h, c in zip(header[1:], rest, strict=True)]
    body = "; ".join(r for r in rest if r)
    return f"{first} — {body}." if body else f"{first}."


class _Parser:
    """Turns passages into units, numbering them so lists and parents can refer to each other."""

    def __init__(self) -> None:
        self.units: list[Unit] = []
        self.groups = 0

    def add(self, unit: Unit) -> Unit:
        """Register a unit; its `uid` is what steps lists and their sentences refer to."""
        unit.uid = len(self.units)
        self.units.append(unit)
        return unit

    def parse(self, content: str, doc: int, slot: int, context: str) -> None:
        """Units of one passage; `slot` is its place in reading order among all passages."""
        lines = [ln.strip() for ln in content.split("\n") if ln.strip()]
        header: list[str] | None = None
        i = 0
        while i < len(lines):
            at = (slot, i)
            line = lines[i]
            if _TABLE_ROW.match(line):
                if _TABLE_RULE.match(line):
                    i += 1
                    continue
                if i + 1 < len(lines) and _TABLE_RULE.match(lines[i + 1]):
                    header, i = _cells(line), i + 2
                    continue
                text = _row_text(_cells(line), header)
                heads = " ".join(header or [])
                order = (at[0], i * 100)
                row = self.add(Unit([text], doc, order, "row", f"{context} {heads}"))
                row.key = " | ".join(_cells(line))  # the same row with or without its header
                i += 1
                continue
            j = i
            while j < len(lines) and (_NUMBERED.match(lines[j]) or _BULLET.match(lines[j])):
                j += 1
            if j > i:
                self._list(lines[i:j], doc, at, context)
                i = j
                continue
            for k, sentence in enumerate(split_sentences(line)):
                self._sentence(sentence, doc, (at[0], i * 100 + k), context)
            i += 1

    def _sentence(self, text: str, doc: int, order: tuple[int, int], context: str) -> Unit:
        """A prose sentence; questions ("Lost your phone?") and fragments can't be quoted alone."""
        text = clean(text)
        usable = not (text.endswith("?") or len(text.split()) < 4)
        return self.add(Unit([text], doc, order, "sentence", context, usable=usable))

    def _list(self, lines: list[str], doc: int, at: tuple[int, int], context: str) -> None:
        """A run of list lines: a numbered run stays whole as steps, bullets become items."""
        numbered = bool(_NUMBERED.match(lines[0]))
        body = [split_sentences(_BULLET.sub("", _NUMBERED.sub("", ln))) or [ln] for ln in lines]
        lead = self.units[-1] if self.units and self.units[-1].text.endswith(":") else None
        self.groups += 1
        if lead is not None and (lead.doc, lead.order[0]) == (doc, at[0]):
            lead.lead_in, lead.group = True, self.groups
        base = at[1] * 100
        if numbered:
            marks = [_NUMBERED.match(ln) or _BULLET.match(ln) for ln in lines]
            shown = [
                clean(" ".join([m.group(0).strip(), *sents[:_STEP_SENTENCES]] if m else sents))
                for m, sents in zip(marks, body, strict=True)
            ][:_MAX_LIST_LINES]
            steps = self.add(Unit(shown, doc, (at[0], base), "steps", context, group=self.groups))
            for n, sentences in enumerate(body):
                for k, sentence in enumerate(sentences):
                    child = self._sentence(sentence, doc, (at[0], base + n * 100 + k + 1), context)
                    child.parent = steps.uid
        else:
            for n, sentences in enumerate(body):
                order = (at[0], base + n * 100)
                text = clean(" ".join(sentences))
                self.add(Unit([text], doc, order, "item", context, group=self.groups))


@lru_cache(maxsize=8192)
def _parsed(content: str, context: str) -> tuple[tuple[Unit, ...], int]:
    """One passage's units as if it were the only one (doc 0, slot 0, uids and groups from 0),
    and how many list groups it opened; never handed out, only copied (see `_placed`).

    A passage parses the same whatever surrounds it: a lead-in line is only ever taken from
    the same passage, and uids and group numbers are offsets from the passages before it. The
    same KB chunks come back answer after answer, and parsing them (sentence splitting, regex
    cleaning) was about a fifth of an offline answer's CPU, so each is parsed once per process.
    """
    parser = _Parser()
    parser.parse(content, 0, 0, context)
    return tuple(parser.units), parser.groups


def _placed(template: Unit, doc: int, slot: int, uids: int, groups: int) -> Unit:
    """A fresh copy of a cached unit, moved to its passage's place (scores are set on it)."""
    return Unit(
        list(template.lines),
        doc,
        (slot, template.order[1]),
        template.kind,
        template.context,
        group=None if template.group is None else template.group + groups,
        parent=None if template.parent is None else template.parent + uids,
        lead_in=template.lead_in,
        usable=template.usable,
        key=template.key,
        uid=template.uid + uids,
    )


def build_units(passages: list[Passage], docs: dict[str, int]) -> tuple[list[Unit], list[Passage]]:
    """Units of all passages in reading order, and the passages in that order (`order[0]` of a
    unit indexes it). A sentence repeated by the chunker's overlap is kept once."""
    slots = sorted(passages, key=lambda p: (docs[p.document_id], p.position, p.chunk_id))
    units: list[Unit] = []
    groups = 0
    for slot, passage in enumerate(slots):
        heading = passage.section if passage.section != passage.title else ""
        templates, opened = _parsed(passage.content or "", heading or "")
        doc, uids = docs[passage.document_id], len(units)
        units.extend(_placed(t, doc, slot, uids, groups) for t in templates)
        groups += opened
    seen: set[tuple[int, str]] = set()
    out: list[Unit] = []
    for unit in units:
        key = (unit.doc, unit.key or unit.text)
        if key not in seen:
            seen.add(key)
            out.append(unit)
    return out, slots


def cite(sentence: str, index: int) -> str:
    """Put `[n]` after the sentence it supports, inside the final full stop."""
    if sentence and sentence[-1] in ".!?":
        return f"{sentence[:-1]} [{index}]{sentence[-1]}"
    return f"{sentence} [{index}]"


def render(group: list[Unit], number: int) -> str:
    """One article's units as text: prose flows, list lines keep a line each, cite at the end."""
    pieces: list[tuple[str, bool]] = []  # (text, own line)
    items = [u for u in group if u.kind == "item"]
    for unit in group:
        if unit.kind == "steps":
            pieces.append(("\n".join(unit.lines), True))
        elif unit.kind == "item" and (len(items) > 1 or any(u.lead_in for u in group)):
            pieces.append((f"- {unit.lines[0]}", True))
        elif unit.kind == "item":
            text = unit.lines[0]
            text = text[:1].upper() + text[1:]
            pieces.append((text if text[-1:] in ".!?:" else f"{text}.", False))
        else:
            pieces.append((unit.lines[0], unit.lead_in))
    out = ""
    for k, (text, own_line) in enumerate(pieces):
        if k == len(pieces) - 1:
            text = cite(text, number)
        if not out:
            out = text
        else:
            out += ("\n" if own_line or pieces[k - 1][1] else " ") + text
    return out
