"""The customer chat page at `/`, driven in headless Chromium against the real stack.

Each test gets a fresh browser context (so a fresh localStorage, hence a fresh session); the
browser itself is shared by the module. Chromium comes from Debian (`apt-get install chromium`),
never from `playwright install`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright import sync_api

from tests.client import STAFF

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = Path("/tmp/helpline-chat.png")
REPLY_TIMEOUT = 20_000  # ms; the offline engine answers in well under a second

expect = sync_api.expect


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not CHROMIUM.exists():
        pytest.fail(
            "Debian chromium is not installed: run `make chromium` (apt-get install chromium)"
        )
    with sync_api.sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


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
    offer = page.get_by_role("button", name="Talk to a person")
    expect(offer).to_be_visible()
    offer.click()
    expect(ui.users.nth(1).locator(".msg__text")).to_have_text("I'd like to talk to a person")
    ui.wait_replies(2)
    notice = page.locator(".notice--handoff")
    expect(notice).to_contain_text("A support agent has been asked to join")
    expect(offer).to_be_disabled()


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
    from tests.client import Socket

    page = ui.open().page
    evil = "<img src=x onerror=alert(1)>"
    ui.ask(evil)
    expect(ui.users.first.locator(".msg__text")).to_have_text(evil)
    expect(ui.users.first).to_have_attribute("data-status", "sent")
    ui.wait_replies(1)

    saved = ui.session()
    staff = Socket(ui.base_url, session_id=saved["session_id"], api_key=STAFF["X-API-Key"])
    try:
        assert staff.recv()["type"] == "connected"
        staff.send({"type": "typing", "is_typing": True})
        expect(page.locator("#agent-typing")).to_be_visible()
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
    expect(agent.locator(".msg__author")).to_have_text("Support agent")
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
    page.get_by_role("button", name="New conversation").click()
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
