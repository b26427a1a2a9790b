"""Messages over REST: store-then-enqueue, `?wait`, history, idempotent resend, every refusal."""

from __future__ import annotations

import re
import time

import pytest

from tests.client import STAFF


def cited_numbers(text: str) -> set[int]:
    return {int(n) for n in re.findall(r"\[(\d+)\]", text)}


def test_post_returns_202_then_reply_lands_in_history(api, chat):
    resp = api.send(chat, "How long do I have to return an item?")
    assert resp.status_code == 202
    body = resp.json()
    assert body["status"] == "queued" and body["seq"] == 1 and body["message_id"]
    data = api.wait_for(chat, lambda ms: any(m["role"] == "assistant" for m in ms))
    user, reply = data["messages"]
    assert user["id"] == body["message_id"] and user["status"] == "done"
    assert reply["reply_to_id"] == user["id"] and reply["seq"] == 2
    assert reply["sources"] and reply["timestamp"]


def test_wait_returns_cited_chat_response(api, chat):
    resp = api.send(chat, "How long do I have to return an item?", wait=20)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) >= {
        "message",
        "sources",
        "requires_escalation",
        "confidence",
        "session_id",
        "timestamp",
        "processing_time",
        "metadata",
    }
    assert body["session_id"] == chat["session_id"]
    assert body["requires_escalation"] is False
    numbers = cited_numbers(body["message"])
    assert numbers and numbers == {s["index"] for s in body["sources"]}
    assert any(s["external_id"].startswith("returns/") for s in body["sources"])


def test_off_topic_question_is_not_guessed(api, chat):
    body = api.send(chat, "What is the capital of Mongolia?", wait=20).json()
    assert body["sources"] == []
    assert body["requires_escalation"] is True
    assert body["metadata"]["escalation_reason"] == "low_confidence"


def test_wait_zero_and_out_of_range(api, chat):
    assert api.send(chat, "hi", wait=0).status_code == 202
    resp = api.send(chat, "hi", wait=31)
    assert resp.status_code == 422
    assert "wait" in resp.json()["error"]["details"]


def test_same_client_msg_id_twice_is_one_message_one_answer(api, chat):
    first = api.send(chat, "Where is my parcel?", client_msg_id="c-1").json()
    second = api.send(chat, "Where is my parcel?", client_msg_id="c-1").json()
    assert first["message_id"] == second["message_id"] and second["duplicate"] is True
    data = api.wait_for(chat, lambda ms: any(m["role"] == "assistant" for m in ms))
    time.sleep(1.0)  # give a wrongly duplicated task time to show itself
    data = api.history(chat)
    assert [m["role"] for m in data["messages"]] == ["user", "assistant"]


def test_sends_read_together_take_consecutive_seqs_and_one_client_msg_id_is_one_message(api, chat):
    """Three sends of one conversation read its counter at the same value (three tabs, say).
    The first stored takes the next seq; the second, whose read is stale by then, takes a later
    one (on PostgreSQL its one-statement insert finds the counter moved, writes nothing, and
    the locking way stores it; the worker's answer to the first may come in between); the
    third repeats the first's client_msg_id, which its read did not see yet, and is that
    message (the unique key decides). No gap, no double, each message's event carries its seq,
    and the two messages get two answers."""
    from models.db import session_scope
    from models.events import events_after
    from models.settings import get_settings
    from webapp import create_app
    from webapp.auth import Actor
    from webapp.chat import accept_message, chat_for_message

    sid = chat["session_id"]
    app = create_app({"HELPLINE": get_settings(), "TESTING": True})
    customer = Actor("customer")
    sends = [("tab-1", "Where is my parcel?"), ("tab-2", "Do you ship to Norway?")]
    sends.append(sends[0])
    with (
        app.test_request_context("/ws", environ_base={"REMOTE_ADDR": "127.0.0.1"}),
        session_scope() as db1,
        session_scope() as db2,
        session_scope() as db3,
    ):
        dbs = (db1, db2, db3)
        reads = [
            chat_for_message(db, sid, cid) for db, (cid, _text) in zip(dbs, sends, strict=True)
        ]
        assert all(found is not None and dup is None for found, dup in reads)
        n = reads[0][0].last_seq
        first, second, again = (
            accept_message(db, found, customer, text, cid, duplicate_of=dup)
            for db, (found, dup), (cid, text) in zip(dbs, reads, sends, strict=True)
        )
        assert first.created and second.created and not again.created
        assert again.message.id == first.message.id
        assert first.message.seq == n + 1 and second.message.seq > n + 1
        stored = [(first.message.id, n + 1), (second.message.id, second.message.seq)]
    data = api.wait_for(chat, lambda ms: sum(m["role"] == "assistant" for m in ms) == 2)
    assert [(m["id"], m["seq"]) for m in data["messages"] if m["role"] == "user"] == stored
    assert [m["seq"] for m in data["messages"]] == list(range(n + 1, n + 5))
    with session_scope() as db:
        logged = events_after(db, sid, n)
        resend = chat_for_message(db, sid, "tab-1")[1]
    seqs = [e["seq"] for e in logged]
    assert seqs == list(range(n + 1, n + 1 + len(seqs)))  # no gap, no double
    told = [(e["message"]["id"], e["seq"]) for e in logged if e["type"] == "user_message"]
    assert told == stored
    assert all(e["message"]["seq"] == e["seq"] for e in logged if e["type"] == "user_message")
    assert resend == stored[0][0]


