"""Ticket notifications reach a real HTTP receiver, signed, retried after a 500, recorded;
and a ticket whose agent went away goes back to the queue (same small stack).

The receiver is a plain local HTTP server (a stand-in for a company's endpoint, not for our
code); the worker posts to it over loopback exactly as it would to any URL.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.client import Api, Socket
from tests.conftest import side_stack

SECRET = "whsec-test-123"


class Receiver:
    """Records every POST; answers with the next status in `plan` (then 200)."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict, bytes]] = []
        self.plan: list[int] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                owner.requests.append((dict(self.headers), body))
                status = owner.plan.pop(0) if owner.plan else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture(scope="module")
def hooked(logdir) -> Iterator[tuple[Api, Receiver]]:  # type: ignore[no-untyped-def]
    receiver = Receiver()
    env = {"WEBHOOK_URLS": receiver.url, "WEBHOOK_SECRET": SECRET, "AGENT_AWAY_SECONDS": "2"}
    try:
        with side_stack(logdir, "hooks", env, kb=False) as stack:
            api = Api(stack.urls[0])
            yield api, receiver
            api.close()
    finally:
        receiver.close()


def wait_until(predicate, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_ticket_opened_is_signed_retried_after_500_and_recorded(hooked):
    api, receiver = hooked
    receiver.plan = [500]
    chat = api.create_session()
    resp = api.http.post(
        f"/api/sessions/{chat['session_id']}/handoff", json={}, headers=api.auth(chat)
    )
    assert resp.status_code == 202
    wait_until(lambda: len(receiver.requests) >= 2)
    (first_headers, first_body), (headers, body) = receiver.requests[:2]
    assert first_body == body  # the retry sends the same signed event
    stamp = headers["X-Helpline-Timestamp"]
    expected = hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256)
    assert headers["X-Helpline-Signature"] == "sha256=" + expected.hexdigest()
    assert headers["X-Helpline-Event"] == "ticket.opened"
    event = json.loads(body)
    assert event["event"] == "ticket.opened" and event["ticket"]["session_id"] == chat["session_id"]

    staff = {"X-API-Key": "test-staff-key"}

    def delivered() -> list[dict]:
        rows = api.http.get("/api/webhooks/deliveries", headers=staff).json()["deliveries"]
        return [d for d in rows if d["ticket_id"] == event["ticket"]["id"]]

    wait_until(lambda: delivered() and delivered()[0]["status"] == "done")
    row = delivered()[0]
    assert row["attempts"] == 2 and row["response_status"] == 200 and row["delivered_at"]


def test_a_receiver_refusing_the_payload_is_recorded_as_failed(hooked):
    api, receiver = hooked
    receiver.requests.clear()
    receiver.plan = [410]
    chat = api.create_session()
    api.http.post(f"/api/sessions/{chat['session_id']}/handoff", json={}, headers=api.auth(chat))
    staff = {"X-API-Key": "test-staff-key"}

    def failed() -> list[dict]:
        rows = api.http.get(
            "/api/webhooks/deliveries", params={"status": "failed"}, headers=staff
        ).json()["deliveries"]
        return rows

    wait_until(lambda: bool(failed()))
    row = failed()[0]
    assert row["response_status"] == 410 and "410" in row["error"] and row["delivered_at"] is None
    assert len(receiver.requests) == 1  # a 4xx is final: no retry storm


def test_a_claim_whose_agent_went_away_goes_back_to_the_queue(hooked):
    """Nobody is left with a silent bot and an absent person: after AGENT_AWAY_SECONDS without
    a console or a staff request from the holder, the ticket is released."""
    api, receiver = hooked
    chat = api.create_session()
    sock = Socket(api.base_url, session_id=chat["session_id"], token=chat["token"])
    assert sock.recv()["type"] == "connected"
    sock.send({"type": "handoff"})
    ticket_id = sock.until("escalation")[-1]["ticket_id"]
    sam = {"X-API-Key": "sam-key"}
    assert api.http.post(f"/api/tickets/{ticket_id}/claim", headers=sam).status_code == 200
    sock.until("agent_joined")
    left = sock.until("agent_left", timeout=30)[-1]
    assert left["reason"] == "agent_away" and left["owner"] == "waiting"
    assert "no longer available" in left["notice"]
    ticket = api.http.get(f"/api/tickets/{ticket_id}", headers=sam).json()
    assert ticket["status"] == "open" and ticket["agent"] is None
    sock.close()
