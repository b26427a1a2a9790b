"""The customer chat page at `/`, driven in headless Chromium against the real stack.

Each test gets a fresh browser context (so a fresh localStorage, hence a fresh session); the
browser itself is shared by the module. Chromium comes from Debian (`apt-get install chromium`),
never from `playwright install`.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright import sync_api

from tests.client import STAFF, Socket

pytestmark = pytest.mark.browser

SCREENSHOT = Path("/tmp/helpline-chat.png")
REQUEST_TEXT = "You asked to talk to a person"
REPLY_TIMEOUT = 20_000  # ms; the offline engine answers in well under a second

expect = sync_api.expect


class Chat:
    """One page of the chat plus what went wrong in it (page errors, dialogs)."""

    def __init__(self, context, base_url: str) -> None:  # type: ignore[no-untyped-def]
        self.context = context
        self.base_url = base_url
        self.page = context.new_page()
        self.page.set_default_timeout(15_000)
        self.problems: list[str] = []
        self.page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        self.page.on("dialog", self._dialog)

    def _dialog(self, dialog) -> None:  # type: ignore[no-untyped-def]
        self.problems.append(f"dialog opened: {dialog.message}")
        dialog.dismiss()

    # -- actions -------------------------------------------------------------------------
    def open(self) -> Chat:
        self.page.goto(self.base_url + "/")
        self.wait_online()
        return self

    def wait_online(self) -> None:
        expect(self.page.locator("#conn")).to_have_attribute("data-state", "online")

    def ask(self, text: str) -> None:
        box = self.page.locator("#composer-input")
        box.fill(text)
        box.press("Enter")

    def drop_socket(self) -> None:
        self.page.evaluate("window.helplineChat.dropConnection()")

    # -- reading -------------------------------------------------------------------------
    @property
    def users(self):  # type: ignore[no-untyped-def]
        return self.page.locator("#messages .msg--user")

    @property
    def replies(self):  # type: ignore[no-untyped-def]
        return self.page.locator("#messages .msg--assistant")

    @property
    def owner(self):  # type: ignore[no-untyped-def]
        return self.page.locator("#owner-status")

    def notices(self, kind: str):  # type: ignore[no-untyped-def]
        return self.page.locator(f'#messages li.msg--system .notice[data-kind="{kind}"]')

    def wait_replies(self, count: int) -> None:
        done = self.page.locator('#messages .msg--assistant[data-state="complete"]')
        expect(done).to_have_count(count, timeout=REPLY_TIMEOUT)

    def session(self) -> dict:
        return self.page.evaluate("JSON.parse(localStorage.getItem('helpline.session'))")

    def history(self) -> list[dict]:
        saved = self.session()
        resp = httpx.get(
            f"{self.base_url}/api/chat/sessions/{saved['session_id']}/messages",
            params={"limit": 500},
            headers={"Authorization": f"Bearer {saved['token']}"},
            timeout=10,
        )
        assert resp.status_code == 200, resp.text
        return resp.json()["messages"]


def _page(browser, stack, **context_options) -> Iterator[Chat]:  # type: ignore[no-untyped-def]
    """A fresh browser context on the chat page; fails the test if the page raised or alerted."""
    context = browser.new_context(**context_options)
    page = Chat(context, stack.urls[0])
    try:
        yield page
    finally:
        context.close()
    assert not page.problems, page.problems


@pytest.fixture
def ui(browser, stack) -> Iterator[Chat]:  # type: ignore[no-untyped-def]
    yield from _page(browser, stack, viewport={"width": 1200, "height": 860})


@pytest.fixture
def phone(browser, stack) -> Iterator[Chat]:  # type: ignore[no-untyped-def]
    yield from _page(
        browser, stack, viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True
    )


# -- the agent's side, driven through the staff API ------------------------------------------
def staff_call(ui: Chat, method: str, path: str, **kwargs) -> httpx.Response:  # type: ignore[no-untyped-def]
    return httpx.request(method, ui.base_url + path, headers=STAFF, timeout=10, **kwargs)


def staff_token(ui: Chat) -> str:
    """A staff socket token (sockets carry no headers); the plain test key's agent is "Support"."""
    resp = staff_call(ui, "POST", "/api/console/token")
    assert resp.status_code == 201, resp.text
    assert resp.json()["agent"]["name"] == "Support"
    return resp.json()["token"]


def ticket_of(ui: Chat, session_id: str, status: str = "active") -> dict:
    """The session's one ticket in the staff queue (waits a little: it is made on request)."""
    deadline = time.monotonic() + 10
    while True:
        resp = staff_call(ui, "GET", "/api/tickets", params={"status": status, "limit": 200})
        assert resp.status_code == 200, resp.text
        mine = [t for t in resp.json()["tickets"] if t["session_id"] == session_id]
        if mine or time.monotonic() > deadline:
            assert len(mine) == 1, resp.json()
            return mine[0]
        time.sleep(0.1)


