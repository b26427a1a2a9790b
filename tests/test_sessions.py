"""Sessions over real HTTP: lifecycle, credentials and every refusal status."""

from __future__ import annotations

import uuid

import pytest

from tests.client import STAFF


def test_create_returns_token_and_fields(api):
    chat = api.create_session(user_id="cust-1", metadata={"plan": "plus"})
    assert uuid.UUID(chat["session_id"])
    assert len(chat["token"]) >= 40
    assert chat["status"] == "active"
    assert chat["user_id"] == "cust-1"
    assert chat["metadata"] == {"plan": "plus"}
    assert chat["created_at"]


def test_create_without_body(api):
    resp = api.http.post("/api/sessions")
    assert resp.status_code == 201
    assert resp.json()["user_id"] is None


def test_get_with_own_token_hides_token(api, chat):
    resp = api.http.get(f"/api/sessions/{chat['session_id']}", headers=api.auth(chat))
    assert resp.status_code == 200
    body = resp.json()
    assert body["session_id"] == chat["session_id"]
    assert "token" not in body


@pytest.mark.parametrize("bad_id", ["undefined", "null", "123", "x" * 300])
def test_malformed_id_is_400(api, chat, bad_id):
    resp = api.http.get(f"/api/sessions/{bad_id}", headers=api.auth(chat))
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "malformed_session_id"


def test_missing_and_bad_credentials_are_401(api, chat):
    url = f"/api/sessions/{chat['session_id']}"
    assert api.http.get(url).status_code == 401
    resp = api.http.get(url, headers={"Authorization": "Bearer not-a-token"})
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "invalid_token"
    assert api.http.get(url, headers={"X-API-Key": "wrong"}).status_code == 401


def test_unknown_session_is_404(api, chat):
    resp = api.http.get(f"/api/sessions/{uuid.uuid4()}", headers=api.auth(chat))
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "unknown_session"


def test_end_with_body_and_query(api):
    a, b = api.create_session(), api.create_session()
    resp = api.http.patch(
        f"/api/sessions/{a['session_id']}", json={"status": "ended"}, headers=api.auth(a)
    )
    assert resp.status_code == 200 and resp.json()["status"] == "ended"
    resp = api.http.patch(f"/api/sessions/{b['session_id']}?status=ended", headers=api.auth(b))
    assert resp.status_code == 200 and resp.json()["status"] == "ended"
    # An ended session takes no messages.
    resp = api.send(a, "still there?")
    assert resp.status_code == 409
    assert resp.json()["error"]["code"] == "session_not_active"


def test_patch_only_ends_a_session(api, chat):
    """Ownership (bot, waiting, person) moves only through the handoff API, never by PATCH."""
    url = f"/api/sessions/{chat['session_id']}"
    for status in ("bogus", "escalated", "active"):
        resp = api.http.patch(url, json={"status": status}, headers=STAFF)
        assert resp.status_code == 422, status
        assert "status" in resp.json()["error"]["details"]


def test_delete_removes_messages(api):
    chat = api.create_session()
    assert api.send(chat, "hello there").status_code == 202
    url = f"/api/sessions/{chat['session_id']}"
    assert api.http.delete(url, headers=api.auth(chat)).status_code == 204
    # The token died with the session.
    assert api.http.get(url, headers=api.auth(chat)).status_code == 401
    assert api.http.get(url, headers=STAFF).status_code == 404
    resp = api.http.get(f"/api/chat/sessions/{chat['session_id']}/messages", headers=STAFF)
    assert resp.status_code == 404


def test_staff_list_and_filters(api):
    user = f"filter-{uuid.uuid4().hex[:6]}"
    for _ in range(3):
        api.create_session(user_id=user)
    resp = api.http.get("/api/sessions", params={"user_id": user, "limit": 2}, headers=STAFF)
    assert resp.status_code == 200
    body = resp.json()
    assert body["total"] == 3 and len(body["sessions"]) == 2
    assert all(s["user_id"] == user for s in body["sessions"])
    assert api.http.get("/api/sessions").status_code == 401
    resp = api.http.get("/api/sessions", params={"limit": 0}, headers=STAFF)
    assert resp.status_code == 422


def test_rating(api, chat):
    url = f"/api/sessions/{chat['session_id']}/rating"
    resp = api.http.post(url, json={"score": 5, "comment": "quick"}, headers=api.auth(chat))
    assert resp.status_code == 201 and resp.json()["score"] == 5
    resp = api.http.post(url, json={"score": 9}, headers=api.auth(chat))
    assert resp.status_code == 422


def test_another_sessions_token_is_refused_everywhere(api):
    mine, theirs = api.create_session(), api.create_session()
    sid = theirs["session_id"]
    auth = api.auth(mine)
    calls = [
        ("GET", f"/api/sessions/{sid}", None),
        ("PATCH", f"/api/sessions/{sid}", {"status": "ended"}),
        ("DELETE", f"/api/sessions/{sid}", None),
        ("POST", f"/api/chat/sessions/{sid}/messages", {"message": "hi"}),
        ("GET", f"/api/chat/sessions/{sid}/messages", None),
        ("POST", f"/api/sessions/{sid}/rating", {"score": 1}),
    ]
    for method, url, body in calls:
        resp = api.http.request(method, url, json=body, headers=auth)
        assert resp.status_code == 403, (method, url, resp.text)
        assert resp.json()["error"]["code"] == "wrong_session"
    resp = api.http.post(
        "/api/chat/upload",
        data={"session_id": sid},
        files={"file": ("a.txt", b"hello", "text/plain")},
        headers=auth,
    )
    assert resp.status_code == 403
    # Their session is untouched.
    resp = api.http.get(f"/api/sessions/{sid}", headers=api.auth(theirs))
    assert resp.status_code == 200 and resp.json()["status"] == "active"
