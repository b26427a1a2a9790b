"""Operator-facing pages in headless Chromium: the API docs (Swagger UI served locally), the
favicon, and the console's knowledge-base and report views, against the real stack."""

from __future__ import annotations

import os
import re
import uuid
from urllib.parse import urlparse

import httpx
import pytest
from playwright import sync_api

from tests.client import STAFF

pytestmark = pytest.mark.browser

expect = sync_api.expect


def test_favicon_is_served_and_linked(stack) -> None:  # type: ignore[no-untyped-def]
    base = stack.urls[0]
    icon = httpx.get(f"{base}/favicon.ico", timeout=10)
    assert icon.status_code == 200 and icon.headers["Content-Type"] == "image/vnd.microsoft.icon"
    assert icon.content[:4] == b"\x00\x00\x01\x00"  # an ICO header
    for path in ("/", "/console", "/api/docs"):
        assert 'rel="icon" href="/favicon.ico"' in httpx.get(base + path, timeout=10).text, path


def test_api_docs_is_swagger_ui_with_no_foreign_requests(browser, stack) -> None:  # type: ignore[no-untyped-def]
    base = stack.urls[0]
    context = browser.new_context()
    page = context.new_page()
    hosts: set[str] = set()
    problems: list[str] = []
    page.on("request", lambda req: hosts.add(urlparse(req.url).netloc))
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("console", lambda m: m.type == "error" and problems.append(m.text))
    try:
        page.goto(base + "/api/docs")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("Helpline")
        path = page.locator('.opblock-post .opblock-summary-path[data-path="/api/sessions"]')
        path.click()
        op = page.locator(".opblock-post.is-open")
        op.locator("button.execute").click()  # tryItOutEnabled: no "Try it out" first
        status = op.locator(".live-responses-table tbody .response-col_status")
        expect(status).to_have_text("201")
        expect(op.locator(".live-responses-table .microlight").first).to_contain_text("token")
    finally:
        context.close()
    assert hosts == {urlparse(base).netloc}, hosts
    assert not problems, problems


# -- the console's knowledge-base and report views ------------------------------------------

SHOTS = os.environ.get("HELPLINE_SCREENSHOTS")  # a folder: save the README's screenshots there


def signed_in_console(browser, base: str, section: str):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda m: (
            m.type == "error" and "Content Security Policy" in m.text and problems.append(m.text)
        ),
    )
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    page.goto(f"{base}/console#{section}")
    page.locator("#staff-key").fill(STAFF["X-API-Key"])
    page.locator("#signin-submit").click()
    return context, page, problems


def conversation(http: httpx.Client, question: str, rating: str, reason: str | None = None) -> dict:
    chat = http.post("/api/sessions", json={}).json()
    auth = {"Authorization": f"Bearer {chat['token']}"}
    sid = chat["session_id"]
    resp = http.post(
        f"/api/chat/sessions/{sid}/messages",
        params={"wait": 20},
        json={"message": question},
        headers=auth,
    )
    assert resp.status_code == 200, resp.text
    answer = [
        m
        for m in http.get(f"/api/chat/sessions/{sid}/messages", headers=auth).json()["messages"]
        if m["role"] == "assistant"
    ][-1]
    resp = http.post(
        f"/api/chat/sessions/{sid}/messages/{answer['id']}/feedback",
        json={"rating": rating, "reason": reason},
        headers=auth,
    )
    assert resp.status_code == 200, resp.text
    return chat


