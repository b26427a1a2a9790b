"""The human handoff against the real stack: tickets, ownership, a silent bot, staff sockets.

Two named agents come from the suite's STAFF_API_KEYS (`Sam=sam-key`, `Ana=ana-key`); the
plain test key's agent is called "Support".
"""

from __future__ import annotations

import threading
import uuid

import httpx

from tests.client import Socket

SAM = {"X-API-Key": "sam-key"}
ANA = {"X-API-Key": "ana-key"}


def customer_socket(api, chat) -> Socket:  # type: ignore[no-untyped-def]
    sock = Socket(api.base_url, session_id=chat["session_id"], token=chat["token"])
    assert sock.recv()["type"] == "connected"
    return sock


def staff_token(api, headers: dict) -> str:  # type: ignore[no-untyped-def]
    resp = api.http.post("/api/console/token", headers=headers)
    assert resp.status_code == 201, resp.text
    return resp.json()["token"]


def agent_socket(api, chat, headers: dict) -> Socket:  # type: ignore[no-untyped-def]
    token = staff_token(api, headers)
    sock = Socket(api.base_url, session_id=chat["session_id"], token=token, after=0)
    assert sock.recv()["type"] == "connected"
    return sock


def ticket_of(api, chat) -> dict:  # type: ignore[no-untyped-def]
    resp = api.http.get(
        "/api/tickets", params={"session_id": chat["session_id"], "status": "all"}, headers=SAM
    )
    assert resp.status_code == 200, resp.text
    tickets = resp.json()["tickets"]
    assert len(tickets) == 1, tickets
    return tickets[0]


def ask_for_person(api, chat) -> dict:  # type: ignore[no-untyped-def]
    resp = api.send(chat, "I want to talk to a human", wait=15)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["requires_escalation"] is True and body["metadata"]["ticket_id"]
    return body


def test_explicit_request_opens_one_ticket_and_the_bot_goes_silent(api, chat):
    body = ask_for_person(api, chat)
    assert "support team" in body["message"]  # the honest notice, not an answer
    ticket = ticket_of(api, chat)
    assert ticket["status"] == "open" and "explicit_request" in ticket["reasons"]
    assert ticket["summary"] and ticket["created_at"].endswith("Z")
    session = api.http.get(f"/api/sessions/{chat['session_id']}", headers=api.auth(chat)).json()
    assert session["owner"] == "waiting" and session["ticket_id"] == ticket["id"]

    # While a person is waited for, a message is stored but the bot does not answer it, and
    # asking again opens no second ticket and repeats no "a person will join".
    for text in ("My order number is BW-204817", "hello?? I want a human now"):
        resp = api.send(chat, text, wait=10)
        assert resp.status_code == 200 and resp.json()["message"] == ""
    history = api.history(chat)["messages"]
    assert [m["role"] for m in history] == ["user", "user", "user"]
    assert all(m["status"] == "done" for m in history)
    assert history[1]["escalation"]["bot_silent"] == "waiting"
    assert ticket_of(api, chat)["id"] == ticket["id"]