def test_streamed_answer_with_citations_survives_reload(ui: Chat) -> None:
    page = ui.open().page
    expect(page.locator("#welcome")).to_be_visible()
    # Record every text the reply bubble shows while it streams.
    page.evaluate(
        """() => {
          window.__partials = [];
          new MutationObserver(() => {
            const li = document.querySelector('.msg--assistant[data-state="streaming"]');
            if (li) window.__partials.push(li.querySelector('.msg__text').textContent);
          }).observe(document.getElementById('messages'),
                     {subtree: true, childList: true, characterData: true, attributes: true});
        }"""
    )
    ui.ask("How long does a refund take?")
    ui.wait_replies(1)
    expect(ui.users.first).to_have_attribute("data-status", "sent")
    reply = ui.replies.first
    partials = [p for p in page.evaluate("window.__partials") if p]
    assert len(set(partials)) >= 2, f"the reply did not stream: {partials}"

    links = reply.locator("a.cite__link")
    assert links.count() >= 1
    sources = reply.locator(".sources li")
    assert sources.count() >= 1
    expect(reply.locator(".sources__title")).to_have_text("Sources")
    expect(sources.first.locator(".source__title")).not_to_be_empty()
    expect(sources.first.locator(".source__snippet")).not_to_be_empty()
    for i in range(links.count()):
        target = links.nth(i).get_attribute("href")
        assert target and target.startswith("#")
        expect(reply.locator(target)).to_have_count(1)
    expect(page.locator("#welcome")).to_be_hidden()
    page.screenshot(path=str(SCREENSHOT))
    links.first.click()
    expect(reply.locator(links.first.get_attribute("href"))).to_be_focused()

    question = ui.users.first.locator(".msg__text").text_content()
    answer = reply.locator(".msg__text").text_content()
    before = ui.session()
    assert before["last_seq"] >= 2

    page.reload()
    ui.wait_online()
    ui.wait_replies(1)
    page.wait_for_timeout(500)  # anything replayed after the socket connects lands by now
    expect(ui.users).to_have_count(1)
    expect(ui.replies).to_have_count(1)
    assert ui.users.first.locator(".msg__text").text_content() == question
    assert ui.replies.first.locator(".msg__text").text_content() == answer
    assert ui.replies.first.locator("a.cite__link").count() == links.count()
    assert ui.session()["session_id"] == before["session_id"]


def test_message_sent_while_socket_is_down_arrives_once(ui: Chat) -> None:
    page = ui.open().page

    # 1. The socket closes; the message goes through REST at once.
    ui.drop_socket()
    ui.ask("How do I track my order?")
    ui.wait_replies(1)
    ui.wait_online()

    # 2. Worse: the REST request reaches the server but its response is lost. The page
    #    retries with the same client_msg_id once the socket is back; the server dedupes.
    lost: list[str] = []

    def lose_response(route) -> None:  # type: ignore[no-untyped-def]
        if route.request.method != "POST":
            route.continue_()
            return
        route.fetch()  # the server stores the message...
        lost.append(route.request.post_data_json["client_msg_id"])
        route.abort("connectionreset")  # ...and the browser never hears back

    page.route(re.compile(r".*/api/chat/sessions/[^/]+/messages$"), lose_response)
    ui.drop_socket()
    ui.ask("Can I change my delivery address?")
    ui.wait_replies(2)
    expect(ui.users.nth(1)).to_have_attribute("data-status", "sent")
    assert len(lost) == 1, lost
    page.unroute(re.compile(r".*/api/chat/sessions/[^/]+/messages$"))

    page.wait_for_timeout(500)
    expect(ui.users).to_have_count(2)
    expect(ui.replies).to_have_count(2)
    stored = ui.history()
    users = [m for m in stored if m["role"] == "user"]
    assert [m["content"] for m in users] == [
        "How do I track my order?",
        "Can I change my delivery address?",
    ]
    assert users[1]["client_msg_id"] == lost[0]
    replies = [m["reply_to_id"] for m in stored if m["role"] == "assistant"]
    assert sorted(replies) == sorted(m["id"] for m in users)


