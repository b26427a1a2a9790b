"""A local OpenAI-compatible server (chat completions and embeddings), so LLM and embedding
code is tested over real HTTP.

There is no API key in CI and mocks of the client would not exercise the wire protocol, timeouts
or retries; this server speaks the same JSON/SSE as api.openai.com on 127.0.0.1.

In-process use::

    with FakeOpenAI(reply="Reset it from Settings [1].", delay=0.01) as fake:
        client = OpenAI(base_url=fake.base_url, api_key="test")
        ...
        assert fake.requests[-1].json["messages"][0]["role"] == "system"

Behaviour knobs (thread-safe, take effect on the next request):

* ``set_reply(text_or_fn, delay=..., chunk_size=...)`` -- the answer; a callable receives the
  request's ``messages`` list and returns the text. Text is streamed word by word; a list of
  strings is streamed as exactly those chunks (to split a token where a test needs it).
* ``fail(status, times=None, after_chunks=None, disconnect=False)`` -- an OpenAI error JSON with
  that status (500, 429, 401...). With ``after_chunks`` the stream starts normally (HTTP 200) and
  then sends an SSE ``{"error": ...}`` event, as OpenAI does, or drops the connection mid-body
  when ``disconnect``. ``times`` limits how many requests fail (``None``: until ``reset()``).
* ``hang(times=None, after_chunks=None)`` -- accept the request and never answer (or stall
  mid-stream) until ``close()``, to exercise client timeouts.

``POST /v1/embeddings`` answers ``{"data": [{"index", "embedding"}...], "model", "usage"}`` with
a deterministic bag-of-words vector per input (`fake_embedding`: each lower-cased word adds 1 to
one of `EMBEDDING_DIM` hashed dimensions), so texts sharing words are close; ``fail`` and
``hang`` apply to it as to chat.

Standalone (for a worker subprocess pointed at it through ``OPENAI_BASE_URL``)::

    python tests/fake_openai.py --port 8089 --delay 0.2 --reply "..."

prints ``FAKE_OPENAI_READY <base_url>`` on stdout once it accepts connections.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ReplyText = str | list[str]  # a list is streamed as exactly those chunks
ReplyT = ReplyText | Callable[[list[dict[str, Any]]], ReplyText]

DEFAULT_REPLY = "This is a reply from the fake OpenAI server."
EMBEDDING_DIM = 64


def fake_embedding(text: str) -> list[float]:
    """A stable, unnormalised bag-of-words vector (the same text always gives the same one)."""
    import hashlib

    vec = [0.0] * EMBEDDING_DIM
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        bucket = int.from_bytes(hashlib.md5(word.encode()).digest()[:4], "little")  # noqa: S324
        vec[bucket % EMBEDDING_DIM] += 1.0
    return vec


_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided: sk-***."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests. Please try again in 20ms.",
    ),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later"),
}


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    """OpenAI's error envelope, so clients map it to the right exception class."""
    kind, code, default = _ERRORS.get(status, ("server_error", None, f"HTTP {status}"))
    return {"error": {"message": message or default, "type": kind, "param": None, "code": code}}


def split_tokens(text: ReplyText, chunk_size: int = 1) -> list[str]:
    """Word-plus-trailing-space pieces, the granularity real streams roughly have."""
    if isinstance(text, list):
        return list(text)
    words = re.findall(r"\s*\S+\s*|\s+", text)
    if chunk_size <= 1:
        return words
    return ["".join(words[i : i + chunk_size]) for i in range(0, len(words), chunk_size)]


@dataclass(frozen=True)
class Behaviour:
    """How one request is answered; immutable so a request sees a consistent snapshot."""

    reply: ReplyT = DEFAULT_REPLY
    delay: float = 0.0
    chunk_size: int = 1
    status: int | None = None  # error status to return instead of the reply
    error_message: str | None = None
    after_chunks: int | None = None  # with status/hang: fail or stall mid-stream
    disconnect: bool = False  # mid-stream failure drops the connection instead of an error event
    hang: bool = False
    retry_after_ms: int | None = None


