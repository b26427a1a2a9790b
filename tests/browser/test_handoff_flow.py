"""The whole human handoff in two browser pages: a customer on `/`, Sam on `/console`.

The customer asks for a person, Sam sees the ticket arrive, claims it and talks with the
customer (typing shown both ways, and the bot silent meanwhile), resolves it, the bot answers
again, and the customer's rating is recorded as handled by a person.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from playwright import sync_api

from tests.browser.test_console import (  # noqa: F401  (named_agents is a fixture)
    SAM_KEY,
    Console,
    console_page,
    named_agents,
)

pytestmark = pytest.mark.browser

expect = sync_api.expect
REPLY_TIMEOUT = 20_000  # ms
QUIET_SECONDS = 4  # how long the bot must stay silent while a person owns the chat


class Customer:
    """The chat page, read through the DOM hooks listed in the handoff contract."""

    def __init__(self, context, base_url: str) -> None:  # type: ignore[no-untyped-def]
        self.base_url = base_url
        self.page = context.new_page()
        self.page.set_default_timeout(15_000)
        self.problems: list[str] = []
        self.page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))

    def open(self) -> Customer:
        self.page.goto(self.base_url + "/")
        expect(self.page.locator("#conn")).to_have_attribute("data-state", "online")
        return self

    def ask(self, text: str) -> None:
        box = self.page.locator("#composer-input")
        box.fill(text)
        box.press("Enter")

    def wait_replies(self, count: int) -> None:
        done = self.page.locator('#messages .msg--assistant[data-state="complete"]')
        expect(done).to_have_count(count, timeout=REPLY_TIMEOUT)

    @property
    def replies(self):  # type: ignore[no-untyped-def]
        return self.page.locator("#messages li.msg--assistant")

    def notice(self, kind: str):  # type: ignore[no-untyped-def]
        return self.page.locator(f'#messages .notice[data-kind="{kind}"] .notice__text')

    def session(self) -> dict:
        return self.page.evaluate("JSON.parse(localStorage.getItem('helpline.session'))")

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.session()['token']}"}

    def ticket_id(self) -> str:
        saved = self.session()
        resp = httpx.get(
            f"{self.base_url}/api/sessions/{saved['session_id']}", headers=self.auth(), timeout=10
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["ticket_id"], resp.json()
        return resp.json()["ticket_id"]


@pytest.fixture
def customer(browser, stack) -> Iterator[Customer]:  # type: ignore[no-untyped-def]  # noqa: F811
    context = browser.new_context(viewport={"width": 1000, "height": 860})
    page = Customer(context, stack.urls[0])
    try:
        yield page
    finally:
        context.close()
    assert not page.problems, page.problems


@pytest.fixture
def sam(browser, stack, named_agents) -> Iterator[Console]:  # type: ignore[no-untyped-def]  # noqa: F811
    yield from console_page(browser, stack.urls[1])  # the other web process than the customer's


def _ask_for_a_person(customer: Customer, sam: Console) -> str:
    """Customer clicks "Talk to a person"; the ticket shows up in Sam's queue without reload."""
    customer.ask("Do you ship to Norway?")
    customer.wait_replies(1)
    customer.page.locator("#talk-to-person").click()
    expect(customer.notice("escalation")).to_be_visible()
    expect(customer.page.locator("#owner-status")).to_have_text("Waiting for a person")
    expect(customer.page.locator("#talk-to-person")).not_to_be_visible()
    ticket_id = customer.ticket_id()
    expect(sam.ticket(ticket_id)).to_be_visible()
    expect(sam.ticket(ticket_id)).to_have_attribute("data-status", "open")
    return ticket_id


