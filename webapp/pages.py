"""HTML pages served by the web process."""

from __future__ import annotations

from flask import Blueprint, current_app, make_response, render_template, send_from_directory

blp = Blueprint("pages", __name__)


@blp.get("/favicon.ico")
def favicon():  # type: ignore[no-untyped-def]
    """Browsers ask for /favicon.ico whatever the page links; a week in their cache."""
    return send_from_directory(
        current_app.static_folder or "static",
        "favicon.ico",
        mimetype="image/vnd.microsoft.icon",
        max_age=7 * 86400,
    )


@blp.get("/")
def index():  # type: ignore[no-untyped-def]
    """The chat page; the CSP forbids inline and foreign scripts (the page needs none)."""
    resp = make_response(render_template("index.html"))
    resp.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; "
        "frame-ancestors 'self'; base-uri 'none'; form-action 'self'"
    )
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    return resp


# The staff console holds a staff key, so it may not be framed at all and is never cached.
_CONSOLE_CSP = (
    "default-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)


@blp.get("/console")
def console():  # type: ignore[no-untyped-def]
    """The agent console: ES modules from /static only, no inline script or style."""
    resp = make_response(render_template("console.html"))
    resp.headers["Content-Security-Policy"] = _CONSOLE_CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["Cache-Control"] = "no-store"
    return resp
