"""A socket fuzzer: 1,000 malformed frames while another customer chats.

Every frame is answered by an `error` event (or a `pong` for a valid ping) on a socket that
stays open: the server never writes an HTTP response into an upgraded stream, never closes
the socket for a bad frame, and the other customer is answered throughout.
"""

from __future__ import annotations

import json
import random
import threading

import pytest

from tests.client import Socket

FRAMES = 1000
SEED = 20261201
REPLY_STREAM = {"start", "status", "sources", "text", "complete", "escalation", "user_message"}


def _nested(rng: random.Random) -> str:
    depth = rng.choice([50, 500, 5000, 30000])
    opener = rng.choice(["[", '{"a":'])
    closer = "]" if opener == "[" else "}"
    return opener * depth + "1" + closer * depth


def _hostile_value(rng: random.Random) -> object:
    return rng.choice(
        [
            None,
            True,
            1e308,
            -(2**70),
            [],
            {},
            [[1]],
            [{}],
            "\ud800",
            "a\u0000b",
            "x" * rng.randint(4001, 6000),
            {"nested": ["\udfff"]},
        ]
    )


def frame(rng: random.Random) -> str | bytes:
    """One malformed frame of a random kind."""
    kind = rng.randrange(9)
    if kind == 0:
        return _nested(rng)
    if kind == 1:
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 200)))
    if kind == 2:
        return "y" * rng.randint(65_537, 90_000)  # above MAX_WS_FRAME_BYTES
    if kind == 3:
        return rng.choice(
            ["{", "nul", '{"type":', "[1,2", "\x00\x01", '{"type": "ping", "id": 1e999}']
        )
    if kind == 4:
        return json.dumps(rng.choice([[], 1, "s", None, {"no": "type"}, {"type": 5}]))
    if kind == 5:
        return json.dumps({"type": rng.choice(["dance", "", "MESSAGE", "x" * 500])})
    event = {"type": "message", "content": "hello"}
    field = rng.choice(["content", "client_msg_id", "attachment_ids"])
    event[field] = _hostile_value(rng)
    if kind == 6:  # the same, with the surrogate written as a JSON escape
        return json.dumps(event).replace("hello", "\\ud800")
    # Lone surrogates travel as JSON escapes: a text frame itself must be valid UTF-8 (a client
    # that sends invalid UTF-8 gets the protocol's own close, 1007, as RFC 6455 requires).
    return json.dumps(event).replace("hello", "hi")


@pytest.mark.timeout(300)
def test_a_thousand_bad_frames_never_break_a_socket(api):
    rng = random.Random(SEED)
    attacker_chat = api.create_session()
    attacker = Socket(
        api.base_url, session_id=attacker_chat["session_id"], token=attacker_chat["token"]
    )
    assert attacker.recv()["type"] == "connected"
    customer_chat = api.create_session()
    answers: list[dict] = []

    def chat() -> None:
        sock = Socket(
            api.base_url, session_id=customer_chat["session_id"], token=customer_chat["token"]
        )
        assert sock.recv()["type"] == "connected"
        for question in ("How long does a refund take?", "Do you ship to Norway?") * 3:
            sock.send({"type": "message", "content": question})
            answers.append(sock.until("complete", timeout=60)[-1])
        sock.close()

    chatter = threading.Thread(target=chat)
    chatter.start()
    kinds: dict[str, int] = {}
    for _ in range(FRAMES):  # sent back to back: the server answers each in order
        raw = frame(rng)
        if isinstance(raw, bytes):
            attacker.ws.send_binary(raw)
        else:
            attacker.send(raw)
    answered = 0
    while answered < FRAMES:
        event = attacker.recv(timeout=60)  # JSON or it raises: never HTTP text in the stream
        if event["type"] in ("error", "pong", "acknowledged"):  # one of these per frame
            answered += 1
            key = event.get("code", event["type"])
            kinds[key] = kinds.get(key, 0) + 1
        else:  # a frame that happened to be a valid message also gets its reply
            assert event["type"] in REPLY_STREAM, event
    chatter.join(120)
    attacker.send({"type": "ping", "id": "still-here"})
    assert attacker.until("pong")[-1]["id"] == "still-here"
    attacker.close()
    assert len(answers) == 6 and all(a["message"]["sources"] for a in answers)
    assert "server_error" not in kinds, kinds
    assert {"invalid_json", "invalid_text", "invalid_fields", "binary_not_supported"} <= set(kinds)