def test_off_topic_question_offers_a_person(ui: Chat) -> None:
    page = ui.open().page
    ui.ask("What is the best recipe for banana bread?")
    ui.wait_replies(1)
    offer = ui.replies.first.locator(".notice--offer").get_by_role(
        "button", name="Talk to a person"
    )
    expect(offer).to_be_visible()
    offer.click()
    # A structured request, shown as such (never the bot's reading of a sentence).
    request = ui.users.nth(1)
    expect(request.locator(".msg__text")).to_have_text(REQUEST_TEXT)
    expect(request).to_have_attribute("data-status", "sent")
    expect(ui.notices("escalation")).to_have_count(1)
    expect(ui.notices("escalation").locator(".notice__text")).not_to_be_empty()
    expect(ui.owner).to_have_text("Waiting for a person")
    expect(offer).to_be_hidden()
    expect(page.locator("#talk-to-person")).to_be_hidden()
    stored = [m for m in ui.history() if m["role"] == "user"]
    assert stored[-1]["metadata"].get("request") == "person", stored[-1]
    page.wait_for_timeout(1500)  # the bot stays silent once a person was asked for
    expect(ui.replies).to_have_count(1)


def test_upload_is_processed_and_sent_with_the_next_message(ui: Chat) -> None:
    page = ui.open().page
    note = b"Order 4417: the blender arrived with a cracked jug. I would like a replacement.\n"
    page.set_input_files(
        "#file-input", files=[{"name": "order-note.txt", "mimeType": "text/plain", "buffer": note}]
    )
    chip = page.locator("#pending-attachments .attachment")
    expect(chip).to_have_count(1)
    expect(chip.locator(".attachment__name")).to_have_text("order-note.txt")
    expect(chip).to_have_attribute("data-status", "processed")
    expect(chip.locator(".attachment__preview")).to_contain_text("cracked jug")

    ui.ask("My order arrived damaged, see the note")
    expect(page.locator("#pending-attachments")).to_be_hidden()
    sent = ui.users.first
    expect(sent).to_have_attribute("data-status", "sent")
    expect(sent.locator(".attachment__name")).to_have_text("order-note.txt")
    ui.wait_replies(1)
    stored = [m for m in ui.history() if m["role"] == "user"]
    assert [a["filename"] for a in stored[0]["attachments"]] == ["order-note.txt"]

    # Refused files say why: the server's 415, and the size limit before uploading.
    page.set_input_files(
        "#file-input",
        files=[{"name": "run.sh", "mimeType": "text/x-sh", "buffer": b"#!/bin/sh\necho hi\n"}],
    )
    expect(page.locator("#errors .error").last).to_contain_text("not a supported file type")
    # A file over the limit (made in the page: 10 MB through the driver is slow).
    page.evaluate(
        """mb => {
          const input = document.getElementById('file-input');
          const dt = new DataTransfer();
          dt.items.add(new File([new ArrayBuffer(mb * 2 ** 20 + 1)], 'huge.txt'));
          input.files = dt.files;
          input.dispatchEvent(new Event('change'));
        }""",
        int(page.locator("body").get_attribute("data-max-upload-mb")),
    )
    alert = page.locator("#errors .error").last
    expect(alert).to_contain_text("too large")
    expect(page.locator("#pending-attachments .attachment")).to_have_count(0)
    count = page.locator("#errors .error").count()
    alert.get_by_role("button", name="Dismiss this message").click()
    expect(page.locator("#errors .error")).to_have_count(count - 1)


def test_html_is_rendered_as_text_and_agents_are_people(ui: Chat) -> None:
    page = ui.open().page
    evil = "<img src=x onerror=alert(1)>"
    ui.ask(evil)
    expect(ui.users.first.locator(".msg__text")).to_have_text(evil)
    expect(ui.users.first).to_have_attribute("data-status", "sent")
    ui.wait_replies(1)

    saved = ui.session()
    taken = staff_call(ui, "POST", f"/api/sessions/{saved['session_id']}/takeover")
    assert taken.status_code == 201, taken.text
    staff = Socket(ui.base_url, session_id=saved["session_id"], token=staff_token(ui))
    try:
        assert staff.recv()["type"] == "connected"
        staff.send({"type": "typing", "is_typing": True})
        expect(page.locator("#agent-typing")).to_be_visible()
        expect(page.locator("#agent-typing")).to_contain_text("Support is typing")
        agent_text = "Hi, I'm Sam. <script>alert(2)</script><b>bold?</b>"
        resp = httpx.post(
            f"{ui.base_url}/api/chat/sessions/{saved['session_id']}/messages",
            json={"message": agent_text},
            headers=STAFF,
            timeout=10,
        )
        assert resp.status_code == 202, resp.text
    finally:
        staff.close()
    agent = page.locator("#messages .msg--agent")
    expect(agent.locator(".msg__text")).to_have_text(agent_text)
    expect(agent.locator(".msg__author")).to_have_text("Support from support")
    expect(page.locator("#agent-typing")).to_be_hidden()

    page.reload()
    ui.wait_online()
    expect(page.locator("#messages .msg--agent .msg__text")).to_have_text(agent_text)
    expect(ui.users.first.locator(".msg__text")).to_have_text(evil)
    assert page.locator("#messages img, #messages script, #messages b").count() == 0
    time.sleep(0.2)  # an injected handler would have fired by now


