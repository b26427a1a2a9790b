"""Liveness and readiness: ready means database, Redis and at least one worker answer."""

from __future__ import annotations

import time

from flask import Blueprint, jsonify
from sqlalchemy import text

from models.db import new_session
from models.events import redis_client
from models.jobs import producer
from webapp.events import get_hub

blp = Blueprint("health", __name__)


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


@blp.get("/health/live")
def live():  # type: ignore[no-untyped-def]
    """The process is up (no dependency checked)."""
    return jsonify({"status": "ok"})


@blp.get("/health/ready")
def ready():  # type: ignore[no-untyped-def]
    """503 with Retry-After unless every dependency answers."""
    checks = {"database": _check(_database), "redis": _check(_redis), "worker": _check(_worker)}
    ok = all(c["ok"] for c in checks.values())
    body = {"status": "ok" if ok else "unavailable", "checks": checks}
    resp = jsonify(body)
    resp.status_code = 200 if ok else 503
    if not ok:
        resp.headers["Retry-After"] = "5"
    return resp


@blp.get("/health")
def health():  # type: ignore[no-untyped-def]
    """Summary: readiness plus this process's socket count."""
    resp = ready()
    data = resp.get_json()
    data["sockets"] = get_hub().count()
    data["pubsub_connected"] = get_hub().connected
    resp.set_data(jsonify(data).get_data())
    return resp
