"""The embeddable widget on a customer's own site, in headless Chromium.

A small host page is served by a second local HTTP server: as http://localhost:<port> it is an
allowed embedding origin (WIDGET_ORIGINS in the suite's environment), as
http://127.0.0.1:<port> (the same server, another origin) it is not. The chat itself comes
from the stack's web process, a third origin.
"""

from __future__ import annotations

import html
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from playwright import sync_api

from tests.client import STAFF
from tests.conftest import WIDGET_HOST_PORT

pytestmark = pytest.mark.browser
expect = sync_api.expect
REPLY_TIMEOUT = 20_000
# a folder to save the README's screenshots in (docs/screenshots when refreshing them)
SCREENSHOTS = os.environ.get("HELPLINE_SCREENSHOTS")


def host_page(chat_url: str, lang: str | None) -> bytes:
    """A shop's page with the snippet a site owner pastes (data-lang when given)."""
    attrs = f' data-lang="{html.escape(lang)}"' if lang else ""
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Brightwave shop</title>"
        "<style>body{font:16px system-ui;margin:0;background:#f4f1ea}header{background:#1f2d3d;"
        "color:#fff;padding:18px 32px}main{padding:32px;max-width:760px}"
        ".card{background:#fff;border-radius:12px;padding:20px;margin:0 0 16px}</style></head>"
        "<body><header><strong>Brightwave</strong> electronics</header><main>"
        "<div class='card'><h1>Wireless headphones</h1><p>40 hours of battery, free returns "
        "within 30 days.</p></div><div class='card'><p>Questions? Our support chat is in the "
        "corner.</p></div></main>"
        f'<script src="{chat_url}/widget.js"{attrs} async></script></body></html>'
    ).encode()


