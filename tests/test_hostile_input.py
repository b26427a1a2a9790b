"""Malformed and hostile input gets a 4xx or an `error` event: never a 500, never a broken socket.

The cases are the classes an attacker found: integer overflow in paging, JSON nested thousands
deep, lone surrogates and NUL (which PostgreSQL cannot store), non-finite numbers, wrong types
inside lists, oversized free-form metadata, foreign origins and socket floods.
"""

from __future__ import annotations

import json

import pytest
import websocket

from tests.client import STAFF, Socket, refused, ws_url

SURROGATE = '"\\ud800"'  # JSON text for a lone surrogate (legal JSON, not storable Unicode)


def post_raw(api, path: str, body: str, headers: dict | None = None):  # type: ignore[no-untyped-def]
    return api.http.post(
        path, content=body.encode(), headers={"Content-Type": "application/json", **(headers or {})}
    )


@pytest.mark.parametrize(
    "params",
    [
        {"offset": "9223372036854775808"},
        {"after": "2147483648"},
        {"limit": "99999999999999999999"},
        {"offset": "-1"},
    ],
)
def test_paging_out_of_range_is_422(api, chat, params):
    resp = api.http.get(
        f"/api/chat/sessions/{chat['session_id']}/messages", params=params, headers=api.auth(chat)
    )
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "invalid_fields"


def test_deeply_nested_json_is_400_everywhere(api, chat):
    deep = "[" * 30000 + "]" * 30000
    for path, headers in (
        ("/api/sessions", {}),
        (f"/api/chat/sessions/{chat['session_id']}/messages", api.auth(chat)),
        (f"/api/sessions/{chat['session_id']}/rating", api.auth(chat)),
        ("/api/kb/documents", STAFF),
    ):
        resp = post_raw(api, path, deep, headers)
        assert resp.status_code in (400, 422), (path, resp.status_code, resp.text)
        assert resp.json()["error"]["code"]


def test_text_neither_database_can_store_is_422(api, chat):
    msg = f"/api/chat/sessions/{chat['session_id']}/messages"
    cases = [
        ("/api/sessions", '{"user_id": ' + SURROGATE + "}", {}),
        ("/api/sessions", '{"metadata": {"k": ' + SURROGATE + "}}", {}),
        (msg, '{"message": ' + SURROGATE + "}", api.auth(chat)),
        (msg, '{"message": "a\\u0000b"}', api.auth(chat)),
        (msg, '{"message": "hi", "client_msg_id": ' + SURROGATE + "}", api.auth(chat)),
        (
            f"/api/sessions/{chat['session_id']}/rating",
            '{"score": 3, "comment": ' + SURROGATE + "}",
            api.auth(chat),
        ),
        ("/api/kb/documents", '{"title": ' + SURROGATE + ', "text": "x"}', STAFF),
    ]
    for path, body, headers in cases:
        resp = post_raw(api, path, body, headers)
        assert resp.status_code == 422, (path, body, resp.status_code, resp.text)
    assert api.history(chat)["total"] == 0  # nothing half-stored


def test_oversized_metadata_is_refused(api):
    resp = api.http.post("/api/sessions", json={"metadata": {"blob": "x" * 100_000}})
    assert resp.status_code == 422 and "metadata" in resp.json()["error"]["details"]["json"]


def test_bad_frames_get_error_events_and_the_socket_keeps_working(api, chat):
    sock = Socket(api.base_url, session_id=chat["session_id"], token=chat["token"])
    assert sock.recv()["type"] == "connected"
    frames = [
        ("[" * 30000, "invalid_json"),
        ('{"type": "ping", "id": 1e999}', "invalid_json"),
        ('{"type": "ping", "id": NaN}', "invalid_json"),
        (
            json.dumps({"type": "message", "content": "hi", "attachment_ids": [[1]]}),
            "invalid_fields",
        ),
        (
            json.dumps({"type": "message", "content": "hi", "attachment_ids": [{}]}),
            "invalid_fields",
        ),
        ('{"type": "message", "content": ' + SURROGATE + "}", "invalid_text"),
        ('{"type": "message", "content": "x", "client_msg_id": ' + SURROGATE + "}", "invalid_text"),
        ('{"type": "message", "content": "a\\u0000b"}', "invalid_text"),
        (json.dumps({"type": "message", "content": "hi", "client_msg_id": True}), "invalid_fields"),
    ]
    for frame, code in frames:
        sock.send(frame)
        event = sock.recv()
        assert event["type"] == "error" and event["code"] == code, (frame[:60], event)
    sock.ws.send_binary(b"\x00\xff" * 10)
    assert sock.recv()["code"] == "binary_not_supported"
    sock.send({"type": "ping", "id": 5})
    assert sock.recv() == {**sock.seen[-1], "type": "pong", "id": 5}
    sock.send({"type": "message", "content": "How long does a refund take?"})
    assert sock.until("complete")[-1]["message"]["sources"]
    sock.close()
    assert api.history(chat)["total"] == 2


def test_foreign_origin_is_refused_own_and_none_are_allowed(api, chat):
    params = {"session_id": chat["session_id"], "token": chat["token"]}
    ws = websocket.create_connection(
        ws_url(api.base_url, **params), origin="https://evil.example", timeout=10
    )
    event = json.loads(ws.recv())
    assert event["type"] == "error" and event["code"] == "origin_not_allowed"
    ws.close()
    own = websocket.create_connection(
        ws_url(api.base_url, **params), origin=api.base_url, timeout=10
    )
    assert json.loads(own.recv())["type"] == "connected"
    own.close()
    bare = websocket.create_connection(
        ws_url(api.base_url, **params), suppress_origin=True, timeout=10
    )
    assert json.loads(bare.recv())["type"] == "connected"
    bare.close()


def test_sockets_per_conversation_are_capped(api, chat):
    params = {"session_id": chat["session_id"], "token": chat["token"]}
    held = []
    for _ in range(8):
        sock = Socket(api.base_url, **params)
        assert sock.recv()["type"] == "connected"
        held.append(sock)
    event, code = refused(api.base_url, **params)
    assert event["code"] == "too_many_sockets" and code == 4029
    for sock in held:
        sock.close()
