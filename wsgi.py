"""WSGI entry point: `gunicorn -c gunicorn.conf.py wsgi:app` (and `flask --app wsgi ...`)."""

import sys

from models.settings import ConfigError, get_settings

try:
    get_settings()
except ConfigError as exc:  # a clear one-line reason instead of a traceback
    sys.exit(f"helpline: configuration error: {exc}")

from webapp import create_app  # noqa: E402

app = create_app()
