"""The WebSocket protocol against real gunicorn processes and a real worker."""

from __future__ import annotations

import re
import uuid

import pytest

from tests.client import Socket, refused


def open_socket(api, chat, **params) -> Socket:  # type: ignore[no-untyped-def]
    sock = Socket(api.base_url, session_id=chat["session_id"], token=chat["token"], **params)
    hello = sock.recv()
    assert hello["type"] == "connected" and hello["client_id"]
    return sock


def test_full_loop_streams_a_cited_answer(api, chat):
    sock = open_socket(api, chat)
    sock.send({"type": "message", "content": "How long does a refund take?", "client_msg_id": "w1"})
    events = sock.until("complete")
    kinds = [e["type"] for e in events]
    assert kinds[0] == "acknowledged"
    ack = events[0]
    assert ack["client_msg_id"] == "w1" and ack["seq"] == 1 and ack["message_id"]
    assert kinds.index("start") < kinds.index("sources") < kinds.index("text")
    deltas = [e["content"] for e in events if e["type"] == "text"]
    assert len(deltas) > 1, "the answer must stream in several deltas"
    done = events[-1]
    assert done["seq"] == 2
    message = done["message"]
    assert "".join(deltas) == message["content"]
    assert message["reply_to_id"] == ack["message_id"]
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", message["content"])}
    assert cited and cited == {s["index"] for s in message["sources"]}
    for event in events:
        assert event["session_id"] == chat["session_id"] and event["timestamp"]
    sock.close()


@pytest.mark.no_broker  # socket frames and pub/sub only
def test_ping_pong_and_protocol_errors(api, chat):
    sock = open_socket(api, chat)
    sock.send({"type": "ping", "id": 7})
    pong = sock.recv()
    assert pong["type"] == "pong" and pong["id"] == 7
    cases = [
        ("{broken", "invalid_json"),
        ('["not", "an", "object"]', "invalid_event"),
        ({"type": "message", "content": ""}, "empty_message"),
        ({"type": "message", "content": "y" * 5000}, "message_too_long"),
        ({"type": "message"}, "invalid_fields"),
        ({"type": "dance"}, "unknown_type"),
        ("z" * 70000, "frame_too_large"),
    ]
    for frame, code in cases:
        sock.send(frame)
        event = sock.recv()
        assert event["type"] == "error" and event["code"] == code, (code, event)
        assert event["message"]
    # The socket still works after all that.
    sock.send({"type": "ping"})
    assert sock.recv()["type"] == "pong"
    sock.close()


@pytest.mark.no_broker  # socket frames and pub/sub only
def test_typing_reaches_others_only(api, chat):
    a, b = open_socket(api, chat), open_socket(api, chat)
    a.send({"type": "typing", "is_typing": True})
    event = b.recv()
    assert event["type"] == "user_typing" and event["is_typing"] is True
    assert all(e["type"] != "user_typing" for e in a.quiet(0.5))
    a.close()
    b.close()


@pytest.mark.no_broker  # refused before the socket subscribes to anything
@pytest.mark.parametrize(
    ("params", "code", "close"),
    [
        ({"session_id": "undefined"}, "malformed_session_id", 4001),
        ({"session_id": "null"}, "malformed_session_id", 4001),
        ({"after": "soon"}, "malformed_after", 4001),
        ({"token": "wrong"}, "invalid_token", 4003),
        ({"token": None}, "missing_token", 4003),
        ({"session_id": str(uuid.uuid4())}, "unknown_session", 4004),
    ],
)
def test_refusals_explain_then_close(api, chat, params, code, close):
    query = {"session_id": chat["session_id"], "token": chat["token"], **params}
    event, close_code = refused(api.base_url, **query)
    assert event["type"] == "error" and event["code"] == code
    assert close_code == close


@pytest.mark.no_broker  # socket refusals
def test_other_sessions_token_and_ended_session(api):
    mine, theirs = api.create_session(), api.create_session()
    event, code = refused(api.base_url, session_id=theirs["session_id"], token=mine["token"])
    assert (event["code"], code) == ("wrong_session", 4003)
    api.http.patch(
        f"/api/sessions/{mine['session_id']}", json={"status": "ended"}, headers=api.auth(mine)
    )
    event, code = refused(api.base_url, session_id=mine["session_id"], token=mine["token"])
    assert (event["code"], code) == ("session_not_active", 4009)


