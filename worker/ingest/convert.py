"""Turn an uploaded file's bytes into clean text (headings kept as `#` lines) for chunking.

Each file is parsed once: haystack's converters swallow every exception (MemoryError and time
limits too) and we used to parse the bytes again to say why, so PDF and DOCX are opened here and
handed to the converter's extraction step. Out of memory or time always propagates; callers run
this in `worker.ingest.sandbox`, which bounds both.
"""

from __future__ import annotations

import io
import re
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from haystack.components.converters import (
    DOCXToDocument,
    MarkdownToDocument,
    PyPDFToDocument,
    TextFileToDocument,
)
from haystack.dataclasses import ByteStream

from models.filetypes import DOCX, UnsupportedFileType, decode_text, is_parseable

__all__ = ["ConversionError", "extract_text", "make_preview"]

_FRONTMATTER = re.compile(r"\A---[ \t]*\r?\n.*?\r?\n---[ \t]*(?:\r?\n|\Z)", re.S)
_EMPHASIS = (
    re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*"),
    re.compile(r"(?<![\w*])\*(?=[^\s*])([^*\n]+?)(?<=[^\s*])\*(?![\w*])"),
)
_LIGATURES = str.maketrans({"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "st"})
_INVISIBLE = re.compile("[\u00ad\u200b\u200c\u200d\u2060\ufeff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")
_HSPACE = re.compile(r"[^\S\n]+")
_MANY_BREAKS = re.compile(r"\n{3,}")
_MD_HEADING = re.compile(r"^#{1,6}\s+", re.M)
_DOCX_HEADING_STYLE = re.compile(r"^(?:heading|überschrift|titre|titolo|título)\s*(\d)", re.I)
# Out of memory or out of time is final: never caught as "a parser bug", never parsed again.
_FINAL = (MemoryError, SoftTimeLimitExceeded)
MAX_PDF_PAGES = 2000  # a help-centre manual; more is a document we should not index whole
_LOCKED = "the PDF is password-protected; upload an unlocked copy"


class ConversionError(Exception):
    """The file could not be turned into text; the message is shown to the uploader."""


@cache
def _converter(kind: str) -> Any:
    """One converter per type per process: building them imports heavy parsers."""
    if kind == "pdf":
        return PyPDFToDocument()
    if kind == "docx":
        return DOCXToDocument(table_format="markdown")
    if kind == "html":  # trafilatura itself, as HTMLToDocument would call it, minus its try
        from trafilatura.settings import use_config

        config = use_config()
        for key in ("MIN_EXTRACTED_SIZE", "MIN_OUTPUT_SIZE", "MIN_FILE_SIZE"):
            config.set("DEFAULT", key, "1")  # help-centre pages are often short
        return {
            "output_format": "markdown",  # keeps headings as `#` lines for section chunking
            "include_comments": False,
            "include_images": False,
            "include_links": False,
            "include_tables": True,
            "deduplicate": False,
            "config": config,
        }
    if kind == "markdown":
        return MarkdownToDocument(progress_bar=False)
    return TextFileToDocument(encoding="utf-8")


def _run(kind: str, data: bytes) -> str | None:
    """Run a converter; None means it gave up (haystack logs and skips instead of raising)."""
    docs = _converter(kind).run(sources=[ByteStream(data=data)])["documents"]
    if not docs:
        return None
    return "\n\n".join(d.content or "" for d in docs)


def _decode(data: bytes) -> str:
    """Text formats: decode once ourselves so UTF-16 and BOMs behave the same everywhere."""
    try:
        return decode_text(data)
    except UnsupportedFileType as exc:
        raise ConversionError(f"could not read the file as text: {exc.detected}") from None


# A list item's marker at the start of its first line: indent, number or none, the `.`/`)` or
# bullet character, the space after it (escaping the character makes it literal text).
_LIST_MARKER = re.compile(r"^(\s*)(\d{1,9})?([.)\-*+])(\s+)")


def _markdown_with_headings(source: str) -> str:
    """Escape top-level headings and list markers so the plain renderer keeps them as literal
    `#` lines and `1.` / `-` items.

    The renderer drops both; without headings the chunker cannot cut sections, and without
    item markers a how-to's numbered steps reach the answer as loose sentences (steps 1-2 of
    "reset your password" were then left out, and the rest lost their numbers).
    """
    from markdown_it import MarkdownIt

    source = _FRONTMATTER.sub("", source, count=1)
    tokens = MarkdownIt("commonmark").parse(source)
    lines = source.split("\n")
    for tok in tokens:
        if tok.type == "list_item_open" and tok.map:
            first = tok.map[0]
            lines[first] = _LIST_MARKER.sub(r"\1\2\\\3\4", lines[first], count=1)
    for i in range(len(tokens) - 1, -1, -1):
        tok = tokens[i]
        if tok.type != "heading_open" or tok.level != 0 or not tok.map:
            continue
        start, end = tok.map
        content = tokens[i + 1].content.strip() if i + 1 < len(tokens) else ""
        if content:
            lines[start:end] = ["", "\\" + "#" * int(tok.tag[1:]) + " " + content, ""]
    return "\n".join(lines)


def _docx_headings(document: Any) -> list[tuple[int, str]]:
    """(level, text) of heading-styled paragraphs, which DOCXToDocument flattens to plain lines."""
    from docx.oxml.ns import qn
    from docx.text.paragraph import Paragraph

    # Resolve style ids once: Paragraph.style scans every style per call (~1 ms a paragraph).
    names = {style.style_id: style.name or "" for style in document.styles}
    headings: list[tuple[int, str]] = []
    for element in document.element.body.iterchildren(qn("w:p")):
        style_id = element.xpath("string(w:pPr/w:pStyle/@w:val)")
        name = names.get(style_id, "") if style_id else ""
        level = 1 if name.lower() == "title" else 0
        if m := _DOCX_HEADING_STYLE.match(name):
            level = min(max(int(m.group(1)), 1), 6)
        if level and (text := Paragraph(element, document).text.strip()):
            headings.append((level, text))
    return headings


def _mark_headings(text: str, headings: list[tuple[int, str]]) -> str:
    """Prefix the converter's lines that match the heading paragraphs, in document order."""
    if not headings:
        return text
    lines = text.split("\n")
    pos = 0
    for i, line in enumerate(lines):
        if pos < len(headings) and line.strip() == headings[pos][1]:
            lines[i] = "#" * headings[pos][0] + " " + headings[pos][1]
            pos += 1
    return "\n".join(lines)


@contextmanager
def _failing_as(what: str) -> Iterator[None]:
    """A parser's error becomes `what (Type: message)`; out of memory or time propagates."""
    try:
        yield
    except (ConversionError, *_FINAL):
        raise
    except Exception as exc:  # pypdf, zipfile and lxml raise many types for broken files
        raise ConversionError(f"{what} ({type(exc).__name__}: {str(exc)[:120]})") from exc


def _pdf_text(data: bytes) -> str:
    """Open once, count pages before reading any, then extract with the converter's own loop."""
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError

    with _failing_as("the PDF is damaged or not a real PDF"):
        try:
            reader = PdfReader(io.BytesIO(data))
            pages = len(reader.pages)
        except FileNotDecryptedError:
            raise ConversionError(_LOCKED) from None
    if pages > MAX_PDF_PAGES:
        raise ConversionError(f"the PDF has {pages} pages (limit {MAX_PDF_PAGES})")
    with _failing_as("the PDF could not be read"):  # a locked file already failed on .pages
        text = _converter("pdf")._default_convert(reader)
    if not text.strip():
        raise ConversionError("no extractable text (the PDF may be scanned images without OCR)")
    return text


def _docx_text(data: bytes, max_uncompressed_mb: int) -> str:
    """Check the archive's declared sizes, parse the XML once, take text and headings from it."""
    import docx

    from models.filetypes import ArchiveRefused, check_archive

    with _failing_as("the Word document is damaged"):
        try:
            check_archive(data, max_uncompressed_mb << 20)
        except ArchiveRefused as exc:
            raise ConversionError(str(exc)) from None
        document = docx.Document(io.BytesIO(data))
    with _failing_as("the Word document could not be read"):
        text = "\n".join(_converter("docx")._extract_elements(document))
        return _mark_headings(text, _docx_headings(document))


def _html_text(utf8: bytes) -> str:
    """Trafilatura's main content; the plain fallback only when it found nothing (or tripped
    on odd markup), never after running out of memory or time."""
    from trafilatura import extract

    try:
        text = extract(utf8.decode("utf-8"), **_converter("html"))
    except _FINAL:
        raise
    except Exception:  # trafilatura bugs on odd markup: the plain fallback still reads it
        text = None
    return _strip_emphasis(text) if text and text.strip() else _html_fallback(utf8)


def _strip_emphasis(text: str) -> str:
    """Trafilatura's markdown adds **bold**/*italic* markers that would pollute search text."""
    for pattern in _EMPHASIS:
        text = pattern.sub(r"\1", text)
    return text


def _html_fallback(data: bytes) -> str:
    """Plain text of tiny fragments that trafilatura refuses to extract (e.g. `<p>Hi</p>`)."""
    import lxml.html
    from lxml.html.clean import Cleaner

    try:
        tree = lxml.html.fromstring(data.decode("utf-8"))
        tree = Cleaner(scripts=True, javascript=True, style=True, comments=True).clean_html(tree)
    except _FINAL:
        raise
    except Exception:  # lxml raises ParserError/ValueError on junk
        return ""
    return "\n".join(line.strip() for line in tree.text_content().splitlines())


def clean_text(text: str) -> str:
    """Normalise whitespace and PDF artefacts but keep line and paragraph breaks for chunking."""
    text = unicodedata.normalize("NFC", text).translate(_LIGATURES)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\f", "\n\n")
    text = text.replace("\u2028", "\n").replace("\u2029", "\n\n")
    text = _CONTROL.sub("", _INVISIBLE.sub("", text))
    text = "\n".join(_HSPACE.sub(" ", line).strip() for line in text.split("\n"))
    return _MANY_BREAKS.sub("\n\n", text).strip()


def _convert(data: bytes, content_type: str, max_uncompressed_mb: int) -> str:
    """Dispatch to the right converter and add back the structure it drops."""
    if content_type == "application/pdf":
        return _pdf_text(data)
    if content_type == DOCX:
        return _docx_text(data, max_uncompressed_mb)
    decoded = _decode(data)
    if content_type == "text/html":
        return _html_text(decoded.encode("utf-8"))
    if content_type == "text/markdown":
        text = _run("markdown", _markdown_with_headings(decoded).encode("utf-8"))
    else:
        text = _run("text", decoded.encode("utf-8"))
    if text is None:
        raise ConversionError("the text file could not be read")
    return text


def extract_text(
    data: bytes, content_type: str, filename: str, max_uncompressed_mb: int | None = None
) -> str:
    """Extract searchable text from an upload, raising ConversionError with a human reason.

    MemoryError and SoftTimeLimitExceeded propagate untouched (see the module docstring);
    `max_uncompressed_mb` bounds a DOCX's unpacked size (default: MAX_UNCOMPRESSED_MB)."""
    kind = (content_type or "").split(";")[0].strip().lower()
    label = filename or "file"
    if not data:
        raise ConversionError(f"{label}: the file is empty")
    if not is_parseable(kind):
        raise ConversionError(f"{label}: {kind or 'this file type'} has no extractable text")
    if max_uncompressed_mb is None:
        from models.settings import get_settings

        max_uncompressed_mb = get_settings().max_uncompressed_mb
    try:
        raw = _convert(data, kind, max_uncompressed_mb)
    except ConversionError as exc:
        raise ConversionError(f"{label}: {exc}") from exc.__cause__
    except _FINAL:
        raise
    except Exception as exc:  # a parser bug must not crash the worker task
        raise ConversionError(f"{label}: conversion failed ({type(exc).__name__}: {exc})") from exc
    text = clean_text(raw)
    if not _MD_HEADING.sub("", text).strip():
        raise ConversionError(f"{label}: no extractable text")
    return text


def make_preview(text: str, limit: int = 300) -> str:
    """A short, single-line teaser for document lists; cut on a word boundary."""
    flat = " ".join(_MD_HEADING.sub("", text or "").split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:-–—.") + "…"
