"""Section-aware chunking: whole sentences, packed to a word budget, never crossing a heading.

A chunk keeps the article's paragraph breaks: a paragraph's sentences share a line, and each
paragraph, list item and table row starts a new one (the composer reads a line as one thought).
"""

from __future__ import annotations

import re
from copy import deepcopy
from typing import Any

from haystack import Document, component, default_from_dict, default_to_dict

from worker.ingest.sentences import split_paragraphs

__all__ = ["SectionSentenceSplitter", "chunk_text"]

_MD_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.+?)\s*#*\s*$")
_STRUCTURAL = re.compile(r"^\s*(?:[-*+•–·▪◦]\s|\d{1,3}[.)]\s|\||>)")
_ENDS_SENTENCE = re.compile(r"[.!?…:;][\"')\]”’]*$")
_MAX_SECTION_CHARS = 200
_TITLE_MAX_WORDS = 12


def _is_title_like(line: str) -> bool:
    """Short capitalised line without sentence punctuation ('?' allowed for FAQ headings)."""
    words = line.split()
    return (
        0 < len(words) <= _TITLE_MAX_WORDS
        and len(line) <= 100
        and (line[0].isupper() or line[0].isdigit())
        and not line.endswith((".", ",", ";", ":", "!", "-", "…"))
        and not _STRUCTURAL.match(line)
    )


def _is_body(line: str) -> bool:
    """A line that reads like paragraph text rather than another title or list entry."""
    return len(line.split()) >= 8 or line.rstrip("\"')”’").endswith((".", "!", "?", ":"))


def _split_sections(text: str) -> list[tuple[str | None, str]]:
    """Cut text at headings: markdown `#` lines if any exist, else title-like lines before prose."""
    lines = [ln.strip() for ln in text.split("\n")]
    markdown = any(_MD_HEADING.match(ln) for ln in lines)
    sections: list[tuple[str | None, list[str]]] = [(None, [])]
    prev = ""  # previous line, blank or not
    for i, line in enumerate(lines):
        heading: str | None = None
        if markdown:
            if m := _MD_HEADING.match(line):
                heading = m.group(2).strip()
        elif line and _is_title_like(line) and not (prev and _is_title_like(prev)):
            # a run of short lines is a list, not a heading; a heading introduces prose
            nxt = next((ln for ln in lines[i + 1 :] if ln), "")
            if nxt and not _STRUCTURAL.match(nxt) and _is_body(nxt) and not _is_title_like(nxt):
                heading = line
        if heading is not None:
            sections.append((heading[:_MAX_SECTION_CHARS], []))
        else:
            sections[-1][1].append(line)
        prev = line
    return [(name, "\n".join(body).strip()) for name, body in sections if "\n".join(body).strip()]


# A sentence and whether it opens a paragraph (a new line in the chunk).
_Sentence = tuple[str, bool]


def _hard_split(sentence: str, max_words: int) -> list[str]:
    """A single sentence longer than the budget (tables, run-ons) is cut by words."""
    words = sentence.split()
    return [" ".join(words[i : i + max_words]) for i in range(0, len(words), max_words)]


def _join(sentences: list[_Sentence]) -> str:
    """A paragraph's sentences share a line; a new paragraph, list item, table row or the line
    after an unpunctuated one starts a new line."""
    out = ""
    for s, opens in sentences:
        if not out:
            out = s
        elif opens or _STRUCTURAL.match(s) or not _ENDS_SENTENCE.search(out):
            out += "\n" + s
        else:
            out += " " + s
    return out


def _words(sentence: _Sentence) -> int:
    return len(sentence[0].split())


def _pack(sentences: list[_Sentence], max_words: int, overlap: int, min_words: int) -> list[str]:
    """Greedy packing of whole sentences with N-sentence overlap; tiny tails merge backwards."""
    units: list[_Sentence] = []
    for s, opens in sentences:
        if len(s.split()) > max_words:
            pieces = _hard_split(s, max_words)
            units.extend((p, opens and k == 0) for k, p in enumerate(pieces))
        else:
            units.append((s, opens))
    chunks: list[list[_Sentence]] = []
    current: list[_Sentence] = []
    n_fresh = 0
    for unit in units:
        if n_fresh and sum(map(_words, current)) + _words(unit) > max_words:
            chunks.append(current)
            carry = current[-overlap:] if overlap else []
            while carry and sum(map(_words, carry)) + _words(unit) > max_words:
                carry = carry[1:]
            current, n_fresh = list(carry), 0
        current.append(unit)
        n_fresh += 1
    if n_fresh:
        tail_new = current[len(current) - n_fresh :]
        tail_words = sum(map(_words, tail_new))
        if chunks and tail_words < min_words:
            if sum(map(_words, chunks[-1])) + tail_words <= max_words + min_words:
                chunks[-1] = chunks[-1] + tail_new
                n_fresh = 0
        if n_fresh:
            chunks.append(current)
    return [_join(c) for c in chunks]


def chunk_text(
    text: str,
    *,
    title: str = "",
    max_words: int = 120,
    overlap_sentences: int = 1,
    min_words: int = 20,
) -> list[tuple[str | None, str]]:
    """(section, content) pairs for the ingestion task; text before any heading gets `title`."""
    pairs: list[tuple[str | None, str]] = []
    for section, body in _split_sections(text or ""):
        name = section if section is not None else (title.strip()[:_MAX_SECTION_CHARS] or None)
        sentences = [(s, k == 0) for para in split_paragraphs(body) for k, s in enumerate(para)]
        for content in _pack(sentences, max_words, overlap_sentences, min_words):
            pairs.append((name, content))
    return pairs


@component
class SectionSentenceSplitter:
    """Splits documents into sentence-aligned chunks so citations quote whole sentences."""

    def __init__(self, *, max_words: int = 120, overlap_sentences: int = 1, min_words: int = 20):
        """Validate early: a bad budget would otherwise surface as empty or endless chunks."""
        if max_words < 1:
            raise ValueError(f"max_words must be at least 1, got {max_words}")
        if overlap_sentences < 0:
            raise ValueError(f"overlap_sentences must be 0 or more, got {overlap_sentences}")
        if min_words < 0:
            raise ValueError(f"min_words must be 0 or more, got {min_words}")
        self.max_words = max_words
        self.overlap_sentences = overlap_sentences
        self.min_words = min_words

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document]) -> dict[str, list[Document]]:
        """Chunk each document; chunks inherit its meta plus `position`, `section`, `source_id`."""
        out: list[Document] = []
        for doc in documents:
            if not doc.content or not doc.content.strip():
                continue
            title = str(doc.meta.get("title") or "")
            pairs = chunk_text(
                doc.content,
                title=title,
                max_words=self.max_words,
                overlap_sentences=self.overlap_sentences,
                min_words=self.min_words,
            )
            for position, (section, content) in enumerate(pairs):
                meta = deepcopy(doc.meta)
                meta.update(position=position, section=section, source_id=doc.id)
                out.append(Document(content=content, meta=meta))
        return {"documents": out}

    def to_dict(self) -> dict[str, Any]:
        """Pipelines serialise components; keep the three knobs."""
        return default_to_dict(
            self,
            max_words=self.max_words,
            overlap_sentences=self.overlap_sentences,
            min_words=self.min_words,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SectionSentenceSplitter:
        """Inverse of to_dict."""
        return default_from_dict(cls, data)