@dataclass
class RecordedRequest:
    """What the server received, for assertions on prompts, headers and parameters."""

    method: str
    path: str
    headers: dict[str, str]
    json: dict[str, Any] | None
    received_at: float = field(default_factory=time.monotonic)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The chat messages sent (empty for non-chat requests)."""
        return list((self.json or {}).get("messages", []))

    @property
    def text(self) -> str:
        """All message contents joined, for quick `in` checks on the prompt."""
        return "\n".join(_content_text(m.get("content")) for m in self.messages)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # hung handlers must not block close()
    allow_reuse_address = True
    fake: FakeOpenAI

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients dropping keep-alive connections (timeouts, closes) are normal, not errors."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive + chunked streaming like the real API
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Keep test output clean; requests are recorded on the FakeOpenAI object instead."""

    # -- routing ---------------------------------------------------------------------------
    def do_GET(self) -> None:
        """Serve the models list (clients and health checks probe it)."""
        fake = self.server.fake
        fake._record(self, None)
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            created = int(fake.started_at)
            data = [{"id": fake.model, "object": "model", "created": created, "owned_by": "fake"}]
            self._send_json(200, {"object": "list", "data": data})
        else:
            self._send_json(404, error_body(404, f"Unknown path {self.path}"))

    def do_POST(self) -> None:
        """Serve chat completions, streaming or not, per the current behaviour."""
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            fake._record(self, None)
            self._send_json(400, error_body(400, "We could not parse the JSON body."))
            return
        fake._record(self, body)
        if self.path.rstrip("/") in ("/v1/embeddings", "/embeddings"):
            self._embeddings(fake, body)
            return
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._send_json(404, error_body(404, f"Unknown path {self.path}"))
            return
        if fake.api_key is not None:
            if self.headers.get("Authorization", "") != f"Bearer {fake.api_key}":
                self._send_json(401, error_body(401))
                return
        beh = fake._next_behaviour()
        if beh.hang and beh.after_chunks is None:
            fake._closed.wait()
            self.close_connection = True
            return
        if beh.status is not None and beh.after_chunks is None:
            headers = {}
            if beh.retry_after_ms is not None:
                headers["retry-after-ms"] = str(beh.retry_after_ms)
            self._send_json(beh.status, error_body(beh.status, beh.error_message), headers)
            return
        reply = beh.reply(body.get("messages", [])) if callable(beh.reply) else beh.reply
        chunks = split_tokens(reply, beh.chunk_size)
        reply = "".join(chunks)
        model = body.get("model") or fake.model
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self._stream(beh, chunks, model, include_usage, body)
        else:
            self._complete(beh, reply, model, body)

    def _embeddings(self, fake: FakeOpenAI, body: dict[str, Any]) -> None:
        """OpenAI's embeddings response for a string or a list of strings."""
        if fake.api_key is not None:
            if self.headers.get("Authorization", "") != f"Bearer {fake.api_key}":
                self._send_json(401, error_body(401))
                return
        beh = fake._next_behaviour()
        if beh.hang:
            fake._closed.wait()
            self.close_connection = True
            return
        if beh.status is not None:
            self._send_json(beh.status, error_body(beh.status, beh.error_message))
            return
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not all(isinstance(t, str) for t in inputs):
            self._send_json(400, error_body(400, "'input' must be a string or a list of strings"))
            return
        data = [
            {"object": "embedding", "index": i, "embedding": fake_embedding(t)}
            for i, t in enumerate(inputs)
        ]
        tokens = sum(len(t.split()) for t in inputs)
        self._send_json(
            200,
            {
                "object": "list",
                "data": data,
                "model": body.get("model") or fake.model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    # -- responses -------------------------------------------------------------------------
    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", f"req_{uuid.uuid4().hex[:24]}")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _complete(self, beh: Behaviour, reply: str, model: str, body: dict[str, Any]) -> None:
        if beh.delay:
            if self.server.fake._closed.wait(beh.delay * len(split_tokens(reply))):
                return
        payload = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(body, reply),
            "system_fingerprint": "fp_fake",
        }
        self._send_json(200, payload)

    def _stream(
        self,
        beh: Behaviour,
        chunks: list[str],
        model: str,
        include_usage: bool,
        body: dict[str, Any],
    ) -> None:
        fake = self.server.fake
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-request-id", f"req_{uuid.uuid4().hex[:24]}")
        self.end_headers()
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_fake",
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            extra = {"usage": None} if include_usage else {}
            return {**base, "choices": [choice], **extra}

        try:
            self._event(chunk({"role": "assistant", "content": "", "refusal": None}))
            for n, piece in enumerate(chunks):
                if beh.after_chunks is not None and n >= beh.after_chunks:
                    self._fail_mid_stream(beh)
                    return
                if beh.delay and fake._closed.wait(beh.delay):
                    return
                self._event(chunk({"content": piece}))
            if beh.after_chunks is not None:  # reply shorter than after_chunks: fail at the end
                self._fail_mid_stream(beh)
                return
            self._event(chunk({}, "stop"))
            if include_usage:
                usage = _usage(body, "".join(chunks))
                self._event({**base, "choices": [], "usage": usage})
            self._write_chunk(b"data: [DONE]\n\n")
            self._write_chunk(b"")  # end of chunked body
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away (e.g. its timeout fired)

    def _fail_mid_stream(self, beh: Behaviour) -> None:
        self.close_connection = True
        if beh.hang:
            self.server.fake._closed.wait()
            return
        if beh.disconnect:
            self.wfile.flush()
            return  # closing without the terminating zero-length chunk: an incomplete body
        self._event(error_body(beh.status or 500, beh.error_message))
        self._write_chunk(b"")

    def _event(self, payload: dict[str, Any]) -> None:
        self._write_chunk(b"data: " + json.dumps(payload).encode() + b"\n\n")

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


def _usage(body: dict[str, Any], reply: str) -> dict[str, int]:
    prompt = sum(len(_content_text(m.get("content")).split()) for m in body.get("messages", []))
    completion = len(reply.split())
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


class FakeOpenAI:
    """An OpenAI-compatible server on 127.0.0.1 in a background thread; starts on creation."""

    def __init__(
        self,
        reply: ReplyT = DEFAULT_REPLY,
        *,
        delay: float = 0.0,
        chunk_size: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
        model: str = "gpt-4o-mini",
        api_key: str | None = None,
    ) -> None:
        self.model = model
        self.api_key = api_key  # when set, requests without this bearer token get a 401
        self.requests: list[RecordedRequest] = []
        self.started_at = time.time()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._default = Behaviour(reply=reply, delay=delay, chunk_size=chunk_size)
        self._overrides: list[list[Any]] = []  # [Behaviour, remaining count or None]
        self._server = _Server((host, port), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    # -- addresses -------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The bound port (useful when created with port 0)."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Server root, without the /v1 prefix."""
        return f"http://{self._server.server_address[0]}:{self.port}"

    @property
    def base_url(self) -> str:
        """What to pass as OPENAI_BASE_URL / api_base_url."""
        return f"{self.url}/v1"

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """Only the chat-completion calls (retries appear as separate entries)."""
        with self._lock:
            return [r for r in self.requests if r.path.rstrip("/").endswith("chat/completions")]

    @property
    def last_request(self) -> RecordedRequest:
        """The most recent chat-completion call."""
        return self.chat_requests[-1]

    # -- behaviour -------------------------------------------------------------------------
    def set_reply(
        self, reply: ReplyT, *, delay: float | None = None, chunk_size: int | None = None
    ) -> None:
        """Change the default answer (and optionally pacing) for subsequent requests."""
        with self._lock:
            self._default = replace(
                self._default,
                reply=reply,
                delay=self._default.delay if delay is None else delay,
                chunk_size=self._default.chunk_size if chunk_size is None else chunk_size,
            )

    def set_delay(self, delay: float) -> None:
        """Seconds between streamed chunks (so a test can act mid-stream)."""
        with self._lock:
            self._default = replace(self._default, delay=delay)

    def fail(
        self,
        status: int = 500,
        *,
        times: int | None = None,
        after_chunks: int | None = None,
        disconnect: bool = False,
        message: str | None = None,
        retry_after_ms: int | None = None,
    ) -> None:
        """Answer the next `times` requests (None: all until reset) with an error."""
        self._push(
            Behaviour(
                status=status,
                after_chunks=after_chunks,
                disconnect=disconnect,
                error_message=message,
                retry_after_ms=retry_after_ms,
            ),
            times,
        )

    def hang(self, *, times: int | None = None, after_chunks: int | None = None) -> None:
        """Never answer the next `times` requests (or stall after some chunks) until close()."""
        self._push(Behaviour(hang=True, after_chunks=after_chunks), times)

    def reset(self) -> None:
        """Drop pending failures/hangs and recorded requests; keep the reply."""
        with self._lock:
            self._overrides.clear()
            self.requests.clear()

    def _push(self, beh: Behaviour, times: int | None) -> None:
        with self._lock:
            self._overrides.append([beh, times])

    def _next_behaviour(self) -> Behaviour:
        with self._lock:
            d = self._default
            if not self._overrides:
                return d
            beh, remaining = self._overrides[0]
            if remaining is not None:
                if remaining <= 1:
                    self._overrides.pop(0)
                else:
                    self._overrides[0][1] = remaining - 1
            # failures keep the current reply/pacing so a mid-stream failure streams real text
            return replace(beh, reply=d.reply, delay=d.delay, chunk_size=d.chunk_size)

    def _record(self, handler: BaseHTTPRequestHandler, body: dict[str, Any] | None) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        req = RecordedRequest(handler.command, handler.path, headers, body)
        with self._lock:
            self.requests.append(req)

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        """Stop serving and release hung handlers; idempotent."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def iter_requests(self) -> Iterator[RecordedRequest]:
        """A snapshot iterator over recorded requests (safe while the server runs)."""
        with self._lock:
            snapshot = list(self.requests)
        return iter(snapshot)


def main(argv: list[str] | None = None) -> int:
    """Run the fake server in the foreground until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(description="Local fake of the OpenAI chat-completions API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--reply", default=DEFAULT_REPLY, help="text to answer every request with")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds between stream chunks")
    parser.add_argument("--chunk-size", type=int, default=1, help="words per stream chunk")
    parser.add_argument("--model", default="gpt-4o-mini")
    parser.add_argument("--api-key", default=None, help="require this bearer token")
    parser.add_argument("--fail-status", type=int, default=None, help="answer every call with it")
    parser.add_argument("--hang", action="store_true", help="never answer chat requests")
    args = parser.parse_args(argv)

    fake = FakeOpenAI(
        args.reply,
        delay=args.delay,
        chunk_size=args.chunk_size,
        host=args.host,
        port=args.port,
        model=args.model,
        api_key=args.api_key,
    )
    if args.fail_status is not None:
        fake.fail(args.fail_status)
    if args.hang:
        fake.hang()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"FAKE_OPENAI_READY {fake.base_url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        fake.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
