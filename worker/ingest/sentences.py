"""Offline, linear-time English sentence splitter for knowledge-base text.

Haystack's sentence splitting needs NLTK data (unavailable offline) and pysbd is
super-linear (~26 s per MB measured), so this is a rule-based regex splitter.
"""

from __future__ import annotations

import re

__all__ = ["split_paragraphs", "split_sentences"]

# Abbreviations after which a period never ends a sentence (a name or word follows).
_NEVER_END = frozenset(
    """
    mr mrs ms mx dr prof rev hon st sr jr gen col capt lt sgt mt ft
    e.g eg i.e ie cf vs v approx ca dept incl excl
    """.split()
)
# Abbreviations that precede a number ("No. 5", "p. 12", "Jan. 3"); elsewhere "no." is a word.
_BEFORE_NUMBER = frozenset(
    """
    no nos nr fig figs eq vol pp pg p ch sec art ref tel ph ext est min max
    jan feb mar apr jun jul aug sep sept oct nov dec
    """.split()
)
# Abbreviations that often close a sentence: a boundary only if a capitalised word follows.
_MAYBE_END = frozenset(
    "etc inc ltd co corp llc plc gmbh a.m p.m am pm al bros jr sr u.s u.k e.u".split()
)

_LIST_MARKER = re.compile(r"^\s*(?:[-*+•–·▪◦]|\d{1,3}[.)]|[A-Za-z][.)]|\(\w{1,3}\))\s+")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s")
_TABLE_ROW = re.compile(r"^\s*\|")
_TERMINAL = re.compile(r"[.!?…:;]['\"’”)\]]*$")
# A run of terminators, optional closing quotes/brackets, then whitespace.
_CANDIDATE = re.compile(r"(?:\.{3}|…|[.!?]+)['\"’”)\]]*(?=\s)")
_TOKEN_BEFORE = re.compile(r"(\S+?)\.*$")
_NEXT_CHAR = re.compile(r"\s*(\S?)")
_LEAD_NUMBER = re.compile(r"\s*\(?\d{1,3}(?=[.)])")
_BLANK_SPLIT = re.compile(r"\n[ \t]*\n+")
_SPACES = re.compile(r"[ \t\f\v\u00a0]+")


def _is_structural(line: str) -> bool:
    """Lines that always stand on their own: headings, list items, table rows."""
    return bool(_HEADING.match(line) or _LIST_MARKER.match(line) or _TABLE_ROW.match(line))


def _is_title_like(line: str) -> bool:
    """Short, unpunctuated, capitalised lines are headings even without markdown syntax."""
    words = line.split()
    return (
        0 < len(words) <= 10
        and not _TERMINAL.search(line)
        and not line.endswith((",", "-", "–", "&", "/"))
        and (line[0].isupper() or line[0].isdigit())
    )


def _ends_sentence(line: str, nxt: str) -> bool:
    """A line ending in a real terminator closes the sentence even if the next line wraps."""
    m = _TERMINAL.search(line)
    if not m or nxt[:1].islower():
        return False
    if line[m.start()] in ":;":
        return True
    return _is_boundary(line + " " + nxt, m.start(), len(line))


def _blocks(text: str) -> list[tuple[str, bool]]:
    """Join soft-wrapped lines; break at paragraphs, headings, list items and title lines.

    Each block comes with whether it opens a paragraph: a blank line, a heading, a list item,
    a title line and the first line after any of those start one; a line that merely ends a
    sentence before the next wrapped line (hard-wrapped PDF text) does not.
    """
    blocks: list[tuple[str, bool]] = []
    for para in _BLANK_SPLIT.split(text):
        lines = [_SPACES.sub(" ", ln).strip() for ln in para.split("\n")]
        lines = [ln for ln in lines if ln]
        parts: list[str] = []
        opens = True  # the block being built starts a paragraph
        for i, line in enumerate(lines):
            if (
                parts
                and parts[-1].endswith("-")
                and parts[-1][-2:-1].isalpha()
                and line[:1].islower()
            ):
                parts[-1] += line  # hyphenated soft wrap
            else:
                parts.append(line)
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            if not nxt:
                continue
            own = (
                _is_structural(line)
                or _is_structural(nxt)
                or (_is_title_like(line) and (nxt[:1].isupper() or nxt[:1].isdigit()))
            )
            if own or _ends_sentence(line, nxt):
                blocks.append((" ".join(parts), opens))
                parts, opens = [], own
        if parts:
            blocks.append((" ".join(parts), opens))
    return blocks


def _is_boundary(block: str, start: int, end: int) -> bool:
    """Decide whether the terminator at block[start:end] really ends a sentence."""
    mark = block[start:end]
    nxt = _NEXT_CHAR.match(block, end).group(1)
    if not nxt:
        return True
    if nxt.islower():
        return False  # "approx. five", "e.g. the", "Yahoo! is"
    if "!" in mark or "?" in mark:
        return True
    window = block[max(0, start - 40) : start + 1]
    head = window.rsplit(None, 1)[-1] if window.strip() else ""
    if "..." in mark or "…" in mark:
        return nxt.isupper() or not nxt.isalnum()
    match = _TOKEN_BEFORE.match(head.lstrip("(\"'“‘[")) if head else None
    token = match.group(1) if match else ""
    low = token.lower()
    if low in _NEVER_END:
        return False
    if low in _BEFORE_NUMBER:
        return not (nxt.isdigit() or nxt == "#")
    if low in _MAYBE_END:
        return nxt.isupper()
    if len(token) == 1 and token.isupper():
        return False  # initial: "J. Smith"
    lead = _LEAD_NUMBER.match(block)
    if token.isdigit() and lead and lead.end() == start:
        return False  # inline list number at block start: "1. Install"
    if "." in token and token.replace(".", "").isalpha() and len(token) <= 6:
        return nxt.isupper()  # dotted acronym like "U.S." or "Ph.D."
    return True


def _split_block(block: str) -> list[str]:
    """Split one block of running text into sentences at confirmed terminators."""
    out: list[str] = []
    begin = 0
    for m in _CANDIDATE.finditer(block):
        if m.end() <= begin:
            continue
        if _is_boundary(block, m.start(), m.end()):
            piece = block[begin : m.end()].strip()
            if piece:
                out.append(piece)
            begin = m.end()
    tail = block[begin:].strip()
    if tail:
        out.append(tail)
    return out


def split_paragraphs(text: str) -> list[list[str]]:
    """Sentences grouped by paragraph (a list item or table row is a paragraph of its own), so
    the chunker can keep the breaks a reader sees and the composer can tell one thought from the
    next, and the paragraph after a list from the list's last step."""
    if not text or not text.strip():
        return []
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    paragraphs: list[list[str]] = []
    for block, opens in _blocks(text):
        sentences = _split_block(block)
        if not sentences:
            continue
        if opens or not paragraphs:
            paragraphs.append(sentences)
        else:
            paragraphs[-1].extend(sentences)
    return paragraphs


def split_sentences(text: str) -> list[str]:
    """Split text into sentences so chunks and citations never cut a sentence in half."""
    return [s for paragraph in split_paragraphs(text) for s in paragraph]
