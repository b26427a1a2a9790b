"""Real files built in-process so ingestion tests exercise the actual parsers offline."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.files import build_docx, build_pdf, build_zip


@pytest.fixture
def make_pdf() -> Callable[[list[list[str]]], bytes]:
    """Factory for hand-built PDFs with a text layer."""
    return build_pdf


@pytest.fixture
def make_docx() -> Callable[[list[tuple[str, str]]], bytes]:
    """Factory for python-docx documents."""
    return build_docx


@pytest.fixture
def make_zip() -> Callable[[dict[str, bytes]], bytes]:
    """Factory for arbitrary ZIP archives."""
    return build_zip


@pytest.fixture
def help_pdf() -> bytes:
    """Two-page help article PDF."""
    return build_pdf(
        [
            [
                "Refund policy",
                "You can ask for a refund within 30 days (see No. 5).",
                "It costs 4.99 EUR.",
            ],
            ["Shipping", "Orders ship within two business days."],
        ]
    )


@pytest.fixture
def help_docx() -> bytes:
    """Word document with headings and paragraphs."""
    return build_docx(
        [
            ("h1", "Account help"),
            ("p", "Reset your password from the login page."),
            ("h2", "Two-factor login"),
            ("p", "Use an authenticator app. Backup codes work too."),
        ]
    )
