"""The OpenAPI document is the truth: schemathesis drives every operation of the live stack
from `/api/openapi.json` and checks each answer against it (no server error, a documented
status and content type, a body and headers that match the documented schema).

Generated requests are aimed at real resources so they reach past the id checks: most carry
the id of a real session, ticket, attachment or document and real credentials (the session's
bearer token, or the staff key), some keep the generated id or send no credentials at all.
Operations that would spoil a shared session (end, delete, rate, take over) get a fresh
session per example. Everything the run creates is deleted at the end.

Bounded for CI: a fixed seed, derandomized, a few examples per operation, no deadline.
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.client import STAFF
from tests.conftest import STAFF_KEY

# A deeper hunt: OPENAPI_EXAMPLES=300 OPENAPI_SEED=7 pytest tests/test_openapi.py --timeout 0
EXAMPLES = int(os.environ.get("OPENAPI_EXAMPLES", "20"))
SEED = int(os.environ.get("OPENAPI_SEED", "20261201"))


@schemathesis.check
def status_code_listed(ctx, response, case) -> None:  # type: ignore[no-untyped-def]
    """Stricter than status_code_conformance, which any status passes once `default` is
    documented: every status but 500 must be listed for the operation itself."""
    if case.method.upper() != case.operation.method.upper():
        return  # a probe with an undocumented method (405 is fine there)
    listed = case.operation.responses.status_codes
    if response.status_code != 500 and str(response.status_code) not in listed:
        raise AssertionError(
            f"{case.operation.label} answered {response.status_code}, not among {listed}"
        )


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    status_code_listed,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]

# A fresh session per example: these end, delete, rate once or hand the session to a person.
FRESH_SESSION = {
    ("PATCH", "/api/sessions/{session_id}"),
    ("DELETE", "/api/sessions/{session_id}"),
    ("POST", "/api/sessions/{session_id}/rating"),
    ("POST", "/api/sessions/{session_id}/takeover"),
}
STAFF_ONLY_PREFIXES = (
    "/api/kb",
    "/api/tickets",
    "/api/console",
    "/api/webhooks",
    "/api/reports",
)
LONGEST_WAIT = 3.0  # seconds of `?wait=`: valid, without a 30 s wait per example


class World:
    """Real resources for generated requests to aim at, and a record of what they create."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.sessions: list[str] = []
        self.documents: list[str] = []
        self.turns: dict[str, Iterator[int]] = defaultdict(itertools.count)
        self.statuses: dict[str, list[int]] = defaultdict(list)
        self.chat = self.new_session()
        self.tickets_chat = self.new_session()
        ticket = self.http.post(
            f"/api/sessions/{self.tickets_chat['session_id']}/takeover", headers=STAFF
        )
        assert ticket.status_code == 201, ticket.text
        self.ticket_id = ticket.json()["id"]
        upload = self.http.post(
            "/api/chat/upload",
            data={"session_id": self.chat["session_id"]},
            files={"file": ("note.txt", b"My order has not arrived.", "text/plain")},
            headers=self.bearer(self.chat),
        )
        assert upload.status_code == 202, upload.text
        self.attachment_id = upload.json()["attachment_id"]
        asked = self.http.post(
            f"/api/chat/sessions/{self.chat['session_id']}/messages",
            json={"message": "Do you ship to Norway?"},
            headers=self.bearer(self.chat),
        )
        assert asked.status_code == 202, asked.text
        self.answer_id = self.bot_answer(self.chat)
        self.document_id = self.new_document("Opening hours")
        self.doomed_document_id = self.new_document("To be deleted")

    def bot_answer(self, chat: dict, timeout: float = 60) -> str:
        """The id of the bot's answer in `chat` (what the feedback operation rates)."""
        deadline = time.monotonic() + timeout
        while True:
            history = self.http.get(
                f"/api/chat/sessions/{chat['session_id']}/messages", headers=self.bearer(chat)
            ).json()["messages"]
            answers = [m["id"] for m in history if m["role"] == "assistant"]
            if answers:
                return answers[0]
            assert time.monotonic() < deadline, history
            time.sleep(0.2)

    def new_session(self) -> dict:
        resp = self.http.post("/api/sessions", json={"user_id": "openapi-test"})
        assert resp.status_code == 201, resp.text
        self.sessions.append(resp.json()["session_id"])
        return resp.json()

    def new_document(self, title: str) -> str:
        body = {"title": title, "text": f"{title}: a document of the OpenAPI test."}
        resp = self.http.post("/api/kb/documents", json=body, headers=STAFF)
        assert resp.status_code == 202, resp.text
        self.documents.append(resp.json()["id"])
        return resp.json()["id"]

    @staticmethod
    def bearer(chat: dict) -> dict[str, str]:
        return {"Authorization": f"Bearer {chat['token']}"}

    def aim(self, case: schemathesis.Case) -> None:
        """Real ids and credentials for three examples in four; the generated ones (and, now
        and then, no credentials) for the rest."""
        method, path = case.method.upper(), case.path
        turn = next(self.turns[f"{method} {path}"])
        generated = turn % 4 == 3
        chat = self.new_session() if (method, path) in FRESH_SESSION else self.chat
        params = case.path_parameters or {}
        if not generated:
            real = {
                "session_id": chat["session_id"],
                "ticket_id": self.ticket_id,
                "attachment_id": self.attachment_id,
                "message_id": self.answer_id,
                "document_id": self.doomed_document_id if method == "DELETE" else self.document_id,
            }
            for name in params.keys() & real.keys():
                params[name] = real[name]
            if path == "/api/chat/upload" and isinstance(case.body, dict):
                case.body["session_id"] = chat["session_id"]
        if path.endswith("/messages") and method == "POST" and not generated:
            query = case.query if case.query is not None else {}
            wait = query.get("wait")
            if turn % 2 == 0 or (isinstance(wait, int | float) and wait > LONGEST_WAIT):
                query["wait"] = LONGEST_WAIT  # the 200 reply (ChatResponse), soon enough
            case.query = query
        headers = case.headers if case.headers is not None else {}
        headers.pop("Authorization", None)
        headers.pop("X-API-Key", None)
        staff = path.startswith(STAFF_ONLY_PREFIXES) or (method, path) in {
            ("GET", "/api/sessions"),
            ("POST", "/api/sessions/{session_id}/takeover"),
        }
        if turn % 7 == 6:
            pass  # no credentials: 401 where they are needed
        elif staff or turn % 3 == 2:
            headers["X-API-Key"] = STAFF_KEY
        else:
            headers.update(self.bearer(chat))
        case.headers = headers

    def record(self, case: schemathesis.Case, response: Any) -> None:
        """Remember what a request created, for the clean-up."""
        self.statuses[f"{case.method.upper()} {case.path}"].append(response.status_code)
        if case.method.upper() != "POST" or response.status_code not in (200, 201, 202):
            return
        if case.path == "/api/sessions":
            self.sessions.append(response.json()["session_id"])
        elif case.path == "/api/kb/documents":
            self.documents.append(response.json()["id"])

    def clean_up(self) -> None:
        for label, codes in sorted(self.statuses.items()):
            print(f"{label}: {len(codes)} requests, statuses {sorted(set(codes))}")
        for session_id in self.sessions:
            self.http.delete(f"/api/sessions/{session_id}", headers=STAFF)
        for document_id in dict.fromkeys(self.documents):
            self.http.delete(f"/api/kb/documents/{document_id}", headers=STAFF)


