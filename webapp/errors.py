"""The one JSON error shape, `{"error": {"code", "message", "details"}}`, for HTTP and sockets."""

from __future__ import annotations

from typing import Any, NoReturn

from flask import Flask, jsonify
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from models.errors import Conflict, DomainError, Invalid, NotFound

# HTTP status → default machine-readable code.
CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_fields",
    429: "rate_limited",
    500: "server_error",
    503: "unavailable",
}


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


def abort(status: int, message: str, code: str | None = None, **kw: Any) -> NoReturn:
    """Single failure path for views."""
    raise ApiError(status, message, code, **kw)


# Domain error class → HTTP status (the domain never speaks HTTP itself).
DOMAIN_STATUS: dict[type[DomainError], int] = {NotFound: 404, Conflict: 409, Invalid: 422}


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


def register_error_handlers(app: Flask) -> None:
    """Every failure leaves as the one JSON shape, including werkzeug's own 404/405/413."""
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
    app.register_error_handler(HTTPException, lambda exc: _render(_from_http(exc)))

    def _unexpected(exc: Exception):  # type: ignore[no-untyped-def]
        app.logger.exception("unhandled error")
        return _render(ApiError(500, "internal server error"))

    app.register_error_handler(Exception, _unexpected)
