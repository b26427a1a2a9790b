"""The original system's React client (customer-support-agent), replayed against the real stack.

Every call below is one that client makes, in its own field names, with the single change a
migrating team makes: it keeps the `token` of `POST /api/sessions` and sends it (`Authorization:
Bearer` on HTTP, `&token=` on the socket). Its page runs on another origin, which the suite's
stack lists in CORS_ORIGINS (tests/conftest.py); any other origin stays refused.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from tests.client import Api, Socket, refused
from tests.conftest import CORS_ORIGIN

REFUSED_ORIGIN = "http://evil.example"
SAM = {"X-API-Key": "sam-key"}


class OriginalClient:
    """The original client's HTTP and socket calls (its api and websocket services), token added."""

    def __init__(self, api: Api) -> None:
        self.base_url = api.base_url
        self.http = api.http
        self.session_id = ""
        self.token = ""

    def _headers(self, **extra: str) -> dict[str, str]:
        headers = {"Origin": CORS_ORIGIN, "X-Request-ID": "req_1765000000_abc123def", **extra}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def create_session(self) -> httpx.Response:
        resp = self.http.post(
            "/api/sessions",
            json={"user_id": None, "metadata": {"source": "web", "userAgent": "Mozilla/5.0"}},
            headers=self._headers(),
        )
        body = resp.json()
        self.session_id, self.token = body["session_id"], body["token"]  # the one change
        return resp

    def get_session(self) -> httpx.Response:
        return self.http.get(f"/api/sessions/{self.session_id}", headers=self._headers())

    def get_messages(self) -> httpx.Response:
        return self.http.get(
            f"/api/chat/sessions/{self.session_id}/messages",
            params={"limit": 50, "offset": 0},
            headers=self._headers(),
        )

    def send_message(self, text: str, wait: float) -> httpx.Response:
        """The REST fallback: multipart `message`, as the original client posts it."""
        return self.http.post(
            f"/api/chat/sessions/{self.session_id}/messages",
            params={"wait": wait},
            files={"message": (None, text)},
            headers=self._headers(),
        )

    def search(self, query: str, limit: int = 5, **headers: str) -> httpx.Response:
        return self.http.post(
            "/api/chat/search", json={"query": query, "limit": limit}, headers=headers
        )

    def end_session(self) -> httpx.Response:
        return self.http.patch(
            f"/api/sessions/{self.session_id}/status",
            json={"status": "ended"},
            headers=self._headers(),
        )

    def socket(self) -> Socket:
        sock = Socket(
            self.base_url, origin=CORS_ORIGIN, session_id=self.session_id, token=self.token
        )
        assert sock.recv()["type"] == "connected"
        return sock

    @staticmethod
    def frame(type_: str, **data: Any) -> dict:
        """Its frames carry their own timestamp beside the fields."""
        return {"type": type_, **data, "timestamp": datetime.now(UTC).isoformat()}


def assert_original_sources(sources: list[dict]) -> None:
    """Each source in the original shape, and in ours beside it."""
    assert sources
    for s in sources:
        assert isinstance(s["content"], str) and s["content"].strip()
        assert s["relevance_score"] == round(s["score"], 4) and s["relevance_score"] > 0
        assert s["rank"] == s["index"]
        meta = s["metadata"]
        assert meta["source"] == s["title"] and "page" in meta and meta["page"] is None
        assert meta["document_id"] == s["document_id"] and meta["chunk_id"] == s["chunk_id"]
        assert s["snippet"] and s["title"]