def _talk_both_ways(customer: Customer, sam: Console) -> None:
    """Typing and messages in both directions, and not a word from the bot."""
    page, console = customer.page, sam.page
    bot_replies = customer.replies.count()

    console.locator("#reply-input").press_sequentially("Hi, I'm S")
    expect(page.locator("#agent-typing")).to_be_visible()
    expect(page.locator("#agent-typing")).to_contain_text("Sam is typing")
    console.locator("#reply-input").press_sequentially("am. How can I help?")
    console.locator("#reply-input").press("Enter")
    agent_msg = page.locator("#messages li.msg--agent").last
    expect(agent_msg.locator(".msg__text")).to_have_text("Hi, I'm Sam. How can I help?")
    expect(agent_msg.locator(".msg__author")).to_have_text("Sam from support")
    expect(page.locator("#agent-typing")).to_be_hidden()

    page.locator("#composer-input").press_sequentially("My parcel is")
    expect(console.locator("#customer-typing")).to_be_visible()
    page.locator("#composer-input").press_sequentially(" late, order 4417")
    page.locator("#composer-input").press("Enter")
    from_customer = sam.thread.locator(".msg--user .msg__text").last
    expect(from_customer).to_have_text("My parcel is late, order 4417")
    expect(console.locator("#customer-typing")).to_be_hidden()

    sam.reply("Thanks, I'll check order 4417 now.")
    expect(page.locator("#messages li.msg--agent .msg__text").last).to_have_text(
        "Thanks, I'll check order 4417 now."
    )
    page.wait_for_timeout(QUIET_SECONDS * 1000)  # a bot reply would have streamed by now
    expect(customer.replies).to_have_count(bot_replies)


def _rate(customer: Customer) -> dict:
    """Four stars with a comment; returns the stored rating from the server's answer."""
    form = customer.page.locator("form#rating")
    expect(form).to_be_visible()
    form.locator('button[data-score="4"]').click()
    customer.page.locator("#rating-comment").fill("Sam sorted it out quickly")
    pattern = re.compile(r".*/api/sessions/[^/]+/rating$")
    with customer.page.expect_response(lambda r: bool(pattern.match(r.url))) as info:
        customer.page.locator("#rating-submit").click()
    assert info.value.status == 201, info.value.text()
    expect(customer.page.locator("#rating-thanks")).to_contain_text("Thanks for your feedback")
    expect(form).to_have_count(0)
    return info.value.json()


def test_customer_gets_a_person_then_the_bot_again(customer: Customer, sam: Console) -> None:
    sam.open().sign_in(SAM_KEY)  # an agent is online before anyone asks
    customer.open()
    ticket_id = _ask_for_a_person(customer, sam)
    expect(customer.page.locator("#contact-form")).to_have_count(0)  # someone can answer now

    sam.open_ticket(ticket_id)
    sam.claim()
    joined = customer.notice("agent_joined")
    expect(joined).to_have_count(1)
    expect(joined).to_contain_text("Sam from support joined")
    expect(customer.page.locator("#owner-status")).to_have_text("Sam from support")

    _talk_both_ways(customer, sam)
    sam.page.screenshot(path="/tmp/helpline-console-handoff.png")
    customer.page.screenshot(path="/tmp/helpline-chat-handoff.png")

    sam.page.locator("#resolve").click()
    sam.page.locator("#resolve-resume").click()
    expect(sam.ticket(ticket_id)).to_have_count(0)  # resolved tickets leave the queue
    expect(sam.page.locator("#ticket-state")).to_have_text("Resolved")
    expect(customer.notice("agent_left")).to_be_visible()
    expect(customer.page.locator("#owner-status")).to_have_text("Assistant")

    answered = customer.replies.count()
    customer.ask("How long does a refund take?")
    customer.wait_replies(answered + 1)
    expect(customer.replies.last.locator(".msg__text")).to_contain_text(re.compile(r"refund", re.I))
    expect(sam.thread.locator(".msg--assistant").last).to_contain_text(re.compile("refund", re.I))

    rating = _rate(customer)
    assert rating["score"] == 4 and rating["comment"] == "Sam sorted it out quickly"
    assert rating["handled_by"] == "person" and rating["agent"] == "Sam", rating
    again = httpx.post(
        f"{customer.base_url}/api/sessions/{customer.session()['session_id']}/rating",
        json={"score": 1},
        headers=customer.auth(),
        timeout=10,
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_rated"
