"""Quotas: messages per session and per client IP, sessions per IP, with Flask-Limiter on Redis.

One check serves HTTP requests and socket frames alike (a socket frame is not a request, so
the decorators cannot see it): Flask-Limiter's own storage and fixed-window strategy count the
hits in Redis, shared by every web process. Redis being down fails open: a support chat that
refuses every customer during an outage is worse than one without limits for a minute.
The client IP is `request.remote_addr`; behind TRUSTED_PROXIES proxies the app is wrapped in
werkzeug's ProxyFix, so only the addresses those proxies appended to X-Forwarded-For count.
"""

from __future__ import annotations

import logging
import math
import time

from flask import Flask, request
from flask_limiter import Limiter
from limits import parse

from models.redisconn import limits_storage
from webapp.config import current_settings
from webapp.errors import abort

log = logging.getLogger(__name__)


def client_ip() -> str:
    """The caller's address as far as we can trust it."""
    return request.remote_addr or "unknown"


limiter = Limiter(key_func=client_ip)


def init_limits(app: Flask) -> None:
    """Bind the limiter to Redis under the deployment's key prefix; trust N proxies."""
    settings = app.config["HELPLINE"]
    uri, options = limits_storage(settings)
    app.config.update(
        RATELIMIT_STORAGE_URI=uri,
        RATELIMIT_STORAGE_OPTIONS=options,
        RATELIMIT_KEY_PREFIX=f"{settings.event_channel_prefix}:limits",
        RATELIMIT_STRATEGY="fixed-window",
        RATELIMIT_SWALLOW_ERRORS=True,
        RATELIMIT_HEADERS_ENABLED=False,
    )
    limiter.init_app(app)
    if settings.trusted_proxies:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies)  # type: ignore[method-assign]


def check(scope: str, key: str, per_minute: int, what: str) -> None:
    """Count one hit of `key` in `scope`; abort 429 with Retry-After past `per_minute`."""
    if per_minute <= 0:
        return
    item = parse(f"{per_minute}/minute")
    try:
        if limiter.limiter.hit(item, scope, key):
            return
        reset = limiter.limiter.get_window_stats(item, scope, key).reset_time
    except Exception as exc:  # storage errors vary by driver; fail open, say so in the log
        log.warning("rate limit storage unavailable", extra={"error": str(exc)[:200]})
        return
    wait = max(1, math.ceil(reset - time.time()))
    abort(
        429,
        f"too many {what}: at most {per_minute} a minute",
        "rate_limited",
        details={"retry_after": wait, "limit": per_minute, "scope": scope},
        headers={"Retry-After": str(wait)},
    )


def check_message(session_id: str, ip: str | None = None) -> None:
    """A customer message: per conversation and per client IP (`ip`: the sender's address when
    the check runs outside its request, as a socket message stored with others does)."""
    s = current_settings()
    check("session-messages", session_id, s.rate_limit_per_minute, "messages")
    check(
        "ip-messages",
        ip or client_ip(),
        s.rate_limit_per_ip_per_minute,
        "messages from your address",
    )


def check_new_session() -> None:
    """A new conversation: per client IP."""
    s = current_settings()
    check("ip-sessions", client_ip(), s.sessions_per_ip_per_minute, "new conversations")
