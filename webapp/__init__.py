"""Application factory: config from the environment (or overrides), extensions, blueprints."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from flask import Flask, g, request

# Not bound as `metrics`: importing the submodule webapp.metrics rebinds that name in this package.
from models import metrics as metric_store
from models.logs import configure_logging, request_id_var, session_id_var
from models.settings import get_settings


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    """Build the web app; `overrides` is merged into Flask config (tests pass a dict)."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = Flask(__name__, instance_relative_config=False)

    from webapp.config import flask_config

    app.config.update(flask_config(settings))
    app.config.update(overrides or {})

    from webapp.errors import register_error_handlers
    from webapp.extensions import api, sock

    api.init_app(app)
    sock.init_app(app)

    from webapp.limits import init_limits

    init_limits(app)
    _init_cors(app, settings.cors_origins)

    from webapp.api import (
        attachments,
        docs,
        health,
        kb,
        messages,
        reports,
        search,
        sessions,
        tickets,
    )

    for module in (sessions, messages, attachments, search, kb, tickets, reports, health):
        api.register_blueprint(module.blp)
    app.register_blueprint(docs.blp)

    from webapp import console_ws, pages, ws  # noqa: F401  (registers the socket routes)
    from webapp import metrics as metrics_page

    app.register_blueprint(pages.blp)
    app.register_blueprint(metrics_page.blp)
    register_error_handlers(app)
    _install_request_hooks(app)

    from webapp.db import close_db

    app.teardown_appcontext(close_db)

    from webapp.cli import register_cli

    register_cli(app)
    return app


# Headers a cross-origin page may read: the request id (clients log it) and when to retry.
CORS_EXPOSED = ["X-Request-ID", "Retry-After"]


def _init_cors(app: Flask, origins: tuple[str, ...]) -> None:
    """CORS for the API and health checks, for CORS_ORIGINS only (none by default), with
    credentials. Each origin is matched literally (escaped, whole, case-insensitive), which
    also makes flask-cors send `Vary: Origin`; `always_send=False` keeps the list private
    from requests without an Origin. Sockets are not CORS: webapp.auth.check_origin."""
    if not origins:
        return
    from webapp.extensions import cors

    cors.init_app(
        app,
        resources=[r"/api/.*", r"/health.*"],
        origins=[re.compile(re.escape(o) + r"\Z", re.IGNORECASE) for o in origins],
        supports_credentials=True,
        expose_headers=CORS_EXPOSED,
        always_send=False,
        max_age=600,
    )


def _install_request_hooks(app: Flask) -> None:
    """Request id in, request id out; one access log line per API request."""
    import logging

    access = logging.getLogger("helpline.access")

    @app.before_request
    def _start() -> None:
        rid = request.headers.get("X-Request-ID", "")[:64] or uuid.uuid4().hex[:16]
        g.request_id, g.started = rid, time.perf_counter()
        request_id_var.set(rid)
        session_id_var.set((request.view_args or {}).get("session_id"))

    @app.after_request
    def _finish(response):  # type: ignore[no-untyped-def]
        response.headers["X-Request-ID"] = g.get("request_id", "")
        if request.path.startswith("/static/shared/"):
            # The widget's loader imports these public modules (its strings) from a host page.
            response.headers["Access-Control-Allow-Origin"] = "*"
            response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
        if response.status_code >= 500:
            metric_store.count("errors", f"http_{response.status_code}")
        if request.path != "/ws" and not request.path.startswith("/static"):
            access.info(
                "request",
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "ms": round(
                        (time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 2
                    ),
                },
            )
        return response
