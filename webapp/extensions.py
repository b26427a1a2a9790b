"""Unbound extensions, bound in the factory (tasks are sent through models.jobs)."""

from __future__ import annotations

from flask_smorest import Api
from flask_sock import Sock

api = Api()
sock = Sock()
