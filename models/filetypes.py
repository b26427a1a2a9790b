"""Upload gatekeeping: detect a file's real type from its bytes and make its name safe.

Pure Python (no haystack) so the web process can validate uploads before queueing them.
"""

from __future__ import annotations

import codecs
import io
import re
import unicodedata
import zipfile
from collections.abc import Callable
from typing import IO

__all__ = [
    "ALLOWED",
    "IMAGE_TYPES",
    "PARSEABLE",
    "ArchiveRefused",
    "UnsupportedFileType",
    "check_archive",
    "decode_text",
    "is_parseable",
    "safe_filename",
    "StreamSniffer",
    "sniff_content_type",
]

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

ALLOWED: dict[str, str] = {
    "text/plain": ".txt",
    "text/markdown": ".md",
    "text/html": ".html",
    "application/pdf": ".pdf",
    DOCX: ".docx",
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "image/webp": ".webp",
}
PARSEABLE = frozenset({"text/plain", "text/markdown", "text/html", "application/pdf", DOCX})
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
_TEXT_TYPES = frozenset({"text/plain", "text/markdown", "text/html"})

# Declared extension -> the type it promises; used to catch files whose name lies.
_EXT_TYPES: dict[str, str] = {
    ".txt": "text/plain",
    ".text": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".pdf": "application/pdf",
    ".docx": DOCX,
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".jpe": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
# Names we refuse whatever the content, because serving or opening them is risky.
_BLOCKED_EXT = frozenset(
    ".exe .dll .so .dylib .bin .com .bat .cmd .scr .msi .msp .ps1 .psm1 .vbs .vbe .js .jse .mjs "
    ".wsf .hta .jar .apk .app .sh .bash .zsh .py .pl .rb .php .svg .svgz .xhtml .xml .lnk "
    ".reg .iso .img .dmg".split()
)

# (magic prefix, human description) for binary formats we recognise but do not accept.
_REJECTED_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x7fELF", "an ELF executable"),
    (b"MZ", "a Windows executable"),
    (b"\xcf\xfa\xed\xfe", "a Mach-O executable"),
    (b"\xce\xfa\xed\xfe", "a Mach-O executable"),
    (b"\xca\xfe\xba\xbe", "a Mach-O/Java binary"),
    (b"\x00asm", "a WebAssembly module"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy Office file (.doc/.xls); save it as .docx"),
    (b"{\\rtf", "an RTF document; save it as .docx"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"BM", "a BMP image"),
)

_HTML_START = re.compile(r"^\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html[\s>])", re.I | re.S)
# C0 controls other than whitespace/ESC, private-use and lone surrogates: signs of binary data.
_JUNK_CHARS = re.compile("[\x01-\x08\x0e-\x1a\x1c-\x1f\ue000-\uf8ff\ud800-\udfff]")
_TAG = re.compile(r"<[^<>]{0,500}>")
_WINDOWS_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL"]
    + [f"COM{i}" for i in range(1, 10)]
    + [f"LPT{i}" for i in range(1, 10)]
)
_MAX_NAME = 200


class UnsupportedFileType(ValueError):
    """Raised for uploads we will not store; the message says what was detected, for the user."""

    def __init__(self, detected: str) -> None:
        super().__init__(f"unsupported file: {detected}")
        self.detected = detected


def _extension(filename: str) -> str:
    """Lower-cased final extension of the base name, '' if none."""
    base = re.split(r"[\\/]", filename or "")[-1]
    stem, dot, ext = base.rpartition(".")
    return f".{ext.lower()}" if dot and stem.strip(".") and ext else ""


def _sniff_zip(source: IO[bytes]) -> str:
    """A ZIP is only acceptable when it is a Word document (only its directory is read)."""
    try:
        with zipfile.ZipFile(source) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, ValueError, OSError):
        raise UnsupportedFileType("a corrupt ZIP archive") from None
    if "word/document.xml" in names:
        return DOCX
    if "xl/workbook.xml" in names:
        raise UnsupportedFileType("an Excel workbook (.xlsx)")
    if "ppt/presentation.xml" in names:
        raise UnsupportedFileType("a PowerPoint presentation (.pptx)")
    raise UnsupportedFileType("a ZIP archive that is not a Word document")


MAX_ARCHIVE_MEMBERS, MAX_COMPRESSION_RATIO = 5000, 100  # a real DOCX: tens of parts, XML 5-40x


class ArchiveRefused(ValueError):
    """A ZIP-based file that would unpack into more than we are willing to parse."""


