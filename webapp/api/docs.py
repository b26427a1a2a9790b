"""A self-contained API reference page (no CDN: it must work on an offline host)."""

from __future__ import annotations

from flask import Blueprint, render_template

blp = Blueprint("docs", __name__)


@blp.get("/api/docs")
def docs():  # type: ignore[no-untyped-def]
    """Render /api/openapi.json as a readable page."""
    return render_template("docs.html")