def test_new_conversation_ends_the_old_one(ui: Chat) -> None:
    page = ui.open().page
    ui.ask("How do I reset my password?")
    ui.wait_replies(1)
    old = ui.session()
    # Discarding a conversation is asked first, in the page; "Cancel" keeps it.
    page.get_by_role("button", name="New conversation").click()
    dialog = page.get_by_role("dialog", name="Start a new conversation?")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(ui.users).to_have_count(1)
    assert ui.session()["session_id"] == old["session_id"]
    page.get_by_role("button", name="New conversation").click()
    dialog.get_by_role("button", name="End it and start again").click()
    expect(page.locator("#welcome")).to_be_visible()
    expect(ui.users).to_have_count(0)
    page.wait_for_function(
        "old => (window.helplineChat.sessionId || old) !== old", arg=old["session_id"]
    )
    ui.wait_online()
    new = ui.session()
    assert new["session_id"] != old["session_id"] and new["last_seq"] == 0
    resp = httpx.get(
        f"{ui.base_url}/api/sessions/{old['session_id']}",
        headers={"Authorization": f"Bearer {old['token']}"},
        timeout=10,
    )
    assert resp.json()["status"] == "ended"
    expect(page.locator("#composer-input")).to_be_focused()


def test_phone_width_and_keyboard_only(phone: Chat) -> None:
    page = phone.open().page
    page.keyboard.press("Tab")
    expect(page.locator(".skip-link")).to_be_focused()
    page.keyboard.press("Enter")
    box = page.locator("#composer-input")
    expect(box).to_be_focused()
    page.keyboard.type("first line")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    assert box.input_value() == "first line\nsecond line"
    expect(phone.users).to_have_count(0)
    page.keyboard.press("Control+A")
    page.keyboard.type("How do I reset my password?")
    page.keyboard.press("Enter")
    phone.wait_replies(1)
    expect(box).to_be_focused()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    # Tab from the conversation reaches the citation links; Enter follows one.
    page.locator("#conversation").focus()
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.className")
    assert "cite__link" in focused, focused
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.classList.contains('source')")


def _kinds(page) -> list[str]:  # type: ignore[no-untyped-def]
    """The conversation as a list of item kinds, in page order."""
    return page.evaluate(
        """() => Array.from(document.querySelectorAll('#messages > li')).map(li => {
          const notice = li.querySelector(':scope > .notice');
          if (li.classList.contains('msg--system') && notice) return notice.dataset.kind;
          if (li.dataset.request === 'person') return 'request';
          return li.dataset.role;
        })"""
    )


