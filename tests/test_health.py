"""Health endpoints and the API description."""

from __future__ import annotations


def test_live_and_ready(api):
    assert api.http.get("/health/live").json() == {"status": "ok"}
    resp = api.http.get("/health/ready")
    assert resp.status_code == 200
    checks = resp.json()["checks"]
    assert checks["database"]["ok"] and checks["redis"]["ok"] and checks["worker"]["workers"] >= 1
    # The broker the web sends to is the one its workers consume (BROKER_URL, else REDIS_URL).
    assert checks["broker"]["ok"] and checks["broker"]["transport"] in ("redis", "amqp")


def test_openapi_describes_the_api(api):
    spec = api.http.get("/api/openapi.json").json()
    assert spec["info"]["title"] == "Helpline"
    for path in (
        "/api/sessions",
        "/api/chat/sessions/{session_id}/messages",
        "/api/chat/upload",
        "/api/chat/search",
        "/api/kb/documents",
    ):
        assert path in spec["paths"], path
    schemas = spec["components"]["schemas"]
    assert "ChatResponse" in schemas and "MessageIn" in schemas
    page = api.http.get("/api/docs")
    assert page.status_code == 200 and "openapi.json" in page.text


def test_unknown_route_and_method_are_json(api):
    resp = api.http.get("/api/nothing-here")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"
    resp = api.http.put("/api/sessions")
    assert resp.status_code == 405 and resp.json()["error"]["code"] == "method_not_allowed"