def test_replies_come_in_order(api, chat):
    questions = ["How do I reset my password?", "What does Plus cost?", "Do you ship to Norway?"]
    ids = [api.send(chat, q).json()["message_id"] for q in questions]
    data = api.wait_for(chat, lambda ms: sum(m["role"] == "assistant" for m in ms) == 3)
    replies = [m for m in data["messages"] if m["role"] == "assistant"]
    assert [r["reply_to_id"] for r in replies] == ids
    assert [m["seq"] for m in data["messages"]] == list(range(1, 7))


def test_history_paging_and_after(api, chat):
    api.send(chat, "How do I change my email?")
    api.wait_for(chat, lambda ms: len(ms) == 2)
    api.send(chat, "and my password?")
    api.wait_for(chat, lambda ms: len(ms) == 4)
    page = api.history(chat, limit=2, offset=1)
    assert page["total"] == 4 and [m["seq"] for m in page["messages"]] == [2, 3]
    after = api.history(chat, after=2)
    assert after["total"] == 2 and [m["seq"] for m in after["messages"]] == [3, 4]
    resp = api.http.get(
        f"/api/chat/sessions/{chat['session_id']}/messages",
        params={"limit": "many"},
        headers=api.auth(chat),
    )
    assert resp.status_code == 422


@pytest.mark.no_broker  # refused before anything is stored or sent
def test_bad_bodies(api, chat):
    url = f"/api/chat/sessions/{chat['session_id']}/messages"
    auth = api.auth(chat)
    resp = api.http.post(
        url, content=b"{not json", headers={**auth, "Content-Type": "application/json"}
    )
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_json"
    resp = api.http.post(url, json=["a", "list"], headers=auth)
    assert resp.status_code == 400
    resp = api.http.post(url, json={"text": "wrong field"}, headers=auth)
    assert resp.status_code == 422 and "message" in resp.json()["error"]["details"]
    resp = api.http.post(url, json={"message": "   "}, headers=auth)
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "empty_message"
    resp = api.http.post(url, json={"message": "x" * 4001}, headers=auth)
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "message_too_long"
    resp = api.http.post(url, content=b"message=hi", headers={**auth, "Content-Type": "text/plain"})
    assert resp.status_code == 415
    resp = api.http.post(
        "/api/chat/sessions/undefined/messages", json={"message": "hi"}, headers=auth
    )
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "malformed_session_id"
    # Nothing above was stored.
    assert api.history(chat)["total"] == 0


def test_multipart_message_with_attachment_is_used_in_answer(api, chat):
    text = b"Order BW-7731 arrived with a cracked Pulse Mini speaker. Can I get a replacement?"
    resp = api.http.post(
        f"/api/chat/sessions/{chat['session_id']}/messages",
        data={
            "message": "What should I do about the item described in my file?",
            "client_msg_id": "mp-1",
        },
        files=[("attachments[]", ("note.txt", text, "text/plain"))],
        headers=api.auth(chat),
    )
    assert resp.status_code == 202, resp.text
    data = api.wait_for(chat, lambda ms: any(m["role"] == "assistant" for m in ms))
    user, reply = data["messages"][0], data["messages"][-1]
    assert user["attachments"][0]["filename"] == "note.txt"
    assert any(
        "damaged" in s["external_id"] or "return" in s["external_id"] for s in reply["sources"]
    ), reply


def test_rate_limit_429_with_retry_after(api):
    chat = api.create_session()
    statuses = [api.send(chat, f"message {i}").status_code for i in range(30)]
    assert statuses[:30] == [202] * 30
    resp = api.send(chat, "one too many")
    assert resp.status_code == 429
    assert int(resp.headers["Retry-After"]) >= 1
    assert resp.json()["error"]["code"] == "rate_limited"


def test_staff_posts_as_agent_only_after_taking_over(api, chat):
    url = f"/api/chat/sessions/{chat['session_id']}/messages"
    body = {"message": "Hi, this is Sam from support."}
    refused = api.http.post(url, json=body, headers=STAFF)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "not_claimed"
    taken = api.http.post(f"/api/sessions/{chat['session_id']}/takeover", headers=STAFF)
    assert taken.status_code == 201
    assert api.http.post(url, json=body, headers=STAFF).status_code == 202
    time.sleep(1.0)
    roles = [m["role"] for m in api.history(chat)["messages"]]
    assert roles == ["agent"]