def test_claim_join_talk_resolve_and_rate(api, chat):
    customer = customer_socket(api, chat)
    ask_for_person(api, chat)
    ticket = ticket_of(api, chat)

    claimed = api.http.post(f"/api/tickets/{ticket['id']}/claim", headers=SAM)
    assert claimed.status_code == 200 and claimed.json()["agent"] == "Sam"
    again = api.http.post(f"/api/tickets/{ticket['id']}/claim", headers=ANA)
    assert again.status_code == 409 and again.json()["error"]["code"] == "ticket_taken"
    assert "Sam already took this ticket" in again.json()["error"]["message"]
    joined = customer.until("agent_joined")[-1]
    assert joined["agent"] == {"name": "Sam"} and joined["owner"] == "person"
    assert joined["notice"] == "Sam from support joined the chat."

    agent = agent_socket(api, chat, SAM)
    agent.send({"type": "typing", "is_typing": True})
    typing = customer.until("user_typing")[-1]
    assert typing["role"] == "agent" and typing["name"] == "Sam" and typing["is_typing"] is True
    agent.send({"type": "message", "content": "Hi, I'm Sam. Let me check that for you."})
    said = customer.until("agent_message")[-1]["message"]
    assert said["role"] == "agent" and said["metadata"]["agent"] == "Sam"

    # Ana does not hold the ticket: she cannot talk over Sam.
    other = api.http.post(
        f"/api/chat/sessions/{chat['session_id']}/messages",
        json={"message": "hello from Ana"},
        headers=ANA,
    )
    assert other.status_code == 409 and other.json()["error"]["code"] == "not_claimed"

    customer.send({"type": "typing", "is_typing": True})
    assert agent.until("user_typing")[-1]["role"] == "user"
    customer.send({"type": "message", "content": "How long does a refund take?"})
    customer.until("acknowledged")
    assert agent.until("user_message")[-1]["message"]["content"] == "How long does a refund take?"
    quiet = customer.quiet(3.0)
    assert not [e for e in quiet if e["type"] in ("start", "complete")], quiet

    done = api.http.post(f"/api/tickets/{ticket['id']}/resolve", headers=SAM, json={})
    assert done.status_code == 200 and done.json()["status"] == "resolved"
    left = customer.until("agent_left")[-1]
    assert left["reason"] == "resolved" and left["owner"] == "bot" and left["rating_offer"]

    # The bot answers again, and a thank-you does not re-open a ticket from old signals.
    customer.send({"type": "message", "content": "How long does a refund take?"})
    reply = customer.until("complete")[-1]["message"]
    assert reply["role"] == "assistant" and reply["sources"]
    customer.send({"type": "message", "content": "thanks"})
    customer.until("complete")
    assert ticket_of(api, chat)["status"] == "resolved"

    rating = api.http.post(
        f"/api/sessions/{chat['session_id']}/rating",
        json={"score": 4, "comment": "Sam sorted it"},
        headers=api.auth(chat),
    )
    assert rating.status_code == 201, rating.text
    assert rating.json()["handled_by"] == "person" and rating.json()["agent"] == "Sam"
    twice = api.http.post(
        f"/api/sessions/{chat['session_id']}/rating", json={"score": 5}, headers=api.auth(chat)
    )
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "already_rated"
    customer.close()
    agent.close()


def test_button_request_is_structured_and_not_repeated(api, chat):
    customer = customer_socket(api, chat)
    customer.send({"type": "handoff", "client_msg_id": "h1"})
    ack = customer.until("acknowledged")[-1]
    assert ack["client_msg_id"] == "h1"
    escalation = customer.until("escalation")[-1]
    assert escalation["required"] is True and escalation["reasons"] == ["customer_choice"]
    assert escalation["ticket_id"] and escalation["availability"]["agents_online"] == 0
    assert "email" in escalation["notice"]  # nobody has a console open: be honest
    customer.send({"type": "handoff", "client_msg_id": "h2"})
    refused = customer.until("error")[-1]
    assert refused["code"] == "already_with_person" and refused["client_msg_id"] == "h2"
    rest = api.http.post(
        f"/api/sessions/{chat['session_id']}/handoff", json={}, headers=api.auth(chat)
    )
    assert rest.status_code == 409
    stored = api.history(chat)["messages"][0]
    assert stored["metadata"]["request"] == "person"
    assert stored["escalation"]["reasons"] == ["customer_choice"]

    contact = api.http.post(
        f"/api/sessions/{chat['session_id']}/contact",
        json={"email": "dana@example.com"},
        headers=api.auth(chat),
    )
    assert contact.status_code == 200 and contact.json()["contact_email"] == "dana@example.com"
    bad = api.http.post(
        f"/api/sessions/{chat['session_id']}/contact",
        json={"email": "not an address"},
        headers=api.auth(chat),
    )
    assert bad.status_code == 422
    assert ticket_of(api, chat)["contact_email"] == "dana@example.com"
    customer.close()


