"""Text extraction per type, through the real haystack converters and parsers."""

from __future__ import annotations

import io

import pytest

from models.filetypes import DOCX
from worker.ingest.convert import ConversionError, extract_text, make_preview


def test_pdf_text_layer(help_pdf: bytes) -> None:
    text = extract_text(help_pdf, "application/pdf", "guide.pdf")
    assert "You can ask for a refund within 30 days (see No. 5)." in text
    assert "Orders ship within two business days." in text
    assert "\n\n" in text  # the page break became a paragraph break


def test_pdf_fixture_is_readable_by_pypdf(help_pdf: bytes) -> None:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(help_pdf))
    assert len(reader.pages) == 2
    assert "Refund policy" in reader.pages[0].extract_text()


def test_pdf_without_text_layer(make_pdf) -> None:
    with pytest.raises(ConversionError, match="no extractable text"):
        extract_text(make_pdf([[]]), "application/pdf", "scan.pdf")


@pytest.mark.parametrize("data", [b"%PDF-1.4 garbage", b"%PDF-1.7\n1 0 obj\n<<"])
def test_corrupt_pdf(data: bytes) -> None:
    with pytest.raises(ConversionError, match="scan.pdf: the PDF is damaged"):
        extract_text(data, "application/pdf", "scan.pdf")


def test_truncated_pdf(help_pdf: bytes) -> None:
    with pytest.raises(ConversionError):
        extract_text(help_pdf[:150], "application/pdf", "cut.pdf")


def test_encrypted_pdf(help_pdf: bytes) -> None:
    from pypdf import PdfWriter

    writer = PdfWriter(clone_from=io.BytesIO(help_pdf))
    writer.encrypt(user_password="secret", algorithm="RC4-128")
    buf = io.BytesIO()
    writer.write(buf)
    with pytest.raises(ConversionError, match="password-protected"):
        extract_text(buf.getvalue(), "application/pdf", "locked.pdf")


def test_docx_keeps_headings(help_docx: bytes) -> None:
    text = extract_text(help_docx, DOCX, "help.docx")
    assert text.splitlines() == [
        "# Account help",
        "Reset your password from the login page.",
        "## Two-factor login",
        "Use an authenticator app. Backup codes work too.",
    ]


def test_corrupt_docx(help_docx: bytes) -> None:
    with pytest.raises(ConversionError, match="Word document is damaged"):
        extract_text(b"PK\x03\x04 not really a zip", DOCX, "bad.docx")
    with pytest.raises(ConversionError):
        extract_text(help_docx[: len(help_docx) // 2], DOCX, "half.docx")


def test_html_main_content_and_headings() -> None:
    html = (
        b"<!doctype html><html><head><title>T</title><style>p{color:red}</style></head><body>"
        b"<nav><a href='/'>Home</a></nav><main><h1>Refunds</h1>"
        b"<p>You can <b>get</b> a refund within 30 days. Contact us for help with anything.</p>"
        b"<h2>How to ask</h2><p>Open the app and tap Help. Then choose a reason.</p></main>"
        b"<script>alert('x')</script></body></html>"
    )
    text = extract_text(html, "text/html", "page.html")
    assert "# Refunds" in text.splitlines()
    assert "## How to ask" in text.splitlines()
    assert "You can get a refund within 30 days." in text
    assert "alert" not in text and "color" not in text and "**" not in text


def test_tiny_html_fragment_falls_back() -> None:
    assert extract_text(b"<p>Hi <i>there</i></p>", "text/html", "f.html") == "Hi there"


def test_html_without_text() -> None:
    with pytest.raises(ConversionError, match="no extractable text"):
        extract_text(b"<html><body><script>x()</script></body></html>", "text/html", "e.html")


def test_markdown_headings_kept_and_markup_removed() -> None:
    md = (
        b"---\ntitle: Refunds\n---\n# Refunds *now*\nYou can get a refund\nwithin **30 days**.\n\n"
        b"## How to ask\n1. Open the app\n2. Tap *Help*\n\nSetext Title\n===\nBody.\n"
    )
    lines = extract_text(md, "text/markdown", "r.md").splitlines()
    assert lines[0] == "# Refunds now"
    assert "## How to ask" in lines
    assert "# Setext Title" in lines
    assert "within 30 days." in lines
    assert not any("title:" in line for line in lines)


def test_markdown_list_items_keep_their_numbers_and_bullets() -> None:
    """A how-to's steps reach the chunker as `1.` lines, as in the file, so the answer can
    quote them whole and in order (the renderer alone left loose sentences)."""
    md = (
        b"## Reset\n\n1. Go to the **sign-in** page.\n2. Select *Forgot password?*\n"
        b"10) Enter a new one.\n\n- Check your spam folder.\n* Wait *10 minutes*.\n\n"
        b"Not a list: 3 - 1 = 2.\n"
    )
    lines = extract_text(md, "text/markdown", "r.md").splitlines()
    assert "1. Go to the sign-in page." in lines
    assert "2. Select Forgot password?" in lines
    assert "10) Enter a new one." in lines
    assert "- Check your spam folder." in lines
    assert "* Wait 10 minutes." in lines
    assert "Not a list: 3 - 1 = 2." in lines


def test_plain_text_cleanup() -> None:
    data = "Hello\u00a0  world\r\nLine  two\u00ad.\x0c\n\n\n\nPage \ufb01ve\t\tend".encode("utf-16")
    assert extract_text(data, "text/plain", "x.txt") == "Hello world\nLine two.\n\nPage five end"


def test_text_that_is_not_text() -> None:
    with pytest.raises(ConversionError, match="could not read the file as text"):
        extract_text(b"\xc3\x28 invalid utf-8", "text/plain; charset=utf-8", "x.txt")


@pytest.mark.parametrize(
    ("data", "ctype", "needle"),
    [(b"", "text/plain", "empty"), (b"\x89PNG", "image/png", "no extractable text")],
)
def test_unparseable_inputs(data: bytes, ctype: str, needle: str) -> None:
    with pytest.raises(ConversionError, match=needle):
        extract_text(data, ctype, "a")


def test_make_preview() -> None:
    assert make_preview("# Title\nShort   text.") == "Title Short text."
    long = "word " * 200
    preview = make_preview(long, limit=50)
    assert preview.endswith("…") and len(preview) <= 50
    assert not preview[:-1].endswith(" ")
    assert make_preview("x" * 400, limit=10) == "x" * 9 + "…"
