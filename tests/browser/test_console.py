"""The agent console at `/console`, driven in headless Chromium against the real stack.

Tickets are made by customers through the HTTP API (session, a question, then a handoff), so
these tests see the console exactly as an agent would: live over `/ws/console`, with no reload.
Named agents need `STAFF_API_KEYS=test-staff-key,Sam=sam-key,Ana=ana-key` in the suite's env.
The helpers here are shared with test_handoff_flow.py.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright import sync_api

from tests.client import STAFF

pytestmark = pytest.mark.browser

SAM_KEY = "sam-key"
ANA_KEY = "ana-key"
SCREENSHOT = Path("/tmp/helpline-console.png")

expect = sync_api.expect


@pytest.fixture(scope="module")
def named_agents(stack) -> None:  # type: ignore[no-untyped-def]
    """Fail with the fix, not a puzzling sign-in error, when the env lacks Sam and Ana."""
    for key in (SAM_KEY, ANA_KEY):
        resp = httpx.post(
            f"{stack.urls[0]}/api/console/token", headers={"X-API-Key": key}, timeout=10
        )
        if resp.status_code != 201:
            pytest.fail(
                "the test stack needs named agents: STAFF_API_KEYS="
                f"test-staff-key,Sam={SAM_KEY},Ana={ANA_KEY} in tests/conftest.py base_env "
                f"(POST /api/console/token answered {resp.status_code}: {resp.text[:200]})"
            )


class Console:
    """One console page plus what went wrong in it (page errors, dialogs, CSP reports)."""

    def __init__(self, context, base_url: str) -> None:  # type: ignore[no-untyped-def]
        self.base_url = base_url
        self.page = context.new_page()
        self.page.set_default_timeout(15_000)
        self.problems: list[str] = []
        self.page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        self.page.on("console", self._console)
        self.page.on("dialog", self._dialog)

    def _console(self, msg) -> None:  # type: ignore[no-untyped-def]
        if msg.type == "error" and "Content Security Policy" in msg.text:
            self.problems.append(f"CSP: {msg.text}")

    def _dialog(self, dialog) -> None:  # type: ignore[no-untyped-def]
        self.problems.append(f"dialog opened: {dialog.message}")
        dialog.dismiss()

    # -- actions -------------------------------------------------------------------------
    def open(self) -> Console:
        self.page.goto(self.base_url + "/console")
        return self

    def sign_in(self, key: str) -> Console:
        self.page.locator("#staff-key").fill(key)
        self.page.locator("#signin-submit").click()
        self.wait_live()
        return self

    def wait_live(self) -> None:
        expect(self.page.locator("#console")).to_be_visible()
        expect(self.page.locator("#conn")).to_have_attribute("data-state", "online")
        expect(self.page.locator("#queue")).to_have_attribute("data-loads", re.compile(r"\d+"))

    def open_ticket(self, ticket_id: str) -> None:
        self.ticket(ticket_id).locator(".ticket__open").click()
        expect(self.page.locator("#ticket-view")).to_be_visible()
        expect(self.page.locator("#ticket-view")).to_have_attribute("data-socket", "online")

    def claim(self) -> None:
        self.page.locator("#claim").click()
        expect(self.page.locator("#ticket-state")).to_have_text("Claimed by you")

    def reply(self, text: str) -> None:
        box = self.page.locator("#reply-input")
        box.fill(text)
        box.press("Enter")

    # -- reading -------------------------------------------------------------------------
    def ticket(self, ticket_id: str):  # type: ignore[no-untyped-def]
        return self.page.locator(f'#queue li.ticket[data-ticket-id="{ticket_id}"]')

    @property
    def thread(self):  # type: ignore[no-untyped-def]
        return self.page.locator("#thread")

    def waiting(self) -> int:
        return int(self.page.locator("#queue-count").text_content() or 0)


def console_page(browser, base_url: str) -> Iterator[Console]:  # type: ignore[no-untyped-def]
    """A fresh context (fresh sessionStorage) on the console; fails the test on page errors."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = Console(context, base_url)
    try:
        yield page
    finally:
        context.close()
    assert not page.problems, page.problems