def test_report_page_plots_stored_conversations(browser, stack) -> None:  # type: ignore[no-untyped-def]
    base = stack.urls[0]
    word = f"pw{uuid.uuid4().hex[:6]}"
    question = f"Do you sell {word} umbrellas on the moon?"
    with httpx.Client(base_url=base, timeout=30) as http:
        happy = conversation(http, "How long do I have to return an item?", "up")
        assert (
            http.post(
                f"/api/sessions/{happy['session_id']}/rating",
                json={"score": 5},
                headers={"Authorization": f"Bearer {happy['token']}"},
            ).status_code
            == 201
        )
        conversation(http, "How do I reset my password?", "up")
        stuck = conversation(http, question, "down", "It did not know")
        auth = {"Authorization": f"Bearer {stuck['token']}"}
        assert (
            http.post(
                f"/api/sessions/{stuck['session_id']}/handoff", json={}, headers=auth
            ).status_code
            == 202
        )
    context, page, problems = signed_in_console(browser, base, "reports")
    try:
        expect(page.locator("#reports-view")).to_be_visible()
        expect(page.locator("#console")).to_be_hidden()
        charts = page.locator("#report-charts")
        expect(charts).to_have_attribute("data-loads", "1")
        period = {
            "from": page.locator("#report-from").input_value(),  # two weeks by default
            "to": page.locator("#report-to").input_value(),
            "tz": "UTC",
        }
        page.locator("#report-tz").fill("UTC")
        page.locator("#report-period button[type=submit]").click()
        expect(charts).to_have_attribute("data-loads", "2")
        totals = httpx.get(
            f"{base}/api/reports/summary", params=period, headers=STAFF, timeout=10
        ).json()
        expect(charts.locator("figure.chart svg")).to_have_count(6)
        bars = charts.locator("figure.chart").first.locator("rect.chart__bar")
        drawn = sum(float(v) for v in bars.evaluate_all("els => els.map(e => e.dataset.value)"))
        assert drawn == totals["totals"]["conversations"] >= 3
        reasons = charts.locator("figure.chart", has_text="Escalations by reason")
        assert reasons.locator("rect.chart__bar").count() == len(totals["escalation_reasons"]) >= 1
        feedback = charts.locator("figure.chart", has_text="Answer feedback per day")
        values = feedback.locator("rect.chart__bar").evaluate_all(
            "els => els.map(e => [e.dataset.series, Number(e.dataset.value)])"
        )
        assert sum(v for s, v in values if s == "Thumbs up") == totals["totals"]["thumbs_up"] >= 2
        assert sum(v for s, v in values if s == "Thumbs down") >= 1
        expect(page.locator('#report-kpis [data-kpi="conversations"] .kpi__value')).to_have_text(
            str(totals["totals"]["conversations"])
        )
        todo = page.locator("#todo-list tr", has_text=question)
        expect(todo).to_contain_text("It did not know")
        if SHOTS:
            page.set_viewport_size({"width": 1280, "height": 1640})
            page.screenshot(path=f"{SHOTS}/console-reports.png")
    finally:
        context.close()
    assert not problems, problems


def test_kb_view_lists_uploads_and_deletes_a_document(browser, stack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    base = stack.urls[0]
    word = f"kbv{uuid.uuid4().hex[:6]}"
    file = tmp_path / f"{word}.md"
    file.write_text(f"# Caring for {word} headphones\n\nWipe the {word} ear cushions weekly.\n")
    context, page, problems = signed_in_console(browser, base, "kb")
    try:
        rows = page.locator("#kb-list tr.kb__row")
        expect(page.locator("#kb-list")).to_have_attribute("data-loads", re.compile(r"[1-9]"))
        assert rows.count() >= 30  # the sample knowledge base
        expect(page.locator('#kb-list tr[data-status="done"]').first).to_contain_text("Indexed")

        page.locator("#kb-file").set_input_files(str(file))
        page.locator("#kb-submit").click()
        expect(page.locator("#kb-status")).to_contain_text("Uploaded")
        page.locator("#kb-search").fill(word)  # the file name matches until the title is known
        mine = page.locator("#kb-list tr.kb__row", has_text=word)
        expect(mine).to_have_count(1)
        expect(mine).to_have_attribute("data-status", "done")  # polled until indexed
        expect(mine.locator(".kb__title")).to_contain_text(f"Caring for {word} headphones")
        if SHOTS:
            page.locator("#kb-search").fill("")
            expect(rows).not_to_have_count(1)
            page.screenshot(path=f"{SHOTS}/console-kb.png", full_page=False)
            page.locator("#kb-search").fill(word)
            expect(mine).to_have_count(1)

        mine.locator(".kb__delete").click()
        mine.locator(".kb__confirm").click()
        expect(page.locator("#kb-status")).to_contain_text("Deleted")
        expect(mine).to_have_count(0)
    finally:
        context.close()
    assert not problems, problems
    listed = httpx.get(f"{base}/api/kb/documents", params={"q": word}, headers=STAFF).json()
    assert listed == []
