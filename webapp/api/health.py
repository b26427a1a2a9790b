"""Liveness and readiness: ready means database, Redis and at least one worker answer.

Documented like the API (schemas, 503 with Retry-After) once registered with `api`."""

from __future__ import annotations

import time

from flask_smorest import Blueprint
from sqlalchemy import text

from models.db import new_session
from models.events import redis_client
from models.jobs import producer
from models.schemas import HealthOut, LiveOut, ReadyOut
from webapp.api import PUBLIC, errors
from webapp.events import get_hub
from webapp.extensions import RETRY_AFTER_HEADER

blp = Blueprint(
    "health", __name__, url_prefix="/health", description="Liveness and readiness (anyone)"
)

_UNAVAILABLE = "a dependency does not answer: see `checks`"


def _check(fn) -> dict:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    try:
        detail = fn()
        return {
            "ok": True,
            "ms": round((time.perf_counter() - started) * 1000, 2),
            **(detail or {}),
        }
    except Exception as exc:  # a health check reports every failure, whatever its type
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}


def _database() -> None:
    db = new_session()
    try:
        db.execute(text("SELECT 1"))
    finally:
        db.close()


def _redis() -> None:
    redis_client().ping()


def _worker() -> dict:
    replies = producer().control.ping(timeout=1.0, limit=1)
    if not replies:
        raise RuntimeError("no Celery worker answered a ping within 1 s")
    return {"workers": len(replies)}


@blp.route("/live", methods=["GET"])
@blp.response(200, LiveOut)
@blp.doc(**PUBLIC)
@errors(blp)
def live() -> dict:
    """The process is up (no dependency checked)."""
    return {"status": "ok"}


def _readiness() -> tuple[dict, int, dict[str, str]]:
    checks = {"database": _check(_database), "redis": _check(_redis), "worker": _check(_worker)}
    ok = all(c["ok"] for c in checks.values())
    body = {"status": "ok" if ok else "unavailable", "checks": checks}
    return body, 200 if ok else 503, {} if ok else {"Retry-After": "5"}


@blp.route("/ready", methods=["GET"])
@blp.response(200, ReadyOut)
@blp.alt_response(503, schema=ReadyOut, description=_UNAVAILABLE, headers=RETRY_AFTER_HEADER)
@blp.doc(**PUBLIC)
@errors(blp)
def ready() -> tuple[dict, int, dict[str, str]]:
    """503 with Retry-After unless every dependency answers."""
    return _readiness()


@blp.route("", methods=["GET"])
@blp.response(200, HealthOut)
@blp.alt_response(503, schema=HealthOut, description=_UNAVAILABLE, headers=RETRY_AFTER_HEADER)
@blp.doc(**PUBLIC)
@errors(blp)
def health() -> tuple[dict, int, dict[str, str]]:
    """Summary: readiness plus this process's socket count."""
    body, status, headers = _readiness()
    hub = get_hub()
    return {**body, "sockets": hub.count(), "pubsub_connected": hub.connected}, status, headers