def customer_ticket(base_url: str, question: str | None = None) -> dict:
    """A customer who (optionally) asks the bot something, then asks for a person."""
    with httpx.Client(base_url=base_url, timeout=20) as http:
        chat = http.post("/api/sessions", json={}).json()
        auth = {"Authorization": f"Bearer {chat['token']}"}
        sid = chat["session_id"]
        if question:
            resp = http.post(
                f"/api/chat/sessions/{sid}/messages",
                params={"wait": 10},
                json={"message": question, "client_msg_id": uuid.uuid4().hex},
                headers=auth,
            )
            assert resp.status_code == 200, resp.text
        resp = http.post(
            f"/api/sessions/{sid}/handoff", json={"client_msg_id": uuid.uuid4().hex}, headers=auth
        )
        assert resp.status_code == 202, resp.text
        chat["ticket_id"] = wait_ticket_id(http, sid, auth)
        return chat


def wait_ticket_id(http: httpx.Client, session_id: str, auth: dict, timeout: float = 15) -> str:
    """The session's ticket id once the handoff has made one."""
    deadline = time.monotonic() + timeout
    while True:
        body = http.get(f"/api/sessions/{session_id}", headers=auth).json()
        if body.get("ticket_id"):
            return body["ticket_id"]
        if time.monotonic() > deadline:
            raise AssertionError(f"no ticket for session {session_id}: {body}")
        time.sleep(0.1)


