"""HTML pages served by the web process: the chat page, its framed twin for the widget, the
widget's loader script and the staff console."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    current_app,
    make_response,
    render_template,
    request,
    send_from_directory,
)

from models.settings import LANGUAGES, Settings
from webapp.config import current_settings

blp = Blueprint("pages", __name__)


def _origin(url: str) -> str | None:
    """`https://cdn.example/logo.png` → `https://cdn.example` (None for a path on this server)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def chat_csp(settings: Settings, frame_ancestors: str) -> str:
    """No inline or foreign script; images from here (and the configured logo's origin)."""
    logo = _origin(settings.branding.logo_url)
    images = "'self' data:" + (f" {logo}" if logo else "")
    return (
        f"default-src 'self'; img-src {images}; connect-src 'self' ws: wss:; "
        f"frame-ancestors {frame_ancestors}; base-uri 'none'; form-action 'self'; "
        "object-src 'none'"
    )


def _secure(resp: Response, csp: str) -> Response:
    resp.headers["Content-Security-Policy"] = csp
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    return resp


def _lang() -> str:
    """`?lang=fr` (the widget's `data-lang`) when we have it; empty lets the browser choose."""
    lang = (request.args.get("lang") or "").strip().lower()[:2]
    return lang if lang in LANGUAGES else ""


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
    settings = current_settings()
    page = render_template("index.html", embedded=False, lang=_lang(), parent_origin="")
    return _secure(make_response(page), chat_csp(settings, "'self'"))


@blp.get("/embed")
def embed():  # type: ignore[no-untyped-def]
    """The chat inside the widget's frame: only WIDGET_ORIGINS may frame it (CSP
    `frame-ancestors`), and it talks to its parent page only when that page's origin is one
    of them (so a page elsewhere learns nothing, not even an unread count)."""
    settings = current_settings()
    parent = (request.args.get("origin") or "").strip().rstrip("/").lower()
    parent = parent if parent in settings.widget_origins else ""
    ancestors = " ".join(("'self'", *settings.widget_origins))
    page = render_template("index.html", embedded=True, lang=_lang(), parent_origin=parent)
    resp = _secure(make_response(page), chat_csp(settings, ancestors))
    resp.headers["Cache-Control"] = "no-store"
    return resp


@blp.get("/widget.js")
def widget_js():  # type: ignore[no-untyped-def]
    """The loader a site pastes (`<script src=".../widget.js" data-…>`): a launcher bubble
    and a frame on /embed. Branding comes with it so the bubble matches before it opens."""
    brand = current_settings().branding
    config = {"name": brand.name, "color": brand.color, "language": brand.language}
    body = render_template("widget.js", config=config)
    resp = make_response(body)
    resp.headers["Content-Type"] = "text/javascript; charset=utf-8"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    resp.headers["Cache-Control"] = "public, max-age=300"
    return resp


# The staff console holds a staff key, so it may not be framed at all and is never cached.
_CONSOLE_CSP = (
    "default-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)


@blp.get("/console")
def console():  # type: ignore[no-untyped-def]
    """The agent console: ES modules from /static only, no inline script or style."""
    resp = _secure(make_response(render_template("console.html")), _CONSOLE_CSP)
    resp.headers["Cache-Control"] = "no-store"
    return resp
