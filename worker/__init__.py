"""The Celery app of the worker process: config from celeryconfig, per-process resources."""

from __future__ import annotations

import logging
import os

# Haystack reports usage to a remote service unless told not to; a support backend on a
# customer's host must not phone home (and this host has no internet).
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")

from celery import Celery, signals

from models.db import reset_engine
from models.events import reset_redis
from models.jobs import use_app
from models.logs import configure_logging, session_id_var, task_id_var
from models.settings import get_settings

app = Celery("helpline", include=["worker.tasks"])
app.config_from_object("celeryconfig")
use_app(app)  # the sweeper and webhooks send through the worker's own app

log = logging.getLogger(__name__)


@signals.setup_logging.connect
def _logging(**_kw: object) -> None:
    """Our JSON logs instead of Celery's own format."""
    s = get_settings()
    configure_logging(s.log_level, s.log_format)


@signals.worker_process_init.connect
def _after_fork(**_kw: object) -> None:
    """A forked child must not share the parent's database or Redis connections."""
    reset_engine()
    reset_redis()


@signals.task_prerun.connect
def _task_context(task_id: str | None = None, **_kw: object) -> None:
    task_id_var.set(task_id)
    session_id_var.set(None)


@signals.task_failure.connect
def _count_failure(sender: object = None, **_kw: object) -> None:
    """Failed tasks feed /metrics (helpline_errors_total{kind="task_failed"})."""
    from models import metrics

    metrics.count("errors", "task_failed")


@signals.worker_ready.connect
def _start_sweeper(**_kw: object) -> None:
    """Recover work whose worker died (or whose enqueue failed) without waiting for the broker."""
    from worker.sweeper import start_sweeper

    start_sweeper()