def test_reconnect_with_after_replays_exactly_what_was_missed(api, chat):
    sock = open_socket(api, chat)
    sock.send({"type": "message", "content": "How do I track my order?"})
    first = sock.until("complete")
    last_seen = first[-1]["seq"]
    sock.close()
    # While away: two more exchanges over REST.
    api.send(chat, "Can I change the delivery address?")
    api.send(chat, "What about express shipping?")
    api.wait_for(chat, lambda ms: sum(m["role"] == "assistant" for m in ms) == 3)
    back = open_socket(api, chat, after=last_seen)
    replay = []
    while len(replay) < 4:
        event = back.recv()
        if "seq" in event:
            replay.append(event)
    assert [e["seq"] for e in replay] == [3, 4, 5, 6]
    kinds = [e["type"] for e in replay]
    assert sorted(kinds) == ["complete", "complete", "user_message", "user_message"]
    assert kinds[0] == "user_message" and kinds[-1] == "complete"
    # Then live: nothing repeated, the next exchange continues the sequence.
    back.send({"type": "message", "content": "thanks!"})
    live = back.until("complete")
    seqs = [e["seq"] for e in live if "seq" in e and e["type"] != "acknowledged"]
    assert seqs == [8]
    assert live[0]["type"] == "acknowledged" and live[0]["seq"] == 7
    back.close()


def test_two_web_processes_both_deliver(api, api2, chat):
    on_a, on_b = open_socket(api, chat), open_socket(api2, chat)
    resp = api2.send(chat, "Do you have gift cards?")
    assert resp.status_code == 202
    done_a, done_b = on_a.until("complete"), on_b.until("complete")
    assert done_a[-1]["message"]["id"] == done_b[-1]["message"]["id"]
    # Both saw the user's message too (sent from a third party: REST on web 2).
    assert done_a[0]["type"] == "user_message" and done_b[0]["type"] == "user_message"
    on_a.close()
    on_b.close()


def test_duplicate_client_msg_id_over_socket(api, chat):
    sock = open_socket(api, chat)
    sock.send({"type": "message", "content": "Is there a warranty?", "client_msg_id": "dup"})
    first = sock.until("complete")
    sock.send({"type": "message", "content": "Is there a warranty?", "client_msg_id": "dup"})
    again = sock.recv()
    assert again["type"] == "acknowledged" and again["duplicate"] is True
    assert again["message_id"] == first[0]["message_id"]
    assert all(e["type"] != "start" for e in sock.quiet(1.0))
    sock.close()