def customer_history(base_url: str, chat: dict) -> list[dict]:
    resp = httpx.get(
        f"{base_url}/api/chat/sessions/{chat['session_id']}/messages",
        params={"limit": 500},
        headers={"Authorization": f"Bearer {chat['token']}"},
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    return resp.json()["messages"]


@pytest.fixture
def agent(browser, stack) -> Iterator[Console]:  # type: ignore[no-untyped-def]
    yield from console_page(browser, stack.urls[0])


@pytest.fixture
def sam(browser, stack, named_agents) -> Iterator[Console]:  # type: ignore[no-untyped-def]
    yield from console_page(browser, stack.urls[0])


@pytest.fixture
def ana(browser, stack, named_agents) -> Iterator[Console]:  # type: ignore[no-untyped-def]
    # The second web process: the queue must reach agents on every process.
    yield from console_page(browser, stack.urls[1])


def test_sign_in_with_a_bad_key_then_a_good_one(agent: Console) -> None:
    page = agent.open().page
    expect(page.locator("#staff-key")).to_be_focused()
    page.locator("#signin-submit").click()
    expect(page.locator("#signin-error")).to_have_text("Enter your staff key.")

    agent.page.locator("#staff-key").fill("not-the-key")
    page.locator("#signin-submit").click()
    expect(page.locator("#signin-error")).to_contain_text(re.compile("invalid api key", re.I))
    expect(page.locator("#staff-key")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#console")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('helpline.console.key')") is None

    agent.sign_in(STAFF["X-API-Key"])
    expect(page.locator("#agent-name")).to_have_text("Support")
    expect(page.locator("#signin-view")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('helpline.console.key')") == STAFF["X-API-Key"]
    assert page.evaluate("localStorage.length") == 0  # the key never outlives the tab

    page.reload()  # same tab: still signed in, without asking again
    agent.wait_live()
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("#signin")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('helpline.console.key')") is None


def test_console_page_is_locked_down(stack) -> None:  # type: ignore[no-untyped-def]
    resp = httpx.get(f"{stack.urls[0]}/console", timeout=10)
    assert resp.status_code == 200
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert '<script type="module"' in resp.text
    assert "<script>" not in resp.text and "style=" not in resp.text


def test_new_ticket_appears_live_and_counts_in_the_title(agent: Console, stack) -> None:  # type: ignore[no-untyped-def]
    page = agent.open().page
    agent.sign_in(STAFF["X-API-Key"])
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    before = agent.waiting()

    chat = customer_ticket(stack.urls[0], "How long does a refund take?")
    item = agent.ticket(chat["ticket_id"])
    expect(item).to_be_visible()
    expect(item).to_have_attribute("data-status", "open")
    expect(item.locator(".ticket__agent")).to_have_text("Waiting for an agent")
    expect(page.locator("#queue-count")).to_have_text(str(before + 1))
    expect(page).to_have_title(f"({before + 1}) Helpline console")
    assert page.evaluate("window.__sameDocument") is True

    agent.open_ticket(chat["ticket_id"])
    reasons = page.locator("#ticket-reasons")
    expect(reasons).not_to_be_empty()
    assert "_" not in (reasons.text_content() or ""), "reasons must be words, not codes"
    expect(page.locator("#ticket-contact")).to_have_text("Not given")
    thread = agent.thread
    expect(thread.locator(".msg--user .msg__text").first).to_have_text(
        "How long does a refund take?"
    )
    answer = thread.locator(".msg--assistant").first
    expect(answer.locator(".msg__author")).to_have_text("Assistant")
    expect(answer.locator(".sources .source__title").first).not_to_be_empty()
    expect(thread.locator(".msg--user .badge")).to_have_text("Asked for a person")
    page.screenshot(path=str(SCREENSHOT))

    # A dropped queue socket comes back by itself and re-reads the list.
    loads = int(page.locator("#queue").get_attribute("data-loads") or 0)
    page.evaluate("window.helplineConsole.dropConnection()")
    expect(page.locator("#queue")).to_have_attribute("data-loads", str(loads + 1))
    expect(page.locator("#conn")).to_have_attribute("data-state", "online")


def test_two_agents_see_one_queue_and_one_wins_the_claim(sam: Console, ana: Console, stack) -> None:  # type: ignore[no-untyped-def]
    sam.open().sign_in(SAM_KEY)
    ana.open().sign_in(ANA_KEY)
    expect(ana.page.locator("#agent-name")).to_have_text("Ana")
    chat = customer_ticket(stack.urls[0], "Where is my order?")
    tid = chat["ticket_id"]
    expect(sam.ticket(tid)).to_be_visible()
    expect(ana.ticket(tid)).to_be_visible()
    ana.open_ticket(tid)  # Ana is looking at it while Sam takes it

    sam.open_ticket(tid)
    sam.claim()
    expect(sam.ticket(tid).locator(".ticket__agent")).to_have_text("Claimed by you")
    expect(ana.ticket(tid).locator(".ticket__agent")).to_have_text("Claimed by Sam")
    expect(ana.ticket(tid)).to_have_attribute("data-status", "claimed")
    expect(ana.page.locator("#ticket-state")).to_have_text("Claimed by Sam")
    expect(ana.page.locator("#release")).to_be_hidden()

    ana.page.locator("#claim").click()
    expect(ana.page.locator("#ticket-error")).to_have_text("Sam already took this ticket.")
    ana.reply("Hello, this is Ana")
    expect(ana.page.locator("#ticket-error")).to_contain_text("Claim this ticket before replying")
    failed = ana.thread.locator(".msg--agent").last
    expect(failed).to_have_attribute("data-status", "failed")
    expect(ana.page.locator("#reply-input")).to_have_value("Hello, this is Ana")
    assert not [m for m in customer_history(stack.urls[0], chat) if m["role"] == "agent"]

    sam.page.locator("#release").click()
    expect(ana.ticket(tid).locator(".ticket__agent")).to_have_text("Waiting for an agent")
    ana.claim()
    expect(sam.ticket(tid).locator(".ticket__agent")).to_have_text("Claimed by Ana")
    expect(sam.thread.locator('.notice[data-kind="agent_joined"]').last).to_have_text(
        "Ana joined the chat."
    )


def test_reply_box_enter_sends_and_shift_enter_breaks_the_line(sam: Console, stack) -> None:  # type: ignore[no-untyped-def]
    page = sam.open().sign_in(SAM_KEY).page
    chat = customer_ticket(stack.urls[0])
    sam.open_ticket(chat["ticket_id"])
    sam.claim()
    box = page.locator("#reply-input")
    expect(box).to_be_focused()  # claiming puts the agent in the reply box
    page.keyboard.type("first line")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    assert box.input_value() == "first line\nsecond line"
    expect(sam.thread.locator(".msg--agent")).to_have_count(0)

    page.keyboard.press("Enter")
    sent = sam.thread.locator(".msg--agent").first
    expect(sent.locator(".msg__text")).to_have_text("first line\nsecond line")
    expect(sent).to_have_attribute("data-status", "sent")
    expect(sent.locator(".msg__author")).to_have_text("Sam (you)")
    expect(box).to_have_value("")
    expect(box).to_be_focused()

    # With the session socket down the reply goes over REST, once.
    page.evaluate("window.helplineConsole.dropSession()")
    sam.reply("sent while offline")
    expect(sam.thread.locator(".msg--agent")).to_have_count(2)
    expect(sam.thread.locator(".msg--agent").last).to_have_attribute("data-status", "sent")
    expect(page.locator("#ticket-view")).to_have_attribute("data-socket", "online")
    page.wait_for_timeout(500)  # a replay after the reconnect would land by now
    expect(sam.thread.locator(".msg--agent")).to_have_count(2)

    agents = [m for m in customer_history(stack.urls[0], chat) if m["role"] == "agent"]
    assert [m["content"] for m in agents] == ["first line\nsecond line", "sent while offline"]
    assert {m["metadata"]["agent"] for m in agents} == {"Sam"}


def test_customer_text_is_shown_as_text(agent: Console, stack) -> None:  # type: ignore[no-untyped-def]
    evil = "<img src=x onerror=alert(1)><script>alert(2)</script>"
    page = agent.open().sign_in(STAFF["X-API-Key"]).page
    chat = customer_ticket(stack.urls[0], evil)
    agent.open_ticket(chat["ticket_id"])
    expect(agent.thread.locator(".msg--user .msg__text").first).to_have_text(evil)
    assert page.locator("#thread img, #thread script, #queue img, #queue script").count() == 0


def test_ticket_shows_attachments_and_a_contact_email_left_later(agent: Console, stack) -> None:  # type: ignore[no-untyped-def]
    base = stack.urls[0]
    with httpx.Client(base_url=base, timeout=20) as http:
        chat = http.post("/api/sessions", json={}).json()
        auth = {"Authorization": f"Bearer {chat['token']}"}
        note = b"Order 4417: the kettle arrived with a cracked lid.\n"
        upload = http.post(
            "/api/chat/upload",
            data={"session_id": chat["session_id"]},
            files={"file": ("kettle-note.txt", note, "text/plain")},
            headers=auth,
        )
        assert upload.status_code == 202, upload.text
        sent = http.post(
            f"/api/chat/sessions/{chat['session_id']}/messages",
            json={"message": "See my note", "attachment_ids": [upload.json()["attachment_id"]]},
            headers=auth,
        )
        assert sent.status_code == 202, sent.text
        resp = http.post(f"/api/sessions/{chat['session_id']}/handoff", json={}, headers=auth)
        assert resp.status_code == 202, resp.text
        # The handoff is answered after "See my note", which waits for its file's parse: on the
        # `files` pool, which no reply or earlier test's work occupies (conftest's stack).
        ticket_id = wait_ticket_id(http, chat["session_id"], auth)

        page = agent.open().sign_in(STAFF["X-API-Key"]).page
        agent.open_ticket(ticket_id)
        attachment = agent.thread.locator(".msg--user .attachment")
        expect(attachment.locator(".attachment__name")).to_have_text("kettle-note.txt")
        expect(attachment).to_have_attribute("data-status", "processed")
        expect(attachment.locator(".attachment__status")).to_have_text("Read")
        expect(attachment.locator(".attachment__preview")).to_contain_text("cracked lid")

        resp = http.post(
            f"/api/sessions/{chat['session_id']}/contact",
            json={"email": "kim@example.com"},
            headers=auth,
        )
        assert resp.status_code == 200, resp.text
    expect(page.locator("#ticket-contact")).to_have_text("kim@example.com")


def test_resolve_and_end_the_conversation(agent: Console, stack) -> None:  # type: ignore[no-untyped-def]
    page = agent.open().sign_in(STAFF["X-API-Key"]).page
    chat = customer_ticket(stack.urls[0], "Can I change my delivery address?")
    agent.open_ticket(chat["ticket_id"])
    agent.claim()

    resolve = page.locator("#resolve")
    resolve.click()
    expect(resolve).to_have_attribute("aria-expanded", "true")
    expect(page.locator("#resolve-resume")).to_be_focused()
    page.keyboard.press("Escape")  # changed their mind: nothing happens
    expect(page.locator("#resolve-options")).to_be_hidden()
    expect(resolve).to_be_focused()

    resolve.click()
    page.locator("#resolve-end").click()
    expect(page.locator("#ticket-state")).to_have_text("Resolved, conversation ended")
    expect(agent.ticket(chat["ticket_id"])).to_have_count(0)
    expect(agent.thread.locator('.notice[data-kind="ended"]')).to_have_count(1)
    expect(page.locator("#reply-input")).to_be_disabled()
    expect(page.locator("#claim")).to_be_hidden()
    resp = httpx.get(
        f"{stack.urls[0]}/api/sessions/{chat['session_id']}",
        headers={"Authorization": f"Bearer {chat['token']}"},
        timeout=10,
    )
    assert resp.json()["status"] == "ended", f"resolve with end_session left {resp.json()}"
