"""Structured logging for web and worker: one JSON line per record, with request/session/task ids.

Ids travel in context variables so any log call inside a request, socket or task carries them
without threading arguments through every function. Tokens and keys are never logged.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
session_id_var: ContextVar[str | None] = ContextVar("session_id", default=None)
task_id_var: ContextVar[str | None] = ContextVar("task_id", default=None)

_IDS = {"request_id", "session_id", "task_id"}
_BYTES = re.compile(r"ByteStream\(.*|b'(?:[^'\\]|\\.)*'?|b\"(?:[^\"\\]|\\.)*\"?", re.S)
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_SECRET_KEYS = {"token", "api_key", "authorization", "password", "openai_api_key"}


class ContextFilter(logging.Filter):
    """Copy the current ids onto every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in (
            ("request_id", request_id_var),
            ("session_id", session_id_var),
            ("task_id", task_id_var),
        ):
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True


class LibraryTextFilter(logging.Filter):
    """Third-party libraries may put the data they choke on into their messages (haystack's
    converters log part of an uploaded file's bytes): keep their message template without its
    arguments, cut to 120 characters, so no customer file ends up in the logs."""

    LIMIT = 120
    LIBRARIES = ("haystack", "pypdf", "trafilatura", "docx", "lxml", "markdown_it")

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.LIBRARIES):
            return True
        text = str(record.msg) if record.args else record.getMessage()
        text = _BYTES.sub("<file data withheld>", text)
        if record.args or len(text) > self.LIMIT:
            text = text[: self.LIMIT] + " … (details withheld)"
        record.msg, record.args = text, None
        for key in [k for k in vars(record) if k not in _STANDARD and k not in _IDS]:
            delattr(record, key)  # structured extras (haystack's `source=`) carry the data too
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: easy to grep locally, easy to ship to a log service."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key in _STANDARD or value is None or key.startswith("_"):
                continue
            data[key] = "[redacted]" if key.lower() in _SECRET_KEYS else value
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class TextFormatter(logging.Formatter):
    """Human-readable lines for a terminal, ids appended."""

    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        ids = [
            f"{k}={getattr(record, k)}"
            for k in ("request_id", "session_id", "task_id")
            if getattr(record, k, None)
        ]
        return f"{base} {' '.join(ids)}".rstrip()


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Install one stderr handler on the root logger (idempotent)."""
    root = logging.getLogger()
    if any(getattr(h, "_helpline", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler._helpline = True  # type: ignore[attr-defined]
    handler.addFilter(ContextFilter())
    handler.addFilter(LibraryTextFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "urllib3", "haystack"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