def test_preflights_from_an_allowed_and_a_refused_origin(api):
    path = "/api/sessions/00000000-0000-4000-8000-000000000000/status"
    asked = {
        "Access-Control-Request-Method": "PATCH",
        "Access-Control-Request-Headers": "authorization,content-type,x-request-id",
    }
    allowed = api.http.options(path, headers={"Origin": CORS_ORIGIN, **asked})
    assert allowed.status_code == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == CORS_ORIGIN
    assert allowed.headers["Access-Control-Allow-Credentials"] == "true"
    assert "PATCH" in allowed.headers["Access-Control-Allow-Methods"]
    granted = {h.strip() for h in allowed.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type", "x-request-id"} <= granted
    assert "Origin" in allowed.headers["Vary"]

    other = api.http.options(path, headers={"Origin": REFUSED_ORIGIN, **asked})
    assert "Access-Control-Allow-Origin" not in other.headers
    assert "Access-Control-Allow-Credentials" not in other.headers

    # Real requests: the allowed page may read the body and the request id; the other may not.
    ready = api.http.get("/health/ready", headers={"Origin": CORS_ORIGIN})
    assert ready.headers["Access-Control-Allow-Origin"] == CORS_ORIGIN
    assert "X-Request-ID" in ready.headers["Access-Control-Expose-Headers"]
    body = ready.json()
    assert body["services"] == {name: "healthy" for name in body["checks"]}
    assert (
        "Access-Control-Allow-Origin"
        not in api.http.get("/health/ready", headers={"Origin": REFUSED_ORIGIN}).headers
    )
    # Without an Origin nothing is announced (the allow-list is not published).
    assert "Access-Control-Allow-Origin" not in api.http.get("/health/live").headers


def test_the_original_client_end_to_end(api):
    client = OriginalClient(api)
    created = client.create_session()
    assert created.status_code == 201
    assert created.headers["Access-Control-Allow-Origin"] == CORS_ORIGIN
    session = client.get_session().json()
    assert session["id"] == session["session_id"] == client.session_id
    assert session["status"] == "active"
    history = client.get_messages().json()
    assert history["messages"] == [] and history["total"] == 0

    # Streamed answer over the socket from the page's origin, sources shown as it reads them.
    sock = client.socket()
    sock.send(client.frame("message", content="How long does a refund take?"))
    events = sock.until("complete", timeout=60)
    assert "".join(e["content"] for e in events if e["type"] == "text").strip()
    (announced,) = [e["sources"] for e in events if e["type"] == "sources"]
    assert_original_sources(announced)
    stored = events[-1]["message"]["sources"]
    assert stored == announced  # one schema for the stream and the stored reply

    # Errors in words: `content` beside `message` and `code`.
    sock.send(client.frame("message", content=""))
    error = sock.until("error")[-1]
    assert error["code"] and error["content"] == error["message"] and error["message"]
    sock.close()

    # The REST fallback (socket down): multipart, `?wait=` for the reply in the response.
    reply = client.send_message("Do you ship to Norway?", wait=20)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["message"] and body["requires_escalation"] is False
    assert_original_sources(body["sources"])

    # History as the original client maps it, sources included.
    messages = client.get_messages().json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    for msg in messages:
        assert msg["id"] and msg["content"] and msg["timestamp"]
    assert messages[1]["sources"] == stored
    assert_original_sources(messages[3]["sources"])

    # Search: an honest 401 without credentials, the original shape with the token.
    anonymous = client.search("refund")
    assert anonymous.status_code == 401
    hint = anonymous.json()["error"]["message"]
    assert "session token" in hint and "Bearer" in hint and "X-API-Key" in hint
    found = client.search("refund", 3, Authorization=f"Bearer {client.token}")
    assert found.status_code == 200, found.text
    rows = found.json()
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    assert_original_sources(rows)
    assert all(len(r["content"]) >= len(r["snippet"].rstrip("…")) for r in rows)

    # Ending through the original route, cross-origin.
    ended = client.end_session()
    assert ended.status_code == 200, ended.text
    assert ended.headers["Access-Control-Allow-Origin"] == CORS_ORIGIN
    assert ended.json()["status"] == "ended" and ended.json()["id"] == client.session_id
    assert client.get_session().json()["status"] == "ended"
    event, code = refused(
        api.base_url, origin=CORS_ORIGIN, session_id=client.session_id, token=client.token
    )
    assert code == 4009 and event["content"] == event["message"]


def test_the_status_route_has_the_same_rules(api):
    client = OriginalClient(api)
    client.create_session()
    other = api.create_session()
    path = f"/api/sessions/{client.session_id}/status"
    assert api.http.patch(path, json={"status": "ended"}).status_code == 401
    wrong = api.http.patch(path, json={"status": "ended"}, headers=api.auth(other))
    assert wrong.status_code == 403
    bad = api.http.patch(path, json={"status": "active"}, headers=client._headers())
    assert bad.status_code == 422
    by_query = api.http.patch(path, params={"status": "ended"}, headers=client._headers())
    assert by_query.status_code == 200 and by_query.json()["status"] == "ended"


def test_typing_in_either_spelling_and_never_a_missing_value(api):
    client = OriginalClient(api)
    client.create_session()
    customer = client.socket()
    token = api.http.post("/api/console/token", headers=SAM).json()["token"]
    agent = Socket(api.base_url, session_id=client.session_id, token=token)
    assert agent.recv()["type"] == "connected"

    customer.send(client.frame("typing", isTyping=True))
    seen = agent.until("user_typing")[-1]
    assert seen["is_typing"] is True and seen["role"] == "user"
    customer.send(client.frame("typing", isTyping=False))
    assert agent.until("user_typing")[-1]["is_typing"] is False  # "stopped" is never "typing"

    # The agent types: the original client hears `typing`; stopping is not sent under that name.
    agent.send({"type": "typing", "is_typing": True})
    started = customer.until("typing")
    assert [e["type"] for e in started] == ["user_typing", "typing"]
    assert started[-1]["role"] == "agent" and started[-1]["name"] == "Sam"
    agent.send({"type": "typing", "is_typing": False})
    stopped = customer.until("user_typing")
    assert [e["type"] for e in stopped] == ["user_typing"] and stopped[-1]["is_typing"] is False

    # A typing frame that does not say whether is an error, and reaches nobody.
    for frame in (client.frame("typing"), client.frame("typing", isTyping="yes")):
        customer.send(frame)
        error = customer.until("error")[-1]
        assert error["code"] == "invalid_fields" and error["content"] == error["message"]
    customer.send({"type": "ping", "id": "after"})
    assert customer.until("pong")[-1]["id"] == "after"
    assert not [e for e in agent.quiet(0.5) if e["type"] in ("user_typing", "typing")]
    customer.close()
    agent.close()


def test_escalation_banner_with_its_ticket_and_reasons(api):
    client = OriginalClient(api)
    client.create_session()
    sock = client.socket()
    sock.send(client.frame("message", content="I want to talk to a human"))
    escalation = sock.until("escalation", timeout=60)[-1]
    assert escalation["required"] is True and escalation["ticket_id"]
    assert isinstance(escalation["reasons"], list) and escalation["reasons"]
    assert escalation["reason"] == escalation["reasons"][0]
    sock.close()

    # The REST fallback carries the banner's fields in `metadata`.
    rest = OriginalClient(api)
    rest.create_session()
    body = rest.send_message("I want to talk to a human", wait=20).json()
    assert body["requires_escalation"] is True
    meta = body["metadata"]
    assert meta["ticket_id"] and meta["reasons"] and meta["priority"]
