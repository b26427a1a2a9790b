"""Domain errors: raised by code in models/, worker/ and the web's domain helpers.

They say what went wrong in the domain's words (a ticket already taken, a session that ended);
the web maps them to HTTP statuses and socket error events in `webapp/errors.py`, the CLI to
messages. Nothing here knows about HTTP.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base: `code` is the machine-readable word clients switch on; `details` is JSON-ready."""

    kind = "invalid"

    def __init__(self, message: str, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.kind
        self.details = details


class NotFound(DomainError):
    """The thing named does not exist (or is not visible to the caller)."""

    kind = "not_found"


class Conflict(DomainError):
    """The thing exists but its state forbids the change (taken, ended, already done)."""

    kind = "conflict"


class Invalid(DomainError):
    """The request is well-formed but a field's value is not acceptable."""

    kind = "invalid_fields"


class TooLarge(DomainError):
    """A file or text is above a configured size limit."""

    kind = "too_large"


class Unsupported(DomainError):
    """A file type we do not accept (or cannot read text from)."""

    kind = "unsupported_media_type"