def test_two_agents_claiming_at_once_have_one_winner(api, chat):
    ask_for_person(api, chat)
    ticket = ticket_of(api, chat)
    codes: list[int] = []

    def grab(headers: dict) -> None:
        with httpx.Client(base_url=api.base_url, timeout=20) as client:
            codes.append(
                client.post(f"/api/tickets/{ticket['id']}/claim", headers=headers).status_code
            )

    threads = [threading.Thread(target=grab, args=(h,)) for h in (SAM, ANA, SAM, ANA)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [200, 409, 409, 409]
    events = api.http.get(f"/api/chat/sessions/{chat['session_id']}/messages", headers=SAM).json()
    assert events["total"] >= 1
    sock = agent_socket(api, chat, SAM)
    replay = sock.quiet(1.5)
    assert len([e for e in replay if e["type"] == "agent_joined"]) == 1
    sock.close()


def test_release_returns_the_ticket_to_the_queue_and_console_sees_it(api, chat):
    feed = Socket(api.base_url, "/ws/console", token=staff_token(api, ANA))
    hello = feed.recv()
    assert hello["type"] == "connected" and hello["agent"] == {"name": "Ana"}
    customer = customer_socket(api, chat)
    customer.send({"type": "handoff"})
    opened = feed.until("ticket", change="opened")[-1]["ticket"]
    assert opened["session_id"] == chat["session_id"]
    # With Ana's console open, an agent counts as online.
    escalation = customer.until("escalation")[-1]
    assert escalation["availability"]["agents_online"] >= 1
    assert "stay in this chat" in escalation["notice"]

    assert api.http.post(f"/api/tickets/{opened['id']}/claim", headers=SAM).status_code == 200
    assert feed.until("ticket", change="claimed")[-1]["ticket"]["agent"] == "Sam"
    not_yours = api.http.post(f"/api/tickets/{opened['id']}/release", headers=ANA)
    assert not_yours.status_code == 409
    assert api.http.post(f"/api/tickets/{opened['id']}/release", headers=SAM).status_code == 200
    left = customer.until("agent_left")[-1]
    assert left["reason"] == "released" and left["owner"] == "waiting"
    assert feed.until("ticket", change="released")[-1]["ticket"]["status"] == "open"
    session = api.http.get(f"/api/sessions/{chat['session_id']}", headers=api.auth(chat)).json()
    assert session["owner"] == "waiting"
    feed.close()
    customer.close()


def test_takeover_and_ending_the_session_closes_the_ticket(api, chat):
    assert api.send(chat, "How do I reset my password?", wait=10).status_code == 200
    taken = api.http.post(f"/api/sessions/{chat['session_id']}/takeover", headers=SAM)
    assert taken.status_code == 201, taken.text
    assert taken.json()["status"] == "claimed" and taken.json()["reasons"] == ["agent_takeover"]
    again = api.http.post(f"/api/sessions/{chat['session_id']}/takeover", headers=ANA)
    assert again.status_code == 409
    said = api.http.post(
        f"/api/chat/sessions/{chat['session_id']}/messages",
        json={"message": "Hi, Sam here.", "client_msg_id": str(uuid.uuid4())},
        headers=SAM,
    )
    assert said.status_code == 202
    ended = api.http.patch(
        f"/api/sessions/{chat['session_id']}", json={"status": "ended"}, headers=api.auth(chat)
    )
    assert ended.status_code == 200 and ended.json()["status"] == "ended"
    ticket = ticket_of(api, chat)
    assert ticket["status"] == "resolved" and ticket["resolution"] == "session_ended"


def test_staff_errors_are_clear(api, chat):
    assert api.http.get("/api/tickets").status_code == 401
    assert api.http.get("/api/tickets", headers={"X-API-Key": "nope"}).status_code == 401
    missing = api.http.post(f"/api/tickets/{uuid.uuid4()}/claim", headers=SAM)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_ticket"
    bot_owned = api.http.post(
        f"/api/chat/sessions/{chat['session_id']}/messages",
        json={"message": "hello"},
        headers=SAM,
    )
    assert bot_owned.status_code == 409 and bot_owned.json()["error"]["code"] == "not_claimed"
    bad = Socket(api.base_url, session_id=chat["session_id"], token="stf.bogus.token")
    event = bad.recv()
    assert event["type"] == "error" and event["code"] == "invalid_token"
    bad.close()


def test_resolving_with_end_session_ends_the_conversation(api, chat):
    customer = customer_socket(api, chat)
    ask_for_person(api, chat)
    ticket = ticket_of(api, chat)
    assert api.http.post(f"/api/tickets/{ticket['id']}/claim", headers=SAM).status_code == 200
    done = api.http.post(
        f"/api/tickets/{ticket['id']}/resolve", json={"end_session": True}, headers=SAM
    )
    assert done.status_code == 200 and done.json()["resolution"] == "ended"
    ended = customer.until("session_status")[-1]
    assert ended["status"] == "ended" and ended["rating_offer"] is True
    session = api.http.get(f"/api/sessions/{chat['session_id']}", headers=api.auth(chat)).json()
    assert session["status"] == "ended"
    assert api.send(chat, "still there?").status_code == 409