@pytest.fixture(scope="module")
def world(stack) -> Iterator[World]:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=stack.urls[0], timeout=30) as http:
        w = World(http)
        try:
            yield w
        finally:
            w.clean_up()


@pytest.fixture(scope="module")
def openapi(stack, world):  # type: ignore[no-untyped-def]
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "base-url": stack.urls[0],
            "phases": {"stateful": {"enabled": False}},
            "generation": {"mode": "all", "deterministic": True, "database": "none"},
        }
    )
    return schemathesis.openapi.from_url(f"{stack.urls[0]}/api/openapi.json", config=config)


schema = schemathesis.pytest.from_fixture("openapi")


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request):  # type: ignore[no-untyped-def]
    """schemathesis 4.32 renames the running test through `_nodeid`, gone in pytest 9.2."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_documented(case, world) -> None:  # type: ignore[no-untyped-def]
    world.aim(case)
    response = case.call_and_validate(checks=CHECKS, timeout=30)
    world.record(case, response)


def test_the_document_uses_our_error_schema_everywhere(api) -> None:  # type: ignore[no-untyped-def]
    doc = api.http.get("/api/openapi.json").json()
    responses = doc["components"]["responses"]
    for name, response in responses.items():
        assert response["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ApiError"
        }, name
    assert "Error" not in doc["components"]["schemas"]  # flask-smorest's own is gone
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            codes = set(op["responses"])
            assert "default" in codes and "414" in codes, (method, path)
            if "{session_id}" in path:
                assert {"400", "401", "404"} <= codes, (method, path)
            if op.get("security") == [{"staffKey": []}]:
                assert "401" in codes, (method, path)
    assert "Retry-After" in responses["TOO_MANY_REQUESTS"]["headers"]
    assert "Retry-After" in responses["SERVICE_UNAVAILABLE"]["headers"]


def test_errors_match_the_schema_on_every_path(api, chat) -> None:  # type: ignore[no-untyped-def]
    """werkzeug's 404/405/413, flask-smorest's 422, our 400/401 and the long-URI 414."""
    huge = b"x" * (11 * 1024 * 1024)
    cases = [
        (api.http.get("/api/nothing-here"), 404, "not_found"),
        (api.http.put("/api/sessions"), 405, "method_not_allowed"),
        (api.http.post("/api/sessions", json={"metadata": "no"}), 422, "invalid_fields"),
        (
            api.http.post(
                "/api/sessions", content=b"{", headers={"Content-Type": "application/json"}
            ),
            400,
            "invalid_json",
        ),
        (api.http.get("/api/sessions/undefined"), 400, "malformed_session_id"),
        (api.http.get(f"/api/sessions/{uuid.uuid4()}"), 401, "missing_token"),
        (api.http.get("/api/sessions/" + "a" * 5000), 414, "uri_too_long"),
        (
            api.http.post(
                "/api/chat/upload",
                files={"file": ("big.txt", huge, "text/plain")},
                data={"session_id": chat["session_id"]},
                headers=api.auth(chat),
            ),
            413,
            "too_large",
        ),
    ]
    for resp, status, code in cases:
        assert resp.status_code == status, (status, resp.text[:200])
        assert resp.headers["Content-Type"] == "application/json", status
        body = resp.json()
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
        assert body["error"]["code"] == code, body
    allowed = cases[1][0].headers["Allow"]
    assert "POST" in allowed and "GET" in allowed
    # Past gunicorn's request-line limit the HTTP server answers, as the 414 response says.
    beyond = api.http.get("/api/sessions/" + "a" * 8200)
    assert beyond.status_code == 414 and beyond.headers["Content-Type"] == "text/html"


def test_timestamps_carry_their_offset(api, chat) -> None:  # type: ignore[no-untyped-def]
    """One format on both databases: ISO 8601 in UTC ending in Z, wherever a timestamp is."""
    import re

    stamp = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
    session = api.http.get(f"/api/sessions/{chat['session_id']}", headers=api.auth(chat)).json()
    doc = api.http.post(
        "/api/kb/documents", json={"title": "Stamp", "text": "A stamped document."}, headers=STAFF
    ).json()
    try:
        sent = api.send(chat, "Do you ship to Norway?", wait=10)
        assert sent.status_code == 200, sent.text
        history = api.history(chat)["messages"]
        stamps = [session["created_at"], session["updated_at"], doc["created_at"]]
        stamps += [doc["updated_at"], sent.json()["timestamp"]]
        stamps += [m["timestamp"] for m in history]
        for value in stamps:
            assert stamp.match(value), value
    finally:
        api.http.delete(f"/api/kb/documents/{doc['id']}", headers=STAFF)
