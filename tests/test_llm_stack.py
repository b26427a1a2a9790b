"""A worker configured for an OpenAI-compatible model: streaming through the socket, falling
back to the offline engine when the model fails, and surviving kill -9 mid-answer.

A stack of its own (database, Redis db, channel prefix) so the LLM-configured worker never
touches the main suite's tasks. The model is the local OpenAI-protocol test server (the one
allowed stand-in: a paid external API), streaming SSE like the real one.
"""

from __future__ import annotations

import time

import pytest

from tests.client import Api, Socket
from tests.conftest import side_stack
from tests.fake_openai import FakeOpenAI

REPLY = (
    "You can return most items within 30 days of delivery [1]. Start the return from your "
    "account's order page and print the label [1]. Refunds follow once it arrives [1]."
)


@pytest.fixture(scope="module")
def crash_stack(logdir):  # type: ignore[no-untyped-def]
    fake = FakeOpenAI(REPLY, delay=0.12, chunk_size=2)
    env = {
        "LLM_PROVIDER": "openai",
        "OPENAI_BASE_URL": fake.base_url,
        "OPENAI_API_KEY": "test-key",
        "LLM_TIMEOUT": "10",
        "AGENT_LEASE_SECONDS": "3",
    }
    try:
        with side_stack(logdir, "crash", env) as stack:
            yield stack, fake
    finally:
        fake.close()


def open_chat(stack):  # type: ignore[no-untyped-def]
    api = Api(stack.urls[0])
    chat = api.create_session()
    sock = Socket(api.base_url, session_id=chat["session_id"], token=chat["token"])
    assert sock.recv()["type"] == "connected"
    return api, chat, sock


def test_model_tokens_stream_through_the_socket(crash_stack):
    stack, fake = crash_stack
    fake.set_reply(REPLY, delay=0.0, chunk_size=3)
    api, chat, sock = open_chat(stack)
    sock.send({"type": "message", "content": "How long do I have to return an item?"})
    events = sock.until("complete", timeout=30)
    deltas = [e["content"] for e in events if e["type"] == "text"]
    assert len(deltas) >= 8 and "".join(deltas) == REPLY
    message = events[-1]["message"]
    assert message["content"] == REPLY
    assert [s["index"] for s in message["sources"]] == [1]
    assert message["metadata"]["engine"] == "openai"
    prompt = fake.last_request.text
    assert "How long do I have to return an item?" in prompt and "[1]" in prompt
    sock.close()
    api.close()


def test_model_failure_falls_back_to_offline_answer(crash_stack):
    stack, fake = crash_stack
    fake.set_reply(REPLY, delay=0.0)
    fake.fail(500, times=1)
    api, chat, sock = open_chat(stack)
    sock.send({"type": "message", "content": "How do I reset my password?"})
    done = sock.until("complete", timeout=30)[-1]["message"]
    assert done["metadata"]["fallback"] == "offline"
    assert done["sources"] and done["content"] != REPLY
    sock.close()
    api.close()


@pytest.mark.slow
def test_worker_killed_mid_answer_still_answers_once(crash_stack):
    stack, fake = crash_stack
    fake.set_reply(REPLY, delay=0.12, chunk_size=2)
    api, chat, sock = open_chat(stack)
    sent_before = len(fake.chat_requests)
    sock.send({"type": "message", "content": "How long do I have to return an item?"})
    before_kill = sock.until("text", timeout=30)
    message_id = before_kill[0]["message_id"]
    stack.kill_worker()
    sock.quiet(0.5)  # deltas already in flight may still arrive
    assert len(fake.chat_requests) == sent_before + 1
    # With no worker, readiness says so (and when to ask again).
    ready = api.http.get("/health/ready")
    assert ready.status_code == 503 and ready.headers["Retry-After"]
    assert ready.json()["checks"]["worker"]["ok"] is False

    stack.start_worker()
    events = sock.until("complete", timeout=60)
    starts = [e for e in events if e["type"] == "start"]
    assert starts, "the new worker starts the answer again (clients reset on start)"
    done = events[-1]
    assert done["message"]["content"] == REPLY
    assert done["message"]["reply_to_id"] == message_id
    assert len(fake.chat_requests) == sent_before + 2

    # A redelivered copy of the task must not answer twice.
    client = stack.celery()
    copy = client.send_task(
        "helpline.generate_reply", args=[message_id], queue=stack.queue("agent")
    )
    client.close()
    finished_in_log(stack, copy.id)  # the worker has run it to the end
    assert all(e["type"] != "complete" for e in sock.quiet(0.5))
    messages = api.history(chat)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[0]["status"] == "done"
    assert len(fake.chat_requests) == sent_before + 2
    sock.close()
    api.close()


def finished_in_log(stack, task_id: str, timeout: float = 30) -> str:  # type: ignore[no-untyped-def]
    """The worker's log line saying task `task_id` ended (succeeded or failed)."""
    deadline = time.monotonic() + timeout
    while True:
        for path in stack.logdir.glob(f"{stack.name}-worker*.log"):
            for line in path.read_text(errors="replace").splitlines():
                if f"[{task_id}]" in line and ("succeeded" in line or "failed" in line):
                    return line
        assert time.monotonic() < deadline, f"task {task_id} never finished\n{stack.tail()}"
        time.sleep(0.1)


def decided(api: Api, chat: dict, message_id: str, timeout: float = 30) -> dict:
    """The customer message once the worker has closed it (answered, or silent for a person)."""
    deadline = time.monotonic() + timeout
    while True:
        mine = [m for m in api.history(chat)["messages"] if m["id"] == message_id]
        if mine and mine[0]["status"] == "done":
            return mine[0]
        assert time.monotonic() < deadline, f"message {message_id} still open: {mine}"
        time.sleep(0.1)


def test_handoff_with_the_model_engine_never_asks_the_model(crash_stack):
    """The escalation policy runs before any engine: a request for a person opens a ticket,
    and while a person owns the chat the model is not called at all."""
    stack, fake = crash_stack
    fake.set_reply(REPLY, delay=0.0)
    api, chat, sock = open_chat(stack)
    before = len(fake.chat_requests)
    sock.send({"type": "message", "content": "can I speak to a real person please"})
    escalation = sock.until("escalation")[-1]
    assert escalation["required"] and "explicit_request" in escalation["reasons"]
    staff = {"X-API-Key": "sam-key"}
    claimed = api.http.post(f"/api/tickets/{escalation['ticket_id']}/claim", headers=staff)
    assert claimed.status_code == 200
    sock.until("agent_joined")
    sock.send({"type": "message", "content": "How long do I have to return an item?"})
    message_id = sock.until("acknowledged")[-1]["message_id"]
    decided(api, chat, message_id)  # the worker has run the policy on it and stayed silent
    assert not [e for e in sock.quiet(0.5) if e["type"] in ("start", "complete")]
    assert len(fake.chat_requests) == before

    resolved = api.http.post(f"/api/tickets/{escalation['ticket_id']}/resolve", headers=staff)
    assert resolved.status_code == 200
    sock.until("agent_left")
    sock.send({"type": "message", "content": "How long do I have to return an item?"})
    done = sock.until("complete")[-1]["message"]
    assert done["content"] == REPLY and len(fake.chat_requests) == before + 1
    sock.close()
    api.close()
