"""The skeleton's Celery app: Helpline's Celery settings (celeryconfig: queues, serializer,
result backend, key prefix), a `helpline.ping` that returns its payload (chat_latency's no-op
floor, with its result stored as Helpline's is) and a `helpline.generate_reply` that publishes
one `text` and one `complete` event for the message, in one pipeline, as one pub/sub message
(a JSON array, as models/events.publish_all sends an answer's stream), and does nothing else.

Delivery semantics come from the environment the runner sets: CEILING_ACKS_LATE (1 = Helpline's
late acknowledgement, 0 = acknowledged on receipt); the prefetch multiplier, pool, concurrency
and log level are `celery worker` options.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import redis
from celery import Celery, signals

from models.logs import configure_logging
from models.redisconn import client as redis_client
from models.settings import get_settings

app = Celery("ceiling")
app.config_from_object("celeryconfig")
app.conf.task_acks_late = os.environ.get("CEILING_ACKS_LATE", "1") == "1"

_settings = get_settings()
# A plausible answer's size (Helpline's offline answers are a few hundred characters).
ANSWER = (
    "To reset your password, open Settings, choose Security and press 'Reset password'. "
    "We send a link to the address on the account; it works for one hour. If no e-mail "
    "arrives, check the spam folder or ask us to send it again from this chat. "
) * 2
_redis: redis.Redis | None = None


@signals.setup_logging.connect
def _logging(**_kw: object) -> None:
    """Helpline's log handler and format (JSON), so a log line costs what it costs there."""
    configure_logging(_settings.log_level, _settings.log_format)


@signals.worker_process_init.connect
def _after_fork(**_kw: object) -> None:
    """A pool process must not share the parent's Redis connection."""
    global _redis
    _redis = None


def _client() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis_client(socket_timeout=5, socket_connect_timeout=2)
    return _redis


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@app.task(name="helpline.ping", ignore_result=False)
def ping(payload: str = "") -> str:
    """No-op round trip (chat_latency's floor)."""
    return payload


@app.task(name="helpline.generate_reply", ignore_result=True)
def generate_reply(message_id: str) -> None:
    """Publish the reply's events; the session id is the message id's first part."""
    session_id = message_id.split(".", 1)[0]
    stamp = _now()
    events = [
        {
            "type": "text",
            "session_id": session_id,
            "timestamp": stamp,
            "reply_to": message_id,
            "content": ANSWER,
        },
        {
            "type": "complete",
            "session_id": session_id,
            "timestamp": stamp,
            "message": {
                "id": f"{message_id}r",
                "session_id": session_id,
                "role": "assistant",
                "content": ANSWER,
                "reply_to_id": message_id,
                "processing_time": 0.0,
                "sources": [],
                "created_at": stamp,
            },
        },
    ]
    channel = f"{_settings.event_channel_prefix}:session:{session_id}"
    pipe = _client().pipeline(transaction=False)
    pipe.publish(channel, json.dumps(events))
    pipe.execute()