def test_person_takes_over_answers_and_hands_back(ui: Chat) -> None:
    page = ui.page
    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: frames.append(payload)))
    ui.open()
    ui.ask("How do I reset my password?")
    ui.wait_replies(1)
    talk = page.locator("#talk-to-person")
    expect(ui.owner).to_have_text("Assistant")
    expect(talk).to_be_enabled()

    # 1. The customer asks for a person: a structured request, a ticket, an honest notice.
    talk.click()
    request = page.locator("#messages .msg--user[data-request='person']")
    expect(request.locator(".msg__text")).to_have_text(REQUEST_TEXT)
    expect(request).to_have_attribute("data-status", "sent")
    expect(ui.notices("escalation")).to_have_count(1)
    expect(ui.owner).to_have_text("Waiting for a person")
    expect(talk).to_be_hidden()
    sent = [json.loads(f) for f in frames if isinstance(f, str) and '"handoff"' in f]
    assert len(sent) == 1 and sent[0]["type"] == "handoff", frames
    assert not any("talk to a person" in f.lower() for f in frames if '"message"' in f), frames
    saved = ui.session()
    sid = saved["session_id"]
    ticket = ticket_of(ui, sid)
    assert ticket["status"] == "open"
    stored = [m for m in ui.history() if m["role"] == "user"]
    assert stored[-1]["client_msg_id"] == sent[0]["client_msg_id"]
    assert stored[-1]["metadata"]["request"] == "person"
    # Nobody has a console open in the tests: the page offers to take an email address.
    expect(page.locator("form#contact-form")).to_be_visible()

    # 2. An agent claims the ticket: named, and the email form is no longer needed.
    resp = staff_call(ui, "POST", f"/api/tickets/{ticket['id']}/claim")
    assert resp.status_code == 200, resp.text
    joined = ui.notices("agent_joined")
    expect(joined).to_have_count(1)
    expect(joined.locator(".notice__text")).to_contain_text("Support")
    expect(ui.owner).to_have_text("Support from support")
    expect(page.locator("form#contact-form")).to_have_count(0)

    # 3. The agent types and answers; the customer's typing reaches the agent, on and off.
    agent_socket = Socket(ui.base_url, session_id=sid, token=staff_token(ui))
    try:
        agent_socket.until("connected")
        agent_socket.send({"type": "typing", "is_typing": True})
        expect(page.locator("#agent-typing")).to_have_text("Support is typing…")
        resp = staff_call(
            ui,
            "POST",
            f"/api/chat/sessions/{sid}/messages",
            json={"message": "Hello, I can help with that.", "client_msg_id": "agent-1"},
        )
        assert resp.status_code == 202, resp.text
        agent = page.locator("#messages .msg--agent")
        expect(agent).to_have_count(1)
        expect(agent.locator(".msg__author")).to_have_text("Support from support")
        expect(agent.locator(".msg__text")).to_have_text("Hello, I can help with that.")
        expect(page.locator("#agent-typing")).to_be_hidden()

        box = page.locator("#composer-input")
        box.press_sequentially("Thanks", delay=20)
        agent_socket.until("user_typing", role="user", is_typing=True, timeout=10)
        box.fill("")
        box.dispatch_event("input")
        agent_socket.until("user_typing", role="user", is_typing=False, timeout=10)

        # 4. While a person holds the conversation the bot stays silent.
        ui.ask("How long does a refund take?")
        expect(ui.users.last).to_have_attribute("data-status", "sent")
        question = agent_socket.until("user_message", timeout=10)[-1]["message"]
        assert question["content"] == "How long does a refund take?", question
        quiet = agent_socket.quiet(3)
        assert not [e for e in quiet if e["type"] in ("start", "complete")], quiet
    finally:
        agent_socket.close()
    expect(ui.replies).to_have_count(1)

    # 5. The agent resolves: the assistant is back, and the customer is asked for a rating.
    resp = staff_call(
        ui, "POST", f"/api/tickets/{ticket['id']}/resolve", json={"end_session": False}
    )
    assert resp.status_code == 200, resp.text
    expect(ui.notices("agent_left")).to_have_count(1)
    expect(ui.owner).to_have_text("Assistant")
    expect(talk).to_be_visible()
    rating = page.locator("form#rating")
    expect(rating).to_be_visible()
    expect(rating.locator("button[data-score]")).to_have_count(5)
    rating.locator('button[data-score="4"]').click()
    page.locator("#rating-comment").fill("Quick and kind <b>thanks</b>")
    page.locator("#rating-submit").click()
    expect(page.locator("#rating-thanks")).to_have_text("Thanks for your feedback")
    expect(page.locator("form#rating")).to_have_count(0)
    again = httpx.post(
        f"{ui.base_url}/api/sessions/{sid}/rating",
        json={"score": 1},
        headers={"Authorization": f"Bearer {saved['token']}"},
        timeout=10,
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_rated"

    # 6. After a reload (and a reconnect) the same conversation, each notice once, in place.
    before = _kinds(page)
    assert before == [
        "user",
        "assistant",
        "request",
        "escalation",
        "agent_joined",
        "agent",
        "user",
        "agent_left",
    ], before
    page.reload()
    ui.wait_online()
    expect(ui.notices("agent_left")).to_have_count(1)
    page.wait_for_timeout(500)  # anything replayed after the socket connects lands by now
    assert _kinds(page) == before
    expect(ui.owner).to_have_text("Assistant")
    expect(talk).to_be_visible()
    expect(page.locator("#messages .msg--agent .msg__author")).to_have_text("Support from support")
    expect(page.locator("form#rating")).to_have_count(0)  # rated already
    expect(page.locator("form#contact-form")).to_have_count(0)
    ui.drop_socket()
    ui.wait_online()
    page.wait_for_timeout(500)
    assert _kinds(page) == before


def test_nobody_online_takes_an_email_address(ui: Chat) -> None:
    page = ui.open().page
    sid = ui.session()["session_id"]
    # The socket is down when the customer asks: REST takes the same structured request.
    ui.drop_socket()
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/handoff")) as req:
        page.locator("#talk-to-person").click()
    body = req.value.post_data_json
    request = page.locator("#messages .msg--user[data-request='person']")
    expect(request).to_have_attribute("data-status", "sent")
    assert body["client_msg_id"] == request.get_attribute("data-client-msg-id")
    ui.wait_online()
    notice = ui.notices("escalation")
    expect(notice).to_have_count(1)
    expect(notice.locator(".notice__text")).to_contain_text("email")
    expect(ui.owner).to_have_text("Waiting for a person")

    form = page.locator("form#contact-form")
    expect(form).to_be_visible()
    email = page.locator("input#contact-email")
    expect(email).to_have_attribute("type", "email")
    email.fill("not an address")
    form.locator("button[type=submit]").click()
    expect(form.get_by_role("alert")).to_contain_text("email address")
    email.fill("pat@localhost-without-dot")  # the browser accepts it; the server does not (422)
    form.locator("button[type=submit]").click()
    expect(form.get_by_role("alert")).to_contain_text("does not look right")
    email.fill("pat@example.com")
    form.locator("button[type=submit]").click()
    expect(page.locator("#messages")).to_contain_text("We'll reply to pat@example.com")
    expect(form).to_have_count(0)
    assert ticket_of(ui, sid)["contact_email"] == "pat@example.com"
    stored = [m for m in ui.history() if m["role"] == "user"]
    assert len(stored) == 1 and stored[0]["client_msg_id"] == body["client_msg_id"]

    page.reload()
    ui.wait_online()
    expect(ui.notices("escalation")).to_have_count(1)
    expect(ui.owner).to_have_text("Waiting for a person")
    expect(page.locator("#messages")).to_contain_text("We'll reply to pat@example.com")
    expect(page.locator("form#contact-form")).to_have_count(0)
    expect(page.locator("#talk-to-person")).to_be_hidden()
    expect(request).to_have_count(1)


def test_conversation_ended_by_support_offers_a_rating(ui: Chat) -> None:
    page = ui.open().page
    ui.ask("How do I track my order?")
    ui.wait_replies(1)
    sid = ui.session()["session_id"]
    resp = staff_call(ui, "POST", f"/api/sessions/{sid}/takeover")
    assert resp.status_code == 201, resp.text
    expect(ui.owner).to_have_text("Support from support")
    expect(page.locator("#talk-to-person")).to_be_hidden()
    resp = staff_call(
        ui, "POST", f"/api/tickets/{resp.json()['id']}/resolve", json={"end_session": True}
    )
    assert resp.status_code == 200, resp.text
    expect(page.locator("#conn")).to_have_attribute("data-state", "ended")
    ended = page.locator("#messages .msg--ended")
    expect(ended).to_contain_text("This conversation has ended.")
    rating = ended.locator("form#rating")
    expect(rating).to_be_visible()
    page.locator("#rating-submit").click()  # no score yet: said in words, nothing sent
    expect(rating.get_by_role("alert")).to_contain_text("choose a rating")
    rating.locator('button[data-score="5"]').click()
    page.locator("#rating-submit").click()
    expect(page.locator("#rating-thanks")).to_be_visible()
    expect(page.locator("form#rating")).to_have_count(0)


# -- the page's defects, fixed: scroll, time zones, late answers, languages, feedback ---------
# a folder to save the README's screenshots in (docs/screenshots when refreshing them)
SCREENSHOTS = os.environ.get("HELPLINE_SCREENSHOTS")

# The scrolling conversation is at its end and the newest item's bottom is inside it; an item
# that fits is inside it whole (one taller than the view can only show its end).
LAST_IN_VIEW = """() => {
  const s = document.getElementById('conversation');
  const items = document.querySelectorAll('#messages > li');
  if (!items.length) return false;
  const last = items[items.length - 1].getBoundingClientRect();
  const box = s.getBoundingClientRect();
  const fits = last.height <= box.height;
  return last.bottom <= box.bottom + 1 && (!fits || last.top >= box.top - 1)
    && s.scrollHeight - s.scrollTop - s.clientHeight <= 2;
}"""


def _newest_stays_in_view(chat: Chat, questions: list[str]) -> None:
    page = chat.open().page
    for n, question in enumerate(questions, start=1):
        chat.ask(question)
        chat.wait_replies(n)
        page.wait_for_function(LAST_IN_VIEW)


def test_newest_answer_in_view_on_desktop_and_pill_when_reading_above(ui: Chat) -> None:
    questions = [
        "How long does a refund take?",
        "How do I track my order?",
        "How do I reset my password?",
    ]
    _newest_stays_in_view(ui, questions)
    page = ui.page
    pill = page.locator("#new-message-pill")
    expect(pill).to_be_hidden()
    # The reader scrolls up; a message arrives (from another tab of theirs, then the answer):
    # the view stays where they read, a pill says something new came.
    page.locator("#conversation").evaluate("s => { s.scrollTop = 0; }")
    page.wait_for_function("() => document.getElementById('conversation').scrollTop === 0")
    saved = ui.session()
    resp = httpx.post(
        f"{ui.base_url}/api/chat/sessions/{saved['session_id']}/messages",
        json={"message": "Do you ship to Norway?"},
        headers={"Authorization": f"Bearer {saved['token']}"},
        timeout=10,
    )
    assert resp.status_code == 202, resp.text
    ui.wait_replies(4)
    expect(pill).to_be_visible()
    assert page.locator("#conversation").evaluate("s => s.scrollTop") == 0
    pill.click()
    page.wait_for_function(LAST_IN_VIEW)
    expect(pill).to_be_hidden()


def test_newest_answer_in_view_on_a_phone(phone: Chat) -> None:
    _newest_stays_in_view(
        phone,
        ["How long does a refund take?", "How do I track my order?", "Do you ship to Norway?"],
    )


def test_times_are_the_same_after_a_reload_in_new_york(browser, stack) -> None:  # type: ignore[no-untyped-def]
    for chat in _page(browser, stack, timezone_id="America/New_York", locale="en-US"):
        page = chat.open().page
        chat.ask("How do I track my order?")
        chat.wait_replies(1)
        shown = (
            "() => Array.from(document.querySelectorAll('#messages time'))"
            ".map(t => [t.dateTime, t.textContent])"
        )
        before = page.evaluate(shown)
        assert len(before) == 2, before
        # Every instant the API and the socket gave carries its zone (ISO 8601, UTC "Z").
        assert all(re.search(r"(Z|[+-]\d\d:\d\d)$", iso) for iso, _ in before), before
        page.reload()
        chat.wait_online()
        chat.wait_replies(1)
        after = page.evaluate(shown)
        assert [text for _, text in after] == [text for _, text in before], (before, after)
        # And the clock shown is New York's, not UTC's.
        offset = page.evaluate("() => new Date().getTimezoneOffset()")
        assert offset in (240, 300), offset
        stored = chat.history()
        assert all(m["timestamp"].endswith("Z") for m in stored), stored


def test_late_answer_says_still_working_while_the_worker_is_stopped(ui: Chat, stack) -> None:  # type: ignore[no-untyped-def]
    page = ui.open().page
    stack.pause_worker()
    try:
        ui.ask("How do I reset my password?")
        expect(ui.users.first).to_have_attribute("data-status", "sent")
        late = ui.users.first.locator(".msg__overdue")
        expect(late).to_have_text("Still working on it…", timeout=15_000)
        expect(ui.users.first).to_have_attribute("data-overdue", "true")
        # The server itself is reachable: the page does not pretend otherwise either way.
        expect(page.locator("#conn")).to_have_attribute("data-state", "online")
    finally:
        stack.resume_worker()
    ui.wait_replies(1)
    expect(late).to_have_count(0)


def test_server_unreachable_is_said_plainly_and_messages_wait(ui: Chat) -> None:
    page = ui.open().page
    down = [True]  # the network between this page and the server, cut then restored

    def api_route(route) -> None:  # type: ignore[no-untyped-def]
        if down[0]:
            route.abort("connectionrefused")
        else:
            route.continue_()

    def socket_route(ws) -> None:  # type: ignore[no-untyped-def]
        if down[0]:
            ws.close()
        else:
            ws.connect_to_server()

    page.route(re.compile(r".*/api/.*"), api_route)
    page.route_web_socket(re.compile(r".*/ws\?.*"), socket_route)
    ui.drop_socket()
    ui.ask("How long does a refund take?")
    alert = page.locator('#errors .error[data-code="unreachable"]')
    expect(alert).to_contain_text("can’t reach our server")
    expect(ui.users.first).to_have_attribute("data-status", "queued")
    expect(page.locator("#conn")).not_to_have_attribute("data-state", "online")
    down[0] = False
    ui.wait_replies(1)  # the socket comes back; the waiting message goes with it
    expect(ui.users.first).to_have_attribute("data-status", "sent")
    expect(alert).to_have_count(0)
    expect(ui.users).to_have_count(1)


def test_a_send_racing_the_socket_close_still_shows_the_server_unreachable(ui: Chat) -> None:
    """A message sent while the socket is closing: its request fails before the socket's close
    event arrives. The indicator must not stay on "Connected" once the close comes (a slow
    close handshake in CI once left it there). The close is held back on purpose here."""
    routes: list = []
    closing: list = []

    def socket_route(ws) -> None:  # type: ignore[no-untyped-def]
        if routes:  # the network is down for every later attempt
            ws.close()
            return
        routes.append(ws)
        ws.on_close(lambda code, reason: closing.append(code))  # hold the page's close
        ws.connect_to_server()

    ui.page.route_web_socket(re.compile(r".*/ws\?.*"), socket_route)
    page = ui.open().page
    page.route(re.compile(r".*/api/.*"), lambda route: route.abort("connectionrefused"))
    ui.drop_socket()
    ui.ask("How long does a refund take?")
    expect(page.locator('#errors .error[data-code="unreachable"]')).to_have_count(1)
    assert closing, "the page asked to close its socket"
    routes[0].close()  # the close handshake completes only now
    expect(page.locator("#conn")).to_have_attribute("data-state", "unreachable")
    expect(ui.users.first).to_have_attribute("data-status", "queued")


def test_interface_language_follows_the_browser(browser, stack) -> None:  # type: ignore[no-untyped-def]
    for chat in _page(browser, stack, locale="fr-FR"):
        page = chat.open().page
        expect(page.locator("html")).to_have_attribute("lang", "fr")
        expect(page.locator("#talk-to-person")).to_contain_text("Parler à une personne")
        expect(page.locator("#new-conversation")).to_contain_text("Nouvelle conversation")
        expect(page.locator("#conn")).to_contain_text("Connecté")
        expect(page.locator("#composer-input")).to_have_attribute(
            "placeholder", "Écrivez votre message…"
        )
        chat.ask("How do I track my order?")
        chat.wait_replies(1)
        expect(chat.replies.first.locator(".sources__title")).to_have_text("Sources")
        expect(chat.users.first.locator(".msg__status")).to_have_text("Envoyé")


def test_feedback_on_answers_is_stored_and_shown_again(ui: Chat) -> None:
    page = ui.open().page
    ui.ask("How long does a refund take?")
    ui.wait_replies(1)
    ui.ask("What is the best recipe for banana bread?")
    ui.wait_replies(2)
    first, second = ui.replies.nth(0), ui.replies.nth(1)
    first.get_by_role("button", name="Helpful", exact=True).click()
    expect(first.locator(".feedback__done")).to_have_text("Thanks for your feedback.")
    expect(first.get_by_role("button", name="Helpful", exact=True)).to_have_attribute(
        "aria-pressed", "true"
    )
    second.get_by_role("button", name="Not helpful").click()
    reason = second.locator("input.feedback__reason")
    expect(reason).to_be_focused()
    reason.fill("I asked about bread, not electronics")
    second.get_by_role("button", name="Send").click()
    expect(second.locator("input.feedback__reason")).to_have_count(0)
    if SCREENSHOTS:
        page.screenshot(path=f"{SCREENSHOTS}/chat-page.png")
    stored = [m for m in ui.history() if m["role"] == "assistant"]
    assert stored[0]["feedback"]["rating"] == "up", stored[0]
    assert stored[1]["feedback"]["rating"] == "down", stored[1]
    assert stored[1]["feedback"]["reason"] == "I asked about bread, not electronics"
    page.reload()
    ui.wait_replies(2)
    expect(ui.replies.nth(0).locator(".feedback")).to_have_attribute("data-rating", "up")
    expect(ui.replies.nth(1).locator(".feedback")).to_have_attribute("data-rating", "down")


def test_citation_links_to_the_article_and_shows_no_internal_ids(ui: Chat) -> None:
    url = "https://help.brightwave.example/gift-wrapping"
    doc = staff_call(
        ui,
        "POST",
        "/api/kb/documents",
        json={
            "title": "Gift wrapping",
            "text": "Gift wrapping costs 3 euros per parcel. Choose gift wrapping at checkout "
            "and add a card message of up to 200 characters.",
            "metadata": {"url": url},
            "external_id": "kb-gift-wrapping-test",
        },
    )
    assert doc.status_code in (201, 202), doc.text
    doc_id = doc.json()["id"]
    deadline = time.monotonic() + 20
    while staff_call(ui, "GET", f"/api/kb/documents/{doc_id}").json()["status"] != "done":
        assert time.monotonic() < deadline, "the document was not indexed"
        time.sleep(0.2)
    page = ui.open().page
    ui.ask("How much does gift wrapping cost?")
    ui.wait_replies(1)
    reply = ui.replies.first
    link = reply.locator(f'a.cite__link[href="{url}"]').first
    expect(link).to_be_visible()
    expect(link).to_have_attribute("target", "_blank")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    expect(reply.locator(f'.sources a.source__link[href="{url}"]')).to_have_text("Gift wrapping")
    text = reply.inner_text()
    assert "kb-gift-wrapping-test" not in text and doc_id not in text, text
    assert page.locator(".source__ref").count() == 0
