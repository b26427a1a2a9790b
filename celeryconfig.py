"""Celery settings for both sides (web sends, worker consumes), read from models.settings.

Reliability choices: late acks + reject on worker loss so a crash re-runs the task; prefetch 1
so one slow answer does not hold others hostage; the broker's visibility timeout is longer than
the hard time limit, so a task still running is never handed to a second worker.
"""

import sys

from kombu import Queue

from models.settings import ConfigError, get_settings

try:
    _s = get_settings()
except ConfigError as exc:  # a clear one-line reason instead of a traceback
    sys.exit(f"helpline: configuration error: {exc}")

broker_url = _s.redis_url
result_backend = _s.redis_url
broker_connection_retry_on_startup = True
broker_transport_options = {
    "visibility_timeout": _s.visibility_timeout,
    "socket_timeout": 5,
    "socket_connect_timeout": 2,
}
result_backend_transport_options = {"socket_timeout": 5, "socket_connect_timeout": 2}
task_publish_retry_policy = {"max_retries": 3, "interval_start": 0, "interval_step": 0.2}

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_expires = 600
task_ignore_result = True  # only the tasks that answer a caller store results

task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
task_soft_time_limit = _s.task_soft_time_limit
task_time_limit = _s.task_time_limit

task_default_queue = "agent"
# `interactive` holds calls someone waits on (search, ping): they must not queue behind a
# backlog of replies.
task_queues = (Queue("interactive"), Queue("agent"), Queue("attachments"), Queue("kb"))
task_routes = {
    "helpline.generate_reply": {"queue": "agent"},
    "helpline.search_kb": {"queue": "interactive"},
    "helpline.ping": {"queue": "interactive"},
    "helpline.parse_attachment": {"queue": "attachments"},
    "helpline.ingest_document": {"queue": "kb"},
    "helpline.delete_document": {"queue": "kb"},
    "helpline.deliver_webhook": {"queue": "kb"},
}

worker_hijack_root_logger = False
worker_send_task_events = False
enable_utc = True
