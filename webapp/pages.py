"""HTML pages served by the web process."""

from __future__ import annotations

from flask import Blueprint, make_response, render_template

blp = Blueprint("pages", __name__)


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
