"""The one JSON error shape, `{"error": {"code", "message", "details"}}`, for HTTP and sockets."""

from __future__ import annotations

from typing import Any, NoReturn

from flask import Flask, jsonify, request
from marshmallow import ValidationError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from models.errors import Conflict, DomainError, Invalid, NotFound, TooLarge, Unsupported
from models.events import envelope

# HTTP status → default machine-readable code.
CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    422: "invalid_fields",
    429: "rate_limited",
    500: "server_error",
    503: "unavailable",
}


# What each error status means here: the descriptions of the OpenAPI error responses.
MEANINGS = {
    400: "Malformed: the body is not JSON (or nested too deeply), or an id is not a UUID "
    "(`malformed_session_id`)",
    401: "Missing or bad credentials: a session token (`Authorization: Bearer`) or a staff "
    "`X-API-Key`",
    403: "Not yours: another session's token, or a customer-only action taken by staff",
    404: "No such resource (or route)",
    405: "Method not allowed on this route (see `Allow`)",
    409: "The resource's state forbids it (session ended, already rated, ticket taken, …)",
    413: "Too large: the body, a file, a message, or this conversation's upload quota",
    414: "The request target (path and query) is longer than 4096 bytes; a request line over "
    "8190 bytes is refused by the HTTP server itself, as text/html",
    415: "File or body type not allowed",
    422: "Invalid fields: `details` names each field with its problems",
    429: "Rate limited: retry after `Retry-After` seconds",
    500: "Unexpected server error",
    503: "A dependency (database, worker, broker) is unavailable or busy: retry after "
    "`Retry-After` seconds",
}

# The longest request target (path + query) the app answers; gunicorn.conf.py lets request
# lines up to 8190 bytes through, so one a little too long gets this JSON 414, not an HTML page.
MAX_REQUEST_TARGET = 4096


class ApiError(Exception):
    """Raised anywhere in a request; rendered by the handler below."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or CODES.get(status, "error")
        self.message = message
        self.details = details
        self.headers = headers or {}

    def body(self) -> dict:
        """The error object (also the payload of a WebSocket `error` event)."""
        return {"code": self.code, "message": self.message, "details": self.details}


def error_event(
    session_id: str, code: str, message: str, details: Any = None, **fields: Any
) -> dict:
    """A socket `error` event: the error body's `code`, `message`, `details`, and `content`, a
    copy of `message` kept for the original client (customer-support-agent), which shows it."""
    return envelope(
        "error", session_id, code=code, message=message, details=details, content=message, **fields
    )


def abort(status: int, message: str, code: str | None = None, **kw: Any) -> NoReturn:
    """Single failure path for views."""
    raise ApiError(status, message, code, **kw)


# Domain error class → HTTP status (the domain never speaks HTTP itself).
DOMAIN_STATUS: dict[type[DomainError], int] = {
    NotFound: 404,
    Conflict: 409,
    TooLarge: 413,
    Unsupported: 415,
    Invalid: 422,
}


def from_domain(exc: DomainError) -> ApiError:
    """The HTTP form of a domain error (also used for socket error events)."""
    status = next((s for cls, s in DOMAIN_STATUS.items() if isinstance(exc, cls)), 400)
    return ApiError(status, exc.message, exc.code, details=exc.details)


def _render(err: ApiError):  # type: ignore[no-untyped-def]
    resp = jsonify({"error": err.body()})
    resp.status_code = err.status
    for key, value in err.headers.items():
        resp.headers[key] = value
    return resp


def _from_http(exc: HTTPException) -> ApiError:
    status = exc.code or 500
    details = None
    data = getattr(exc, "data", None)  # webargs/flask-smorest attach validation messages here
    if isinstance(data, dict) and "messages" in data:
        details = data["messages"]
        # Bodies that are not JSON at all are malformed (400), not invalid fields.
        flat = str(details)
        if "Invalid JSON body" in flat:
            return ApiError(400, "the request body is not valid JSON", "invalid_json")
    message = exc.description or exc.name
    if status == 413:
        message = "the request body is too large"
    if status == 422:
        message = "some fields are invalid"
    if status == 404 and details is None:
        message = "no such resource"
    headers = {}
    if status == 405 and exc.response is None:
        valid = getattr(exc, "valid_methods", None)
        if valid:
            headers["Allow"] = ", ".join(valid)
    return ApiError(status, message, details=details, headers=headers)


def render_http_exception(exc: HTTPException):  # type: ignore[no-untyped-def]
    """werkzeug's and flask-smorest's HTTP errors (404, 405, 413, 422, …) in the one shape."""
    return _render(_from_http(exc))


def _refuse_long_target():  # type: ignore[no-untyped-def]
    """414 in the one JSON shape for a request target longer than MAX_REQUEST_TARGET."""
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    length = len(raw) if raw else len(request.full_path.encode())
    if length > MAX_REQUEST_TARGET:
        return _render(
            ApiError(
                414,
                f"the request target is longer than {MAX_REQUEST_TARGET} bytes",
                details={"limit": MAX_REQUEST_TARGET, "length": length},
            )
        )
    return None


def register_error_handlers(app: Flask) -> None:
    """Every failure leaves as the one JSON shape, including werkzeug's own 404/405/413,
    flask-smorest's 422 and an over-long request target (414)."""
    app.before_request(_refuse_long_target)
    app.register_error_handler(ApiError, _render)
    app.register_error_handler(DomainError, lambda exc: _render(from_domain(exc)))
    app.register_error_handler(
        RecursionError,  # json's decoder on `[[[[…` thousands deep
        lambda exc: _render(ApiError(400, "the JSON body is nested too deeply", "invalid_json")),
    )
    app.register_error_handler(
        ValidationError,
        lambda exc: _render(ApiError(422, "some fields are invalid", details=exc.messages)),
    )
    app.register_error_handler(HTTPException, render_http_exception)

    app.register_error_handler(OperationalError, _database_unavailable)

    def _unexpected(exc: Exception):  # type: ignore[no-untyped-def]
        app.logger.exception("unhandled error")
        return _render(ApiError(500, "internal server error"))

    app.register_error_handler(Exception, _unexpected)


def _database_unavailable(exc: OperationalError):  # type: ignore[no-untyped-def]
    """The database refused or dropped the request's transaction (unreachable, locked past
    its wait, a lost deadlock after `retry_conflicts`' attempts): nothing of it was committed,
    and the same request later will work, so 503 with Retry-After, not 500."""
    from flask import current_app

    current_app.logger.warning("database unavailable: %s", type(exc.orig).__name__)
    return _render(
        ApiError(
            503,
            "the database is busy or unreachable; nothing was changed, retry shortly",
            "database_unavailable",
            headers={"Retry-After": "1"},
        )
    )
