"""Real files built in-process (PDF with a text layer, DOCX, ZIP) for ingestion tests."""

from __future__ import annotations

import io
import random
import zipfile


def _pdf_escape(text: str) -> str:
    """PDF literal strings need backslash, parentheses escaped."""
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def build_pdf(pages: list[list[str]]) -> bytes:
    """Minimal valid PDF: Helvetica text layer, exact xref offsets; one list of lines per page."""
    objects: list[bytes] = []
    n_pages = len(pages)
    font_id = 3
    first_page_id = 4
    kids = " ".join(f"{first_page_id + 2 * i} 0 R" for i in range(n_pages))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n_pages} >>".encode())
    objects.append(
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    )
    for i, lines in enumerate(pages):
        content_id = first_page_id + 2 * i + 1
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {content_id} 0 R "
            f"/Resources << /Font << /F1 {font_id} 0 R >> >> >>".encode()
        )
        ops = ["BT", "/F1 12 Tf", "14 TL", "72 720 Td"]
        for line in lines:
            ops.append(f"({_pdf_escape(line)}) Tj T*")
        ops.append("ET")
        stream = "\n".join(ops).encode("cp1252")
        objects.append(
            b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream"
        )
    return _assemble_pdf(objects)


def _assemble_pdf(objects: list[bytes]) -> bytes:
    """Number the objects from 1 (the first is the catalog) and write exact xref offsets."""
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref_at = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    trailer = f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref_at}\n%%EOF\n"
    out += trailer.encode()
    return bytes(out)


def build_docx(blocks: list[tuple[str, str]]) -> bytes:
    """A real .docx via python-docx; blocks are (style, text) with style 'h1', 'h2' or 'p'."""
    import docx

    document = docx.Document()
    for style, text in blocks:
        if style.startswith("h"):
            document.add_heading(text, level=int(style[1:]))
        else:
            document.add_paragraph(text)
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


def build_zip(files: dict[str, bytes]) -> bytes:
    """A plain ZIP archive with the given members."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


# -- hostile files: built at test time so no large binary is ever committed ------------------

_DOCX_BODY_OPEN = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
    b"<w:body>"
)
_DOCX_BODY_CLOSE = b"</w:body></w:document>"


def build_docx_bomb(uncompressed_mb: int = 200, paragraph: bytes | None = None) -> bytes:
    """A valid DOCX whose word/document.xml is `uncompressed_mb` MiB of repeated paragraphs.

    The XML is streamed into the archive, so building a 200 MiB bomb needs no 200 MiB string;
    the result is a few hundred KB, like the attacker's 830 KB file."""
    para = paragraph or b"<w:p><w:r><w:t>All work and no play makes a dull bot.</w:t></w:r></w:p>"
    template = zipfile.ZipFile(io.BytesIO(build_docx([("p", "template")])))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for info in template.infolist():
            if info.filename != "word/document.xml":
                zf.writestr(info.filename, template.read(info.filename))
        with zf.open("word/document.xml", "w", force_zip64=True) as out:
            out.write(_DOCX_BODY_OPEN)
            block = para * max(1, (1 << 20) // len(para))
            written = 0
            while written < uncompressed_mb << 20:
                out.write(block)
                written += len(block)
            out.write(_DOCX_BODY_CLOSE)
    return buf.getvalue()


def build_dense_docx(uncompressed_mb: int = 45) -> bytes:
    """A DOCX that passes every archive check (under 50 MB unpacked, compressed ~20 to 1, a
    couple of MB) yet holds ~800k paragraphs: python-docx needs ~900 MB and two minutes for
    it, so only the sandbox's memory and time limits stop it."""
    rnd = random.Random(7)
    blocks = []
    for _ in range(8):  # distinct 1 MiB blocks: deflate cannot see the repetition
        paras = (b"<w:p><w:r><w:t>%d</w:t></w:r></w:p>" % rnd.randrange(100) for _ in range(40000))
        blocks.append(b"".join(paras))
    template = zipfile.ZipFile(io.BytesIO(build_docx([("p", "template")])))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for info in template.infolist():
            if info.filename != "word/document.xml":
                zf.writestr(info.filename, template.read(info.filename))
        with zf.open("word/document.xml", "w") as out:
            out.write(_DOCX_BODY_OPEN)
            written = 0
            while written < uncompressed_mb << 20:
                block = blocks[(written >> 20) % len(blocks)]
                out.write(block)
                written += len(block)
            out.write(_DOCX_BODY_CLOSE)
    return buf.getvalue()


def build_slow_pdf(pages: int = 200, operators: int = 350_000) -> bytes:
    """A valid PDF of ~15 KB whose pages all share one compressed stream of `operators`
    text-showing operators (under pypdf's per-stream token limit): pypdf spends seconds on
    every page, hours on the file, the "hang" of a poison file only a wall clock stops."""
    import zlib

    ops = b"BT /F1 12 Tf 72 720 Td " + b"(a) Tj 1 0 Td " * operators + b"ET"
    stream = zlib.compress(ops, 9)
    kids = " ".join(f"{4 + i} 0 R" for i in range(pages)).encode()
    content = 4 + pages
    page = (
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
        b"/Resources << /Font << /F1 3 0 R >> >> >>" % content
    )
    return _assemble_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % pages,
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
            *([page] * pages),
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream)
            + stream
            + b"\nendstream",
        ]
    )
