"""One blueprint per resource. Views return rows (or plain values) and `@blp.response(Schema)`
dumps them; every status a view can answer is documented with `errors(...)`."""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from flask import Response, jsonify
from flask_smorest import Blueprint
from marshmallow import Schema

from models.schemas import ApiErrorSchema

# Who may call an operation (`@blp.doc(**STAFF)`); the schemes are in webapp.extensions.
PUBLIC: dict = {"security": []}
CUSTOMER: dict = {"security": [{"sessionToken": []}]}
CUSTOMER_OR_STAFF: dict = {"security": [{"sessionToken": []}, {"staffKey": []}]}
STAFF: dict = {"security": [{"staffKey": []}]}


def errors(blp: Blueprint, *statuses: int | tuple[int, str]) -> Callable:
    """Document error statuses of an operation: a status refers to its shared response (our
    error schema, its meaning, `Retry-After` on 429/503); `(status, why)` says why here. Every
    operation can also answer 414 (request target too long) and, as `default`, 500."""

    def decorate(view: Callable) -> Callable:
        for status in (*statuses, 414):
            if isinstance(status, tuple):
                code, why = status
                view = blp.alt_response(code, schema=ApiErrorSchema, description=why)(view)
            else:
                view = blp.alt_response(status, response=HTTPStatus(status).name)(view)
        return view

    return decorate


def dumped(schema: Schema, obj: Any, status: int) -> Response:
    """`obj` dumped by `schema`, for the alternative response of a view whose
    `@blp.response` schema is another one (a message's 202 receipt or its 200 reply)."""
    resp = jsonify(schema.dump(obj))
    resp.status_code = status
    return resp
