"""Small clients for the tests: HTTP via httpx, WebSocket via websocket-client."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any
from urllib.parse import urlencode

import httpx
import websocket

from tests.stack import BIN, ROOT

STAFF = {"X-API-Key": "test-staff-key"}


class Api:
    """Thin wrapper that keeps tests readable."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=40)

    def close(self) -> None:
        self.http.close()

    def create_session(self, **body: Any) -> dict:
        resp = self.http.post("/api/sessions", json=body)
        assert resp.status_code == 201, resp.text
        return resp.json()

    @staticmethod
    def auth(chat: dict) -> dict[str, str]:
        return {"Authorization": f"Bearer {chat['token']}"}

    def send(
        self, chat: dict, text: str, wait: float | None = None, **fields: Any
    ) -> httpx.Response:
        params = {"wait": wait} if wait is not None else None
        return self.http.post(
            f"/api/chat/sessions/{chat['session_id']}/messages",
            json={"message": text, **fields},
            params=params,
            headers=self.auth(chat),
        )

    def history(self, chat: dict, **params: Any) -> dict:
        resp = self.http.get(
            f"/api/chat/sessions/{chat['session_id']}/messages",
            params=params,
            headers=self.auth(chat),
        )
        assert resp.status_code == 200, resp.text
        return resp.json()

    def wait_for(self, chat: dict, predicate, timeout: float = 30) -> dict:  # type: ignore[no-untyped-def]
        """Poll history until `predicate(messages)` holds."""
        deadline = time.monotonic() + timeout
        while True:
            data = self.history(chat, limit=500)
            if predicate(data["messages"]):
                return data
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met; history: {data}")
            time.sleep(0.1)


def ws_url(base_url: str, path: str = "/ws", **params: Any) -> str:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return base_url.replace("http://", "ws://") + path + "?" + query


class Socket:
    """A WebSocket client that reads JSON events with a deadline."""

    def __init__(
        self, base_url: str, path: str = "/ws", *, origin: str | None = None, **params: Any
    ) -> None:
        """`origin`: the page's (websocket-client sends the server's own by default)."""
        self.ws = websocket.create_connection(
            ws_url(base_url, path, **params), timeout=20, origin=origin
        )
        self.seen: list[dict] = []

    def send(self, event: dict | str) -> None:
        self.ws.send(event if isinstance(event, str) else json.dumps(event))

    def recv(self, timeout: float = 20) -> dict:
        self.ws.settimeout(timeout)
        event = json.loads(self.ws.recv())
        self.seen.append(event)
        return event

    def until(self, type_: str, timeout: float = 30, **match: Any) -> list[dict]:
        """Events up to and including the first of `type_` whose fields match."""
        got: list[dict] = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {type_} {match} within {timeout}s; got {got}")
            event = self.recv(left)
            got.append(event)
            if event.get("type") == type_ and all(event.get(k) == v for k, v in match.items()):
                return got

    def quiet(self, seconds: float) -> list[dict]:
        """Everything that arrives within `seconds` (for asserting that nothing else comes)."""
        got: list[dict] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                got.append(self.recv(left))
            except websocket.WebSocketTimeoutException:
                break
        return got

    def close(self) -> None:
        self.ws.close()


def refused(base_url: str, *, origin: str | None = None, **params: Any) -> tuple[dict, int]:
    """Connect expecting a refusal: returns the error event and the close code."""
    ws = websocket.create_connection(ws_url(base_url, **params), timeout=10, origin=origin)
    try:
        event = json.loads(ws.recv())
        while True:
            opcode, frame = ws.recv_data_frame(True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return event, int.from_bytes(frame.data[:2], "big")
    finally:
        ws.close()


# The sample KB's rows (documents, chunks with their vectors) as the first import of this run
# stored them: side stacks get a copy instead of importing it again (see copy_sample_kb).
_SAMPLE_KB: tuple[list[dict], list[dict]] | None = None


def load_sample_kb(stack) -> None:  # type: ignore[no-untyped-def]
    """Import data/sample_kb through the real CLI and wait until the worker has indexed it;
    the first import's rows are kept for copy_sample_kb."""
    global _SAMPLE_KB
    subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", "kb", "import", "data/sample_kb", "--wait"],
        cwd=ROOT,
        env=stack.env,
        check=True,
        capture_output=True,
        timeout=180,
    )
    if _SAMPLE_KB is None:
        _SAMPLE_KB = _kb_rows(stack.env["DATABASE_URL"])


def _kb_rows(url: str) -> tuple[list[dict], list[dict]]:
    from sqlalchemy import select

    from models.db import make_engine
    from models.kb import KBChunk, KBDocument

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            docs = [dict(r._mapping) for r in conn.execute(select(KBDocument.__table__))]
            chunks = [dict(r._mapping) for r in conn.execute(select(KBChunk.__table__))]
    finally:
        engine.dispose()
    assert docs and chunks and all(d["status"] == "done" for d in docs), "KB not indexed"
    return docs, chunks


def copy_sample_kb(stack) -> None:  # type: ignore[no-untyped-def]
    """The sample KB for a side stack (chaos, topology, Sentinel, deployments, model engine):
    the rows this run's first import stored (same code, same settings), written into the side
    stack's database with a version bump, as an ingest leaves them. Importing it again through
    the CLI and the worker cost ~10-30 s a stack and tested nothing new: the main stack's
    import and tests/test_kb.py cover that path. Imports for real if nothing was imported yet."""
    if _SAMPLE_KB is None:
        load_sample_kb(stack)
        return
    from sqlalchemy import insert
    from sqlalchemy.orm import Session

    from models.db import make_engine
    from models.kb import KBChunk, KBDocument
    from models.kbstate import bump_version

    docs, chunks = _SAMPLE_KB
    engine = make_engine(stack.env["DATABASE_URL"])
    try:
        with Session(engine) as db:
            db.execute(insert(KBDocument.__table__), docs)
            db.execute(insert(KBChunk.__table__), chunks)
            bump_version(db)
            db.commit()
    finally:
        engine.dispose()
