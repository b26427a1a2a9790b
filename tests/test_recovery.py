"""A message whose task never reached the broker (the web died right after the commit) is
still answered: the worker's sweeper finds it past its deadline and sends the task itself."""

from __future__ import annotations

from datetime import timedelta

from models.base import new_id, utcnow
from models.chat import ChatSession, Message
from models.db import session_scope
from models.events import append_event, next_seq
from models.serialize import message_json


def test_committed_but_never_enqueued_message_is_answered(api, chat):
    with session_scope() as db:
        seq = next_seq(db, chat["session_id"])
        msg = Message(
            id=new_id(),
            session_id=chat["session_id"],
            seq=seq,
            role="user",
            content="How do I reset my password?",
            status="queued",
            created_at=utcnow(),
            lease_until=utcnow() - timedelta(seconds=1),  # its claim deadline has passed
            attachments=[],
        )
        db.add(msg)
        append_event(db, chat["session_id"], "user_message", seq=seq, message=message_json(msg))
        assert db.get(ChatSession, chat["session_id"]) is not None
    data = api.wait_for(chat, lambda ms: any(m["role"] == "assistant" for m in ms), timeout=20)
    user, reply = data["messages"]
    assert user["status"] == "done" and reply["reply_to_id"] == user["id"]
    assert any(s["external_id"] == "accounts/reset-password" for s in reply["sources"])
