"""Operator-facing pages in headless Chromium: the API docs (Swagger UI served locally), the
favicon, and the console's knowledge-base and report views, against the real stack."""

from __future__ import annotations

from urllib.parse import urlparse

import httpx
import pytest
from playwright import sync_api

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
