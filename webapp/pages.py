"""HTML pages served by the web process."""

from __future__ import annotations

from flask import Blueprint, render_template

blp = Blueprint("pages", __name__)


@blp.get("/")
def index():  # type: ignore[no-untyped-def]
    """The chat page."""
    return render_template("index.html")