@pytest.fixture(scope="module")
def host(stack) -> Iterator[int]:  # type: ignore[no-untyped-def]
    """The host site's server on WIDGET_HOST_PORT; `/?lang=xx` adds data-lang to the snippet."""
    chat_url = stack.urls[0]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            lang = parse_qs(urlparse(self.path).query).get("lang", [None])[0]
            body = host_page(chat_url, lang)
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
            pass

    server = ThreadingHTTPServer(("127.0.0.1", WIDGET_HOST_PORT), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield WIDGET_HOST_PORT
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def page(browser) -> Iterator:  # type: ignore[no-untyped-def]
    """One page per test; page errors (ours or the host's) fail the test."""
    context = browser.new_context(viewport={"width": 1200, "height": 860}, locale="en-US")
    p = context.new_page()
    p.set_default_timeout(15_000)
    problems: list[str] = []
    p.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    try:
        yield p
    finally:
        context.close()
    assert not problems, problems


def chat_frame(page):  # type: ignore[no-untyped-def]
    """The chat inside the widget (its frame element is in the loader's shadow root)."""
    return page.frame_locator("#helpline-widget iframe")


def embed_frame(page):  # type: ignore[no-untyped-def]
    """The frame object, for evaluating in it."""
    return next(f for f in page.frames if "/embed" in f.url)


def test_widget_on_another_site_answers_and_keeps_the_conversation(page, host, stack) -> None:  # type: ignore[no-untyped-def]
    site = f"http://localhost:{host}/"
    page.goto(site)
    launcher = page.locator("#helpline-widget button.launcher")
    expect(launcher).to_be_visible()
    expect(launcher).to_have_attribute("aria-expanded", "false")
    # Closed: nothing is loaded yet (no session made for every visitor).
    expect(page.locator("#helpline-widget iframe")).to_have_count(0)
    if SCREENSHOTS:
        page.screenshot(path=f"{SCREENSHOTS}/widget-closed.png")

    launcher.click()
    expect(page.locator("#helpline-widget")).to_have_attribute("data-state", "ready")
    chat = chat_frame(page)
    expect(chat.locator("#conn")).to_have_attribute("data-state", "online")
    box = chat.locator("#composer-input")
    box.fill("How long does a refund take?")
    box.press("Enter")
    done = chat.locator('#messages .msg--assistant[data-state="complete"]')
    expect(done).to_have_count(1, timeout=REPLY_TIMEOUT)
    expect(done.locator("a.cite__link").first).to_be_visible()
    expect(done.locator(".sources li").first).to_be_visible()
    answer = done.locator(".msg__text").text_content()
    if SCREENSHOTS:
        page.screenshot(path=f"{SCREENSHOTS}/widget-open.png")
    sid = embed_frame(page).evaluate("window.helplineChat.sessionId")

    # A reload of the host page: still open, the same conversation, nothing twice.
    page.reload()
    expect(page.locator("#helpline-widget")).to_have_attribute("data-open", "true")
    chat = chat_frame(page)
    expect(chat.locator("#conn")).to_have_attribute("data-state", "online")
    expect(chat.locator("#messages .msg--user")).to_have_count(1)
    expect(chat.locator('#messages .msg--assistant[data-state="complete"]')).to_have_count(1)
    assert chat.locator("#messages .msg--assistant .msg__text").text_content() == answer
    assert embed_frame(page).evaluate("window.helplineChat.sessionId") == sid

    # Closed, a person answers: the launcher counts it; opening clears the count.
    page.locator("#helpline-widget button.launcher").click()
    expect(page.locator("#helpline-widget")).to_have_attribute("data-open", "false")
    taken = httpx.post(f"{stack.urls[0]}/api/sessions/{sid}/takeover", headers=STAFF, timeout=10)
    assert taken.status_code == 201, taken.text
    sent = httpx.post(
        f"{stack.urls[0]}/api/chat/sessions/{sid}/messages",
        json={"message": "Hi, Support here: anything else?"},
        headers=STAFF,
        timeout=10,
    )
    assert sent.status_code == 202, sent.text
    badge = page.locator("#helpline-widget .badge")
    expect(badge).to_have_text("1")
    expect(launcher).to_have_attribute("aria-label", "Chat with us (1 unread)")
    page.reload()  # the count survives a page load too
    expect(page.locator("#helpline-widget .badge")).to_have_text("1")
    page.locator("#helpline-widget button.launcher").click()
    expect(page.locator("#helpline-widget .badge")).to_be_hidden()
    expect(chat_frame(page).locator("#messages .msg--agent .msg__text")).to_have_text(
        "Hi, Support here: anything else?"
    )


def test_widget_on_a_site_not_allowed_is_refused(page, host, stack) -> None:  # type: ignore[no-untyped-def]
    refused: list[str] = []
    page.on(
        "response",
        lambda r: (
            refused.append(r.headers.get("content-security-policy", ""))
            if "/embed" in r.url
            else None
        ),
    )
    page.goto(f"http://127.0.0.1:{host}/")  # same server, an origin not in WIDGET_ORIGINS
    page.locator("#helpline-widget button.launcher").click()
    widget = page.locator("#helpline-widget")
    expect(widget).to_have_attribute("data-state", "failed")
    expect(widget.locator(".fail")).to_contain_text("cannot be shown on this page")
    # The browser blocked the frame (frame-ancestors names only the allowed site), so the
    # chat never ran in it: no session was made for this page.
    assert refused and f"http://localhost:{host}" in refused[0], refused
    assert f"http://127.0.0.1:{host}" not in refused[0]
    assert page.frame_locator("#helpline-widget iframe").locator("#composer-input").count() == 0


def test_widget_language_comes_from_the_snippet(page, host) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"http://localhost:{host}/?lang=es")  # the snippet says data-lang="es"
    launcher = page.locator("#helpline-widget button.launcher")
    expect(launcher).to_have_attribute("aria-label", "Chatee con nosotros")
    launcher.click()
    chat = chat_frame(page)
    expect(chat.locator("html")).to_have_attribute("lang", "es")
    expect(chat.locator("#talk-to-person")).to_contain_text("Hablar con una persona")
    expect(chat.locator("#composer-input")).to_have_attribute("placeholder", "Escriba su mensaje…")
    close = page.locator("#helpline-widget .close")
    expect(close).to_have_attribute("aria-label", "Cerrar el chat")
