"""Celery settings for both sides (web sends, worker consumes), read from models.settings.

Both sides read the same BROKER_URL here, so a web process and a worker can never end up on
different brokers. Every name Celery uses on the broker carries the deployment's prefix
(`EVENT_CHANNEL_PREFIX`): the task queues and their exchange, the control exchange that
readiness pings go through, and on Redis every key of the transport and of the result backend.
Two deployments on one Redis database or one RabbitMQ vhost never take each other's tasks.

Reliability choices: late acks + reject on worker loss so a crash re-runs the task; prefetch 1
so one slow answer does not hold others hostage. On Redis the broker's visibility timeout is
longer than the hard time limit, so a task still running is never handed to a second worker;
on RabbitMQ there is no such timeout (an unacknowledged task goes back when its worker's
connection closes), queues are durable quorum queues and every publish is confirmed.
"""

import sys
from typing import Any

from kombu import Exchange, Queue

from models.jobs import QUEUE_KINDS, ROUTES, queue_name
from models.redisconn import celery_redis_url
from models.settings import ConfigError, Settings, get_settings


def build(s: Settings) -> dict[str, Any]:
    """Every Celery setting for one deployment's settings (tests build one for a side stack)."""
    prefix, amqp = s.event_channel_prefix, s.broker_is_amqp
    redis_options: dict[str, Any] = {
        "socket_timeout": 5,
        "socket_connect_timeout": 2,
        # Every key and channel of this deployment starts with its prefix (unacked, bindings…).
        "global_keyprefix": f"{prefix}:",
    }
    if s.redis_sentinels:
        redis_options["master_name"] = s.redis_sentinel_master
    if amqp:
        # Publisher confirms: a send returns only once RabbitMQ has the message (the web's
        # "store, acknowledge, then enqueue" counts on a send that did not raise being kept).
        broker_options: dict[str, Any] = {"confirm_publish": True, "connect_timeout": 2}
    else:
        broker_options = {"visibility_timeout": s.visibility_timeout, **redis_options}
    # One exchange per deployment. On RabbitMQ a topic exchange, because Celery's native delayed
    # delivery (retries with a countdown on quorum queues) cannot route through a direct one;
    # routing keys are whole queue names, so no key ever matches another deployment's queue.
    exchange = Exchange(prefix, type="topic" if amqp else "direct", durable=True)
    # Quorum queues: replicated, durable, at-least-once; they need acknowledgements (we ack late)
    # and have no global QoS (Celery notices: worker_detect_quorum_queues is on by default).
    arguments = {"x-queue-type": "quorum"} if amqp else None
    queues = tuple(
        Queue(
            queue_name(kind, prefix),
            exchange,
            routing_key=queue_name(kind, prefix),
            durable=True,
            queue_arguments=arguments,
        )
        for kind in QUEUE_KINDS
    )
    return {
        "broker_url": celery_redis_url(s, broker=True),
        "result_backend": celery_redis_url(s),
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": broker_options,
        "result_backend_transport_options": dict(redis_options),
        "task_publish_retry_policy": {"max_retries": 3, "interval_start": 0, "interval_step": 0.2},
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_expires": 600,
        "task_ignore_result": True,  # only the tasks that answer a caller store results
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_detect_quorum_queues": True,
        "task_soft_time_limit": s.task_soft_time_limit,
        "task_time_limit": s.task_time_limit,
        "task_queues": queues,
        "task_default_queue": queue_name("agent", prefix),
        "task_default_exchange": prefix,
        "task_default_exchange_type": exchange.type,
        "task_default_routing_key": queue_name("agent", prefix),
        # A route naming an unknown queue must fail loudly, not create a queue nobody reads.
        "task_create_missing_queues": False,
        # `interactive` holds calls someone waits on (search, ping): they must not queue behind
        # a backlog of replies.
        "task_routes": {task: {"queue": queue_name(kind, prefix)} for task, kind in ROUTES.items()},
        # Control commands (readiness pings) and events use this deployment's own exchanges,
        # so only its own workers answer.
        "control_exchange": f"{prefix}.control",
        "event_exchange": f"{prefix}.events",
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "enable_utc": True,
    }


try:
    globals().update(build(get_settings()))
except ConfigError as exc:  # a clear one-line reason instead of a traceback
    sys.exit(f"helpline: configuration error: {exc}")
