"""Upload sniffing and filename sanitising must hold up against hostile input."""

from __future__ import annotations

import codecs

import pytest

from models.filetypes import (
    ALLOWED,
    DOCX,
    UnsupportedFileType,
    is_parseable,
    safe_filename,
    sniff_content_type,
)

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
GIF = b"GIF89a\x01\x00\x01\x00"
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 "
ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 32


def test_allowed_covers_every_supported_type() -> None:
    assert ALLOWED["application/pdf"] == ".pdf"
    assert ALLOWED[DOCX] == ".docx"
    assert ALLOWED["image/webp"] == ".webp"
    assert len(ALLOWED) == 9


@pytest.mark.parametrize(
    ("data", "name", "expected"),
    [
        (PNG, "a.png", "image/png"),
        (JPEG, "a.jpg", "image/jpeg"),
        (JPEG, "photo.JPEG", "image/jpeg"),
        (GIF, "a.gif", "image/gif"),
        (WEBP, "a.webp", "image/webp"),
        (PNG, "misnamed.jpg", "image/png"),
        (b"Hello there.\n", "notes.txt", "text/plain"),
        (b"Hello there.\n", "notes", "text/plain"),
        (b"# Title\n\nBody text.\n", "guide.md", "text/markdown"),
        (b"# Title\n\nBody text.\n", "guide.markdown", "text/markdown"),
        (b"# Title\n", "guide.txt", "text/plain"),
        (b"<!DOCTYPE html><html><body>x</body></html>", "page.txt", "text/html"),
        (b"<p>Just a fragment</p>", "frag.htm", "text/html"),
        (b"<div><p>a</p><p>b</p></div>", "upload", "text/html"),
        (b"a < b and c > d in plain text", "math", "text/plain"),
    ],
)
def test_sniff_known_types(data: bytes, name: str, expected: str) -> None:
    assert sniff_content_type(data, name) == expected


def test_sniff_real_pdf_and_docx(help_pdf: bytes, help_docx: bytes) -> None:
    assert sniff_content_type(help_pdf, "guide.pdf") == "application/pdf"
    assert sniff_content_type(help_docx, "guide.docx") == DOCX
    assert sniff_content_type(help_docx, "no-extension") == DOCX


def test_utf16_and_bom_text_is_text() -> None:
    assert sniff_content_type("Grüße aus Köln\n".encode("utf-16"), "a.txt") == "text/plain"
    assert sniff_content_type(codecs.BOM_UTF8 + b"hello", "a.txt") == "text/plain"
    assert sniff_content_type(
        codecs.BOM_UTF16_BE + "# Überblick\n".encode("utf-16-be"), "x.md"
    ) == ("text/markdown")


@pytest.mark.parametrize(
    ("data", "name", "needle"),
    [
        (b"", "a.txt", "empty file"),
        (b"  \n\t", "a.txt", "empty"),
        (ELF, "evil.pdf", "ELF"),
        (ELF, "tool", "ELF"),
        (b"MZ\x90\x00\x03\x00\x00\x00", "setup.docx", "Windows executable"),
        (b"\x1f\x8b\x08\x00", "a.txt", "gzip"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 8, "old.doc", "legacy Office"),
        (b"Hello\x00world", "a.txt", "NUL"),
        (b"\xff\xfe\xfa\xfb binary", "a.txt", "binary"),
        (b"%PDF-1.4\n", "report.txt", "does not match"),
        (PNG, "photo.pdf", "does not match"),
        (b"plain words", "report.pdf", "does not match"),
        (b"plain words", "script.exe", "never accepted"),
        (b"<svg onload=alert(1)>", "x.svg", "never accepted"),
    ],
)
def test_sniff_rejects(data: bytes, name: str, needle: str) -> None:
    with pytest.raises(UnsupportedFileType) as info:
        sniff_content_type(data, name)
    assert needle in str(info.value)
    assert isinstance(info.value, ValueError)


def test_zip_that_is_not_docx_is_rejected(make_zip) -> None:
    data = make_zip({"readme.txt": b"hi", "payload.exe": b"MZ"})
    with pytest.raises(UnsupportedFileType, match="ZIP archive"):
        sniff_content_type(data, "archive.docx")
    with pytest.raises(UnsupportedFileType, match="Excel"):
        sniff_content_type(make_zip({"xl/workbook.xml": b"<x/>"}), "book.xlsx")


def test_corrupt_zip_is_rejected() -> None:
    with pytest.raises(UnsupportedFileType, match="corrupt ZIP"):
        sniff_content_type(b"PK\x03\x04" + b"\x00" * 20, "x.docx")


def test_is_parseable() -> None:
    assert is_parseable("application/pdf")
    assert is_parseable("text/plain; charset=utf-8")
    assert is_parseable(DOCX)
    assert not is_parseable("image/png")
    assert not is_parseable(None)
    assert not is_parseable("application/zip")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\x\\y.txt", "y.txt"),
        ("a\x00b.txt", "ab.txt"),
        ("..", "file"),
        ("", "file"),
        ("/", "file"),
        (".bashrc", "bashrc"),
        ("  many   spaces  here.md ", "many spaces here.md"),
        ("héllo wörld.md", "héllo wörld.md"),
        ("日本語 ガイド.pdf", "日本語 ガイド.pdf"),
        ("a<b>:c|d?.txt", "a_b__c_d_.txt"),
        ("line\nbreak\r.txt", "linebreak.txt"),
        ("rtl\u202etxt.exe", "rtltxt.exe"),
        ("CON.txt", "CON_.txt"),
    ],
)
def test_safe_filename(name: str, expected: str) -> None:
    assert safe_filename(name) == expected


def test_safe_filename_truncates_keeping_extension() -> None:
    result = safe_filename("x" * 500 + ".pdf")
    assert len(result) == 200
    assert result.endswith("xxx.pdf")
    assert len(safe_filename("y" * 500)) == 200


def test_random_bytes_behind_utf16_bom_are_rejected() -> None:
    import random

    data = codecs.BOM_UTF16_LE + random.Random(0).randbytes(400)
    with pytest.raises(UnsupportedFileType, match="binary data"):
        sniff_content_type(data, "x.txt")
