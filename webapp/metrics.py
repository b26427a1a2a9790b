"""`/metrics` in Prometheus text format, and this process's share of the numbers behind it.

Who may read it: with METRICS_TOKEN set, a scraper sending `Authorization: Bearer <token>`;
without it, only clients on this host (loopback), so a deployment does not publish its traffic
by accident. The numbers themselves live in Redis (models/metrics.py explains why).
"""

from __future__ import annotations

import atexit
import hmac
import ipaddress
import threading
import time

import redis
from flask import Blueprint, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from models import metrics
from webapp.config import current_settings
from webapp.errors import abort

blp = Blueprint("metrics", __name__)

_registry = CollectorRegistry(auto_describe=False)
_registry.register(metrics.RedisCollector())

_sockets = 0
_sockets_lock = threading.Lock()
_refresher: threading.Thread | None = None


def socket_opened() -> None:
    """A WebSocket of this process opened (customer, agent or console)."""
    _change(+1)


def socket_closed() -> None:
    _change(-1)


def _change(delta: int) -> None:
    global _sockets, _refresher
    with _sockets_lock:
        _sockets = max(0, _sockets + delta)
        now = _sockets
        if _refresher is None:
            atexit.register(metrics.forget_sockets)
        if _refresher is None or not _refresher.is_alive():
            # Renews this process's figure before its TTL runs out (a green thread under gevent).
            _refresher = threading.Thread(target=_refresh, name="metrics-sockets", daemon=True)
            _refresher.start()
    metrics.report_sockets(now)


def _refresh() -> None:
    while True:
        time.sleep(metrics.SOCKET_TTL / 3)
        metrics.report_sockets(_sockets)


def _allowed() -> None:
    token = current_settings().metrics_token
    if token:
        header = request.headers.get("Authorization", "")
        given = header[7:].strip() if header[:7].lower() == "bearer " else ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            abort(401, "/metrics needs Authorization: Bearer <METRICS_TOKEN>", "metrics_token")
        return
    try:
        local = ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        local = False
    if not local:
        abort(403, "/metrics is open to this host only; set METRICS_TOKEN to scrape it remotely")


@blp.get("/metrics")
def scrape() -> Response:
    """Counters, histograms and gauges of every process of the deployment."""
    _allowed()
    try:
        body = generate_latest(_registry)
    except redis.RedisError as exc:  # say so instead of a half-empty page
        abort(503, f"metrics are unavailable: {type(exc).__name__}", headers={"Retry-After": "5"})
    return Response(
        body, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"}
    )