def test_ending_or_deleting_the_session_closes_its_sockets(api):
    import websocket

    for action, expected in (("end", 4009), ("delete", 4004)):
        chat = api.create_session()
        sock = open_socket(api, chat)
        url = f"/api/sessions/{chat['session_id']}"
        if action == "end":
            api.http.patch(url, json={"status": "ended"}, headers=api.auth(chat))
        else:
            api.http.delete(url, headers=api.auth(chat))
        event = sock.recv()
        assert event["type"] == "session_status"
        while True:
            opcode, frame = sock.ws.recv_data_frame(True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
        assert int.from_bytes(frame.data[:2], "big") == expected
        sock.close()


def test_a_burst_of_first_messages_is_each_acknowledged_and_answered(api):
    """Many sessions' first messages at the same instant: those that arrive while a batch is
    being committed are stored together in the next (SOCKET_ACCEPTS_AT_ONCE), and every one
    is acknowledged once, before its own broadcast and reply, and answered."""
    chats = [api.create_session() for _ in range(12)]
    socks = [open_socket(api, chat) for chat in chats]
    for i, sock in enumerate(socks):
        sock.send({"type": "message", "content": "Do you ship abroad?", "client_msg_id": f"b{i}"})
    for i, sock in enumerate(socks):
        events = sock.until("complete", timeout=60)
        acks = [e for e in events if e["type"] == "acknowledged"]
        assert len(acks) == 1 and events[0] is acks[0], [e["type"] for e in events]
        assert acks[0]["client_msg_id"] == f"b{i}" and acks[0]["seq"] == 1
        assert acks[0]["duplicate"] is False
        assert events[-1]["message"]["reply_to_id"] == acks[0]["message_id"]
        assert not any(e["type"] == "user_message" for e in events)  # the ack stands for it
        sock.close()


def test_a_socket_keeps_working_after_a_refused_message_at_the_gate(api, chat):
    """A refused message (here an empty one) leaves the socket batcher free for the next: a
    leader that did not hand the lead on would stall every socket of the process."""
    sock = open_socket(api, chat)
    for i in range(6):
        sock.send({"type": "message", "content": " ", "client_msg_id": f"e{i}"})
        event = sock.recv()
        assert event["type"] == "error" and event["code"] == "empty_message"
    sock.send({"type": "message", "content": "Is there a warranty?", "client_msg_id": "ok"})
    events = sock.until("complete")
    assert events[0]["type"] == "acknowledged" and events[0]["client_msg_id"] == "ok"
    sock.close()


def test_a_burst_with_two_tabs_a_resend_and_a_bad_message_gets_every_outcome_once(api):
    """Sockets of one web process sending at the same instant, stored in batches (group
    commit): a conversation with three tabs (two messages and a resend of the first's
    client_msg_id), an empty message in another, single messages elsewhere. Every valid
    message is acknowledged once, before anything else about it reaches its sender; the two
    sends of one client_msg_id are one message (one ack says duplicate); the empty one gets
    its error; the seqs have no gap and no double, and each message is answered once."""
    tabs_chat = api.create_session()
    chats = [api.create_session() for _ in range(8)]
    tabs = [open_socket(api, tabs_chat) for _ in range(3)]
    socks = [open_socket(api, chat) for chat in chats]
    frames = [
        (tabs[0], "Where is my parcel?", "t1"),
        (tabs[1], "Do you ship to Norway?", "t2"),
        (tabs[2], "Where is my parcel?", "t1"),
        (socks[0], "   ", "bad"),
    ] + [(sock, "Is there a warranty?", f"s{i}") for i, sock in enumerate(socks[1:], 1)]
    for sock, text, cid in frames:
        sock.send({"type": "message", "content": text, "client_msg_id": cid})
    outcomes = {}
    for sock, _text, cid in frames:
        got = sock.until("acknowledged" if cid != "bad" else "error", client_msg_id=cid)
        outcome = got[-1]
        outcomes[id(sock)] = outcome
        if cid == "bad":
            assert outcome["code"] == "empty_message"
            continue
        mine = outcome["message_id"]
        if outcome["duplicate"]:
            continue  # the other tab's message: its broadcast may well come first
        told = [e.get("message") for e in got[:-1]]
        assert not any(
            isinstance(m, dict) and mine in (m.get("id"), m.get("reply_to_id")) for m in told
        ), got  # the ack is the first the sender hears of its message
    first, second, again = (outcomes[id(t)] for t in tabs)
    assert first["message_id"] == again["message_id"] != second["message_id"]
    assert sorted([first["duplicate"], again["duplicate"]]) == [False, True]
    assert second["duplicate"] is False
    # Stored first takes seq 1. The other may land in a later batch, after the worker has
    # answered the first (the answer then holds seq 2): the session-wide check below is what
    # promises no gap and no double.
    assert min(first["seq"], second["seq"]) == 1 and first["seq"] != second["seq"]
    for sock, _text, cid in frames[3:]:
        if cid != "bad":
            assert outcomes[id(sock)]["seq"] == 1 and outcomes[id(sock)]["duplicate"] is False
    for chat, users in [(tabs_chat, 2), (chats[0], 0)] + [(c, 1) for c in chats[1:]]:
        data = api.wait_for(
            chat, lambda ms, n=users: sum(m["role"] == "assistant" for m in ms) >= n
        )
        messages = data["messages"]
        assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
        asked = [m["id"] for m in messages if m["role"] == "user"]
        answered = [m["reply_to_id"] for m in messages if m["role"] == "assistant"]
        assert len(asked) == users and sorted(answered) == sorted(asked)
    for sock in tabs + socks:
        sock.close()
