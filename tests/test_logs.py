"""Logs never carry a customer's file: library messages lose the data they choke on."""

from __future__ import annotations

import json
import logging

from models.logs import JsonFormatter, LibraryTextFilter


def record(name: str, msg: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord(name, logging.WARNING, __file__, 1, msg, args or None, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_library_messages_lose_file_bytes_and_structured_extras():
    secret = b"\xff\xfe customer secret " * 50
    rec = record(
        "haystack.components.converters.txt",
        f"Could not convert file ByteStream(data={secret!r}). Skipping it.",
        source=f"ByteStream(data={secret!r})",
        session_id="s-1",
    )
    assert LibraryTextFilter().filter(rec)
    line = JsonFormatter().format(rec)
    assert "customer secret" not in line and "source" not in json.loads(line)
    assert json.loads(line)["session_id"] == "s-1"
    templated = record("pypdf._reader", "bad object %r", secret)
    LibraryTextFilter().filter(templated)
    assert "customer secret" not in templated.getMessage()


def test_our_own_messages_are_untouched():
    rec = record("helpline.access", "request %s", "/api/sessions", path="/api/sessions")
    LibraryTextFilter().filter(rec)
    assert rec.getMessage() == "request /api/sessions" and rec.path == "/api/sessions"
