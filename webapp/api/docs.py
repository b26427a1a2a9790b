"""The API reference at /api/docs: Swagger UI (the `swagger-ui-bundle` package's files, served
from here, never a CDN) on /api/openapi.json, where any call can be tried with a session token
or a staff key ("Authorize").

flask-smorest can serve Swagger UI itself (OPENAPI_SWAGGER_UI_*), but its page starts the UI
with an inline script, which our Content-Security-Policy forbids; this page loads the same
files plus a small module of ours, so no inline script or foreign origin is needed.
"""

from __future__ import annotations

from flask import Blueprint, abort, make_response, render_template, send_from_directory
from swagger_ui_bundle import swagger_ui_path

blp = Blueprint("docs", __name__)

# The only files of the bundle the page uses (the rest, demo pages and source maps, stay private).
ASSETS = {"swagger-ui.css", "swagger-ui-bundle.js"}

# No inline script; Swagger UI sets element styles from script, which `style-src 'self'`
# allows (CSSOM), and draws its icons from data: URLs.
DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'self'; "
    "base-uri 'none'; form-action 'none'; object-src 'none'"
)


@blp.get("/api/docs")
def docs():  # type: ignore[no-untyped-def]
    """Swagger UI on our OpenAPI document."""
    resp = make_response(render_template("docs.html"))
    resp.headers["Content-Security-Policy"] = DOCS_CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    return resp


@blp.get("/api/docs/assets/<name>")
def asset(name: str):  # type: ignore[no-untyped-def]
    """Swagger UI's own script and style sheet, cached for a day (they change with the pin)."""
    if name not in ASSETS:
        abort(404)
    return send_from_directory(swagger_ui_path, name, max_age=86400)
