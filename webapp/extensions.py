"""Unbound extensions, bound in the factory (tasks are sent through models.jobs)."""

from __future__ import annotations

from http import HTTPStatus

from flask_cors import CORS
from flask_smorest import Api
from flask_smorest.utils import prepare_response

from models.schemas import ApiErrorSchema
from webapp.wsserver import SocketRoutes

RETRY_AFTER_HEADER = {
    "Retry-After": {
        "description": "seconds to wait before trying again",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    }
}


class HelplineApi(Api):
    """flask-smorest with our error shape: every error response in the OpenAPI document (each
    status's component, `default`, the 422 of `@blp.arguments`) is `ApiErrorSchema`, and
    HTTP exceptions render as it even where webapp.errors' handlers are not installed."""

    ERROR_SCHEMA = ApiErrorSchema

    def init_app(self, app, *, spec_kwargs=None):  # type: ignore[no-untyped-def]
        super().init_app(app, spec_kwargs=spec_kwargs)
        self.spec.components.security_scheme(
            "sessionToken",
            {
                "type": "http",
                "scheme": "bearer",
                "description": "the token of `POST /api/sessions` (shown once); it authorises "
                "that session only. The console's `stf.` token is accepted too.",
            },
        )
        self.spec.components.security_scheme(
            "staffKey",
            {
                "type": "apiKey",
                "in": "header",
                "name": "X-API-Key",
                "description": "a staff key from STAFF_API_KEYS (in a header, never a URL)",
            },
        )

    def _register_responses(self) -> None:
        from webapp.errors import MEANINGS

        for status in HTTPStatus:
            if status < 400:
                continue
            response: dict = {
                "description": MEANINGS.get(status, status.phrase),
                "schema": self.ERROR_SCHEMA,
            }
            if status in (429, 503):
                response["headers"] = RETRY_AFTER_HEADER
            prepare_response(response, self.spec, self.DEFAULT_RESPONSE_CONTENT_TYPE)
            if status == 414:  # past gunicorn's request-line limit, its own page
                response["content"]["text/html"] = {"schema": {"type": "string"}}
            self.spec.components.response(status.name, response, lazy=True)
        default = {"description": "Any other error", "schema": self.ERROR_SCHEMA}
        prepare_response(default, self.spec, self.DEFAULT_RESPONSE_CONTENT_TYPE)
        self.spec.components.response(self.DEFAULT_ERROR_RESPONSE_NAME, default, lazy=True)

    def handle_http_exception(self, error):  # type: ignore[no-untyped-def]
        from webapp.errors import render_http_exception

        return render_http_exception(error)


api = HelplineApi()
sock = SocketRoutes()  # flask-sock's Sock, handing routes lean sockets (webapp/wsserver.py)
cors = CORS()