def check_archive(data: bytes, max_uncompressed: int) -> None:
    """Refuse a zip bomb from its central directory, before any member is inflated. The sizes
    are the sender's claims, yet a sound bound: zipfile never inflates a member past its
    declared `file_size` (it stops and fails the CRC). Only parts of 1 MiB+ face the ratio.
    A damaged archive raises zipfile's own errors, for the caller to describe."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        members = zf.infolist()
    total, mb = sum(m.file_size for m in members), 1 << 20
    big = [m.file_size / max(m.compress_size, 1) for m in members if m.file_size >= mb]
    if len(members) > MAX_ARCHIVE_MEMBERS:
        reason = f"has {len(members)} parts (limit {MAX_ARCHIVE_MEMBERS})"
    elif total > max_uncompressed:
        reason = f"would unpack to {total // mb} MB (limit {max(1, max_uncompressed // mb)} MB)"
    elif max(big, default=0) > MAX_COMPRESSION_RATIO:
        reason = f"is compressed {max(big):.0f} to 1 (limit {MAX_COMPRESSION_RATIO}): a zip bomb"
    else:
        return
    raise ArchiveRefused(f"the file {reason}")


_ZIP = "zip"  # a ZIP signature: which kind of ZIP needs the archive's directory, at its end


def _sniff_binary(data: bytes) -> str | None:
    """Content type from magic bytes (`_ZIP` for any ZIP), None for no known binary signature."""
    if data.lstrip(b"\t\n\r \x0c")[:5] == b"%PDF-":
        return "application/pdf"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")):
        return _ZIP
    for magic, what in _REJECTED_MAGIC:
        if data.startswith(magic):
            raise UnsupportedFileType(what)
    return None


def _mostly_unassigned(sample: str) -> bool:
    """Random bytes behind a UTF-16/32 BOM decode 'fine' but land on unassigned code points."""
    odd = sum(1 for ch in sample if unicodedata.category(ch) in ("Cn", "Co"))
    return odd > max(2, len(sample) // 20)


def decode_text(data: bytes) -> str:
    """Decode uploaded text (UTF-8, optional BOM, or BOM-marked UTF-16/32); reject binary."""
    boms = (
        (codecs.BOM_UTF32_LE, "utf-32-le"),
        (codecs.BOM_UTF32_BE, "utf-32-be"),
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    )
    for bom, encoding in boms:
        if data.startswith(bom):
            body, label = data[len(bom) :], encoding.upper()
            break
    else:
        body, encoding, label = data, "utf-8", "UTF-8"
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError:
        raise UnsupportedFileType(f"binary data (not valid {label} text)") from None
    if "\x00" in text:
        raise UnsupportedFileType("binary data (contains NUL bytes)")
    if encoding != "utf-8" and _mostly_unassigned(text[:65536]):
        raise UnsupportedFileType(f"binary data (not plausible {label} text)")
    if len(_JUNK_CHARS.findall(text)) > max(8, len(text) // 100):
        raise UnsupportedFileType("binary data (too many control or private-use characters)")
    return text


def _looks_like_html(text: str) -> bool:
    """Mostly markup: tags make up at least half of the first few KB and it starts with one."""
    head = text[:8192].lstrip()
    if not head.startswith("<"):
        return False
    tags = _TAG.findall(head)
    return len(tags) >= 2 and sum(len(t) for t in tags) * 2 >= len(head.replace(" ", ""))


def _text_kind(head: str, ext: str) -> str:
    """Classify text (its first characters are enough) as html, markdown or plain text."""
    declared = _EXT_TYPES.get(ext)
    if declared == "text/html" or _HTML_START.match(head[:4096]):
        return "text/html"
    if declared == "text/markdown":
        return "text/markdown"
    if declared != "text/plain" and _looks_like_html(head):
        return "text/html"
    return "text/plain"


def _family(content_type: str) -> str:
    """Types a user may plausibly mislabel among themselves (renamed text, .jpg that is a PNG)."""
    if content_type in _TEXT_TYPES:
        return "text"
    if content_type in IMAGE_TYPES:
        return "image"
    return content_type


_HEAD_BYTES = 64 * 1024  # enough for every signature, BOM and the text checks' samples
_HEAD_CHARS = 65536
# The C0 controls _JUNK_CHARS counts, as bytes: in ASCII text a byte is a character, and
# bytes.translate counts them far faster than the regular expression.
_JUNK_ASCII = bytes([*range(0x01, 0x09), *range(0x0E, 0x1B), *range(0x1C, 0x20)])
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


class StreamSniffer:
    """`sniff_content_type` for a file that arrives in pieces (an upload streamed to storage).

    Same verdicts as reading the whole file at once, in one pass and without holding it: the
    type comes from the first 64 KiB; text is then decoded and checked piece by piece (valid
    encoding, no NUL, few control characters, not blank); a ZIP's directory is read at the
    end from the stored bytes (`finish(reopen)`).
    """

    def __init__(self, filename: str) -> None:
        self.ext = _extension(filename)
        self.size = 0
        self._head = bytearray()
        self._kind: str | None = None  # None until the head is complete; then text or a type
        self._decoder: codecs.IncrementalDecoder | None = None
        self._label = "UTF-8"
        self._encoding = "utf-8"
        self._chars = 0
        self._junk = 0
        self._nul = False
        self._blank = True
        self._text_head: list[str] = []
        self._head_chars = 0

    def feed(self, chunk: bytes) -> None:
        """The next piece; raises UnsupportedFileType as soon as the verdict is certain."""
        if not chunk:
            return
        self.size += len(chunk)
        if self._kind is None:
            # Only the head is kept: a first piece of 1 MiB is not copied (three times, with
            # `_decide`'s bytes and `_sniff_binary`'s lstrip) to read its first bytes.
            take = _HEAD_BYTES - len(self._head)
            self._head += chunk[:take]
            if len(self._head) < _HEAD_BYTES:
                return
            self._decide()
            chunk = chunk[take:]
        if self._kind == "text" and chunk:
            self._text(chunk)

    def finish(self, reopen: Callable[[], IO[bytes]]) -> str:
        """The verdict once every byte was fed: an ALLOWED type, or UnsupportedFileType."""
        if self._kind is None:
            if not self._head:
                raise UnsupportedFileType("empty file")
            self._decide()
        if self._kind == "text":
            detected = self._text_verdict()
        elif self._kind == _ZIP:
            with reopen() as source:
                detected = _sniff_zip(source)
        else:
            detected = self._kind
        declared = _EXT_TYPES.get(self.ext)
        if declared and _family(declared) != _family(detected):
            raise UnsupportedFileType(
                f"{detected} content in a file named '{self.ext}' "
                "(the extension does not match the content)"
            )
        return detected

    def _decide(self) -> None:
        if self.ext in _BLOCKED_EXT:
            raise UnsupportedFileType(f"a '{self.ext}' file (this file type is never accepted)")
        head, self._head = bytes(self._head), bytearray()
        self._kind = _sniff_binary(head) or "text"
        if self._kind != "text":
            return
        for bom, encoding in _BOMS:
            if head.startswith(bom):
                head, self._encoding, self._label = head[len(bom) :], encoding, encoding.upper()
                break
        self._decoder = codecs.getincrementaldecoder(self._encoding)("strict")
        self._text(head)

    def _text(self, chunk: bytes, final: bool = False) -> None:
        assert self._decoder is not None
        try:
            piece = self._decoder.decode(chunk, final)
        except UnicodeDecodeError:
            raise UnsupportedFileType(f"binary data (not valid {self._label} text)") from None
        if not piece:
            return
        self._chars += len(piece)
        self._nul = self._nul or "\x00" in piece
        if piece.isascii():  # O(1) for a str; then its bytes are its characters
            raw = piece.encode("ascii")
            self._junk += len(raw) - len(raw.translate(None, _JUNK_ASCII))
        else:
            self._junk += len(_JUNK_CHARS.findall(piece))
        if self._blank and piece.strip():
            self._blank = False
        if self._head_chars < _HEAD_CHARS:
            self._text_head.append(piece[: _HEAD_CHARS - self._head_chars])
            self._head_chars += len(self._text_head[-1])

    def _text_verdict(self) -> str:
        """decode_text's and _sniff_text's checks, in their order."""
        self._text(b"", final=True)
        head = "".join(self._text_head)
        if self._nul:
            raise UnsupportedFileType("binary data (contains NUL bytes)")
        if self._encoding != "utf-8" and _mostly_unassigned(head):
            raise UnsupportedFileType(f"binary data (not plausible {self._label} text)")
        if self._junk > max(8, self._chars // 100):
            raise UnsupportedFileType("binary data (too many control or private-use characters)")
        if self._blank:
            raise UnsupportedFileType("empty file (only whitespace)")
        return _text_kind(head, self.ext)


def sniff_content_type(data: bytes, filename: str) -> str:
    """Trust the bytes, not the name: return an ALLOWED type or raise UnsupportedFileType."""
    sniffer = StreamSniffer(filename)
    sniffer.feed(data)
    return sniffer.finish(lambda: io.BytesIO(data))


def is_parseable(content_type: str | None) -> bool:
    """Only these types have text we can index; images are stored as attachments only."""
    return (content_type or "").split(";")[0].strip().lower() in PARSEABLE


def _name_char(ch: str) -> str:
    """Keep letters, digits, marks and ._- ; drop control/format chars; replace the rest."""
    category = unicodedata.category(ch)
    if category[0] == "C":
        return ""
    if ch.isalnum() or category[0] == "M" or ch in "._-":
        return ch
    return " " if category[0] == "Z" else "_"


def safe_filename(name: str) -> str:
    """Make a user-supplied name safe to store, log and send back in Content-Disposition."""
    name = unicodedata.normalize("NFC", str(name or ""))
    name = re.split(r"[\\/]", name)[-1]
    name = "".join(_name_char(ch) for ch in name)
    name = re.sub(r"\s+", " ", name).strip(" ")
    name = name.lstrip(".-_ ").rstrip(". ")
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext) > 16 or " " in ext:
        stem, ext = name, ""
    ext = f".{ext}" if ext else ""
    if stem.split(".")[0].upper() in _WINDOWS_RESERVED:
        stem = f"{stem}_"
    stem = stem[: _MAX_NAME - len(ext)].rstrip(". ")
    if not stem:
        return "file"
    return stem + ext
