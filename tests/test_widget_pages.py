"""The widget's server side: who may frame the chat (CSP frame-ancestors), who may open its
sockets (Origin), the loader script, branding, and one timestamp format everywhere."""

from __future__ import annotations

import json
import re

import websocket

from tests.client import Socket, ws_url
from tests.conftest import WIDGET_ORIGIN

ISO_WITH_ZONE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def _frame_ancestors(csp: str) -> list[str]:
    part = next(p for p in csp.split(";") if p.strip().startswith("frame-ancestors"))
    return part.split()[1:]


def test_only_widget_origins_may_frame_the_chat(api) -> None:  # type: ignore[no-untyped-def]
    page = api.http.get("/")
    assert _frame_ancestors(page.headers["Content-Security-Policy"]) == ["'self'"]
    embed = api.http.get("/embed", params={"origin": WIDGET_ORIGIN, "lang": "fr"})
    assert embed.status_code == 200
    csp = embed.headers["Content-Security-Policy"]
    assert _frame_ancestors(csp) == ["'self'", WIDGET_ORIGIN]
    assert "script-src" not in csp and "default-src 'self'" in csp  # no inline script
    assert f'data-parent-origin="{WIDGET_ORIGIN}"' in embed.text
    assert 'data-lang="fr"' in embed.text and 'data-embedded="true"' in embed.text
    # A page elsewhere gets no bridge: the frame will not even tell it an unread count.
    foreign = api.http.get("/embed", params={"origin": "https://evil.example", "lang": "xx"})
    assert 'data-parent-origin=""' in foreign.text and 'data-lang=""' in foreign.text


def test_widget_loader_is_a_script_with_the_branding(api) -> None:  # type: ignore[no-untyped-def]
    resp = api.http.get("/widget.js")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/javascript")
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    config = json.loads(re.search(r"var CONFIG = (\{.*?\});", resp.text).group(1))
    assert config == {"name": "Helpline Support", "color": "", "language": "en"}
    # Its strings are the chat's own modules, fetched cross-origin by the host page.
    strings = api.http.get("/static/shared/i18n.js", headers={"Origin": WIDGET_ORIGIN})
    assert strings.headers["Access-Control-Allow-Origin"] == "*"
    page = api.http.get("/")
    assert 'class="chip" data-suggestion>How long does a refund take?</button>' in page.text


def test_socket_origin_check_follows_widget_origins(api, chat) -> None:  # type: ignore[no-untyped-def]
    params = {"session_id": chat["session_id"], "token": chat["token"]}
    allowed = websocket.create_connection(
        ws_url(api.base_url, **params), timeout=10, origin=WIDGET_ORIGIN
    )
    try:
        assert json.loads(allowed.recv())["type"] == "connected"
    finally:
        allowed.close()
    refused = websocket.create_connection(
        ws_url(api.base_url, **params), timeout=10, origin="http://127.0.0.1:1"
    )
    try:
        event = json.loads(refused.recv())
        assert event["type"] == "error" and event["code"] == "origin_not_allowed", event
        opcode, frame = refused.recv_data_frame(True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(frame.data[:2], "big") == 4003
    finally:
        refused.close()


def test_every_timestamp_has_a_zone(api, chat) -> None:  # type: ignore[no-untyped-def]
    session = api.http.get(f"/api/sessions/{chat['session_id']}", headers=api.auth(chat)).json()
    assert ISO_WITH_ZONE.match(chat["created_at"]) and ISO_WITH_ZONE.match(session["created_at"])
    sock = Socket(api.base_url, session_id=chat["session_id"], token=chat["token"])
    try:
        sock.until("connected")
        sock.send({"type": "message", "content": "How do I track my order?"})
        events = sock.until("complete")
    finally:
        sock.close()
    stamps = [e["timestamp"] for e in events] + [events[-1]["message"]["timestamp"]]
    history = api.history(chat)["messages"]
    stamps += [m["timestamp"] for m in history]
    assert stamps and all(ISO_WITH_ZONE.match(s) for s in stamps), stamps
    # The same instant reads the same over the socket and in the history.
    reply = next(m for m in history if m["role"] == "assistant")
    assert reply["timestamp"] == events[-1]["message"]["timestamp"]


def test_branding_reaches_the_page_without_code_changes(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from models.settings import get_settings
    from webapp import create_app

    monkeypatch.setenv("BRAND_NAME", "Brightwave Help")
    monkeypatch.setenv("BRAND_COLOR", "#0a7d55")
    monkeypatch.setenv("BRAND_LOGO_URL", "https://cdn.brightwave.example/logo.svg")
    monkeypatch.setenv("WELCOME_TEXT", "Ask us <anything> about your order.")
    monkeypatch.setenv("SUGGESTED_QUESTIONS", "Where is my parcel?|Can I pay by invoice?")
    try:
        app = create_app({"HELPLINE": get_settings(reload=True), "TESTING": True})
        page = app.test_client().get("/")
        text = page.get_data(as_text=True)
        assert "<title>Brightwave Help</title>" in text
        assert '<h1 class="brand__title">Brightwave Help</h1>' in text
        assert 'data-brand-color="#0a7d55"' in text
        assert 'src="https://cdn.brightwave.example/logo.svg"' in text
        assert "Ask us &lt;anything&gt; about your order." in text  # text, never HTML
        assert text.count("data-suggestion>") == 2 and "Can I pay by invoice?" in text
        csp = page.headers["Content-Security-Policy"]
        assert "img-src 'self' data: https://cdn.brightwave.example;" in csp
        loader = app.test_client().get("/widget.js").get_data(as_text=True)
        assert '"color": "#0a7d55"' in loader and '"name": "Brightwave Help"' in loader
    finally:
        monkeypatch.undo()
        get_settings(reload=True)
