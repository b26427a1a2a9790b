"""Flask configuration built from models.settings (the one place that reads the environment)."""

from __future__ import annotations

from typing import Any

from flask import current_app

from models.settings import Settings


def current_settings() -> Settings:
    """The typed settings of the running app (tests may build apps with other settings)."""
    return current_app.config["HELPLINE"]


def flask_config(settings: Settings) -> dict[str, Any]:
    """Flask and flask-smorest settings derived from the typed settings."""
    return {
        "HELPLINE": settings,
        # Whole-request ceiling: the upload limit plus room for form fields; werkzeug answers
        # 413 before reading a larger body (a 50 MB upload never reaches memory).
        "MAX_CONTENT_LENGTH": settings.max_upload_bytes + 1024 * 1024,
        "MAX_FORM_MEMORY_SIZE": 1024 * 1024,
        "JSON_SORT_KEYS": False,
        "API_TITLE": "Helpline",
        "API_VERSION": "1.0",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/api",
        "OPENAPI_JSON_PATH": "openapi.json",
        # Frames above our own limit get an error event; the library's hard cap (1009 close) is
        # far above it so that a client normally hears why.
        "SOCK_SERVER_OPTIONS": {"ping_interval": 25, "max_message_size": 1024 * 1024},
    }
