"""Who may touch a session: its own bearer token, or staff with an X-API-Key.

One function decides for HTTP and WebSocket alike; the socket maps the status to a close code.
Browsers cannot put headers on a WebSocket, so staff exchange their key (in a header) for a
short-lived socket token signed with that key (`stf.` prefix): no key ever travels in a URL,
and removing a key from STAFF_API_KEYS revokes its tokens.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass

from flask import request
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import presence
from models.chat import ChatSession
from webapp.config import current_settings
from webapp.errors import abort


def new_token() -> tuple[str, str]:
    """A fresh session token and the hash we store (the token itself is never kept)."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    """SHA-256 is enough: tokens are 256 random bits, so there is nothing to brute-force."""
    return hashlib.sha256(token.encode()).hexdigest()


def parse_session_id(raw: str | None) -> str:
    """Reject `undefined`, `null` and other non-ids with 400 before touching the database."""
    try:
        return str(uuid.UUID(str(raw)))
    except (ValueError, TypeError, AttributeError):
        abort(400, f"malformed session id {str(raw)[:64]!r}", "malformed_session_id")


@dataclass(frozen=True)
class Actor:
    """The caller: a customer holding one session's token, or a staff member."""

    kind: str  # "customer" | "staff"
    staff_key_id: str | None = None
    name: str | None = None  # the agent's name customers see (staff only)

    @property
    def is_staff(self) -> bool:
        return self.kind == "staff"


def _key_id(key: str) -> str:
    """Identify a key in logs and tokens by a short hash, never by its value."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def staff_actor(api_key: str | None) -> Actor | None:
    """Staff if the key matches one of STAFF_API_KEYS (compared in constant time)."""
    if not api_key:
        return None
    found = None
    for name, key in current_settings().staff_agents:
        if hmac.compare_digest(key.encode(), api_key.encode("utf-8", "replace")):
            found = found or Actor("staff", _key_id(key), name)
    if found is None:
        abort(401, "invalid API key", "invalid_api_key")
    presence.seen(found.name or "Support")
    return found


STAFF_TOKEN_PREFIX = "stf."
STAFF_TOKEN_SECONDS = 3600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _sign(key: str, body: str) -> str:
    return _b64(hmac.new(key.encode(), body.encode(), hashlib.sha256).digest())


def staff_socket_token(actor: Actor, seconds: int = STAFF_TOKEN_SECONDS) -> str:
    """A token for the console's sockets, signed with the agent's own key."""
    key = next(k for n, k in current_settings().staff_agents if _key_id(k) == actor.staff_key_id)
    claims = {"k": actor.staff_key_id, "n": actor.name, "e": int(time.time()) + seconds}
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{STAFF_TOKEN_PREFIX}{body}.{_sign(key, body)}"


def staff_from_token(token: str) -> Actor:
    """The staff actor of a socket token, or abort 401 (bad, expired or revoked)."""
    try:
        body, mac = token[len(STAFF_TOKEN_PREFIX) :].split(".", 1)
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        key_id, name, expires = str(claims["k"]), str(claims["n"]), int(claims["e"])
    except (ValueError, KeyError, TypeError):
        abort(401, "malformed staff token", "invalid_token")
    for agent, key in current_settings().staff_agents:
        if _key_id(key) == key_id and agent == name and hmac.compare_digest(_sign(key, body), mac):
            if expires < time.time():
                abort(401, "the staff token has expired: sign in again", "token_expired")
            return Actor("staff", key_id, name)
    abort(401, "invalid staff token", "invalid_token")


def check_origin() -> None:
    """Browsers send Origin on a WebSocket: only our own page, ALLOWED_ORIGINS, CORS_ORIGINS and
    the sites that embed the widget (WIDGET_ORIGINS) may connect (a foreign page could otherwise
    drive a customer's socket). Clients that send no Origin (servers, mobile apps) still need a
    valid token, so they are let through."""
    origin = request.headers.get("Origin")
    if not origin:
        return
    normal = origin.strip().rstrip("/").lower()
    own = {f"{scheme}://{request.host.lower()}" for scheme in ("http", "https")}
    if normal in own or normal in current_settings().socket_origins:
        return
    abort(403, f"origin {origin[:100]!r} may not open sockets here", "origin_not_allowed")


def request_credentials() -> tuple[str | None, str | None]:
    """(bearer token, staff key) from the current HTTP request."""
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else None
    return token or None, request.headers.get("X-API-Key") or None


def require_staff() -> Actor:
    """Staff-only endpoints."""
    _, key = request_credentials()
    actor = staff_actor(key)
    if actor is None:
        abort(401, "this endpoint needs an X-API-Key header", "staff_only")
    return actor


def token_owner(db: Session, token: str) -> str | None:
    """The id of the session a token belongs to (None for a bad or deleted session's token)."""
    return db.scalar(select(ChatSession.id).where(ChatSession.token_hash == hash_token(token)))


def authorize(
    db: Session, raw_session_id: str | None, token: str | None, api_key: str | None
) -> tuple[ChatSession, Actor]:
    """Return the session and the caller, or abort 400/401/403/404 in that order.

    A customer's request costs one statement: the session row (which every caller needs
    anyway), whose stored hash is compared with the token's in constant time. Only a token
    that is not this session's (a refusal) looks the token up as well, to tell a bad or
    deleted session's token (401) from another live session's (403), and an unknown session
    (404) from a bad token (401) - the same answers as when both were always read.
    """
    session_id = parse_session_id(raw_session_id)
    actor = staff_actor(api_key)
    if actor is None and token and token.startswith(STAFF_TOKEN_PREFIX):
        actor = staff_from_token(token)
    if actor is None and not token:
        abort(401, "missing session token (Authorization: Bearer <token>)", "missing_token")
    chat = db.get(ChatSession, session_id)
    if actor is not None:
        if chat is None:
            abort(404, "unknown session", "unknown_session")
        return chat, actor
    assert token is not None
    presented = hash_token(token).encode()
    if chat is not None and hmac.compare_digest(chat.token_hash.encode(), presented):
        return chat, Actor("customer")
    owner = token_owner(db, token)
    if owner is None:
        abort(401, "invalid session token", "invalid_token")
    if chat is None:
        abort(404, "unknown session", "unknown_session")
    abort(403, "this token belongs to another session", "wrong_session")


def authorize_request(db: Session, raw_session_id: str | None) -> tuple[ChatSession, Actor]:
    """`authorize` with the credentials of the current HTTP request."""
    token, key = request_credentials()
    return authorize(db, raw_session_id, token, key)
