"""Unbound extensions, bound in the factory; the Celery client only sends tasks by name."""

from __future__ import annotations

from celery import Celery
from flask_smorest import Api
from flask_sock import Sock

api = Api()
sock = Sock()

# The web side never imports worker code (and so never haystack): it sends tasks by name.
celery_client = Celery("helpline")
celery_client.config_from_object("celeryconfig")
