"""Quotas across conversations: per client IP for new sessions and messages (HTTP and socket),
upload bytes per conversation. A stack of its own with small limits, on a Redis of its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from models.settings import sqlite_attachments_dir
from tests.client import Api, Socket
from tests.conftest import side_stack


@pytest.fixture(scope="module")
def limited(logdir) -> Iterator[tuple[Api, list[dict], str]]:  # type: ignore[no-untyped-def]
    env = {
        "SESSIONS_PER_IP_PER_MINUTE": "3",
        "RATE_LIMIT_PER_IP_PER_MINUTE": "4",
        "RATE_LIMIT_PER_MINUTE": "0",
        "MAX_UPLOAD_MB": "1",
        "MAX_UPLOAD_MB_PER_SESSION": "2",
    }
    with side_stack(logdir, "limits", env, kb=False) as stack:
        api = Api(stack.urls[0])
        chats = [api.create_session() for _ in range(3)]  # this minute's whole quota
        yield api, chats, stack.env["DATABASE_URL"]
        api.close()


def test_sessions_and_messages_are_limited_per_address(limited):
    api, chats, _ = limited
    refused = api.http.post("/api/sessions", json={})
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"]["code"] == "rate_limited"

    # Messages count per address across conversations: 4 a minute from 127.0.0.1.
    sent = [api.send(chats[i % 3], f"hello {i}", client_msg_id=f"h{i}") for i in range(4)]
    assert [r.status_code for r in sent] == [202] * 4
    over = api.send(chats[0], "one too many")
    assert over.status_code == 429 and over.headers["Retry-After"]
    sock = Socket(api.base_url, session_id=chats[1]["session_id"], token=chats[1]["token"])
    assert sock.recv()["type"] == "connected"
    sock.send({"type": "message", "content": "over the socket", "client_msg_id": "q1"})
    event = sock.until("error")[-1]
    assert event["code"] == "rate_limited" and event["client_msg_id"] == "q1"
    assert event["details"]["retry_after"] >= 1
    # Over the limit, a resend of a stored message is still acknowledged as what it is (the
    # socket counts the limit before its one-statement store, and keeps the refusal for the
    # read that finds the resend), and a new message is still refused.
    sock.send({"type": "message", "content": "hello 1", "client_msg_id": "h1"})
    ack = sock.until("acknowledged")[-1]
    assert ack["duplicate"] is True and ack["message_id"] == sent[1].json()["message_id"]
    sock.send({"type": "message", "content": "still over", "client_msg_id": "q2"})
    event = sock.until("error")[-1]
    assert event["code"] == "rate_limited" and event["client_msg_id"] == "q2"
    sock.close()


def test_upload_bytes_are_limited_per_conversation(limited):
    api, chats, database_url = limited
    chat = chats[2]
    blob = b"plain text line\n" * 60_000  # ~0.92 MiB
    codes, accepted = [], set()
    for i in range(3):
        resp = api.http.post(
            "/api/chat/upload",
            data={"session_id": chat["session_id"]},
            files={"file": (f"notes{i}.txt", blob, "text/plain")},
            headers=api.auth(chat),
        )
        codes.append(resp.status_code)
        if resp.status_code == 202:
            accepted.add(resp.json()["attachment_id"])
    assert codes == [202, 202, 413]
    assert resp.json()["error"]["code"] == "upload_quota_exceeded"
    # The quota is checked once the body is stored (its size is known then), after the file
    # got its name beside a SQLite database: the refused one is removed, the accepted stay.
    beside = sqlite_attachments_dir(database_url)
    if beside is not None:
        assert {p.name for p in beside.iterdir()} == accepted
