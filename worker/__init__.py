"""The Celery app of the worker process: config from celeryconfig, per-process resources."""

from __future__ import annotations

import logging
import os
import threading
import time

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


@signals.worker_init.connect
def _preload(**_kw: object) -> None:
    """Load the read-only models of the answer path once, in the parent, before the pool forks.

    The language identifier's model takes ~0.7 s to load; loaded in each pool process it was
    paid by that process's first customer. Loaded here it is shared copy-on-write by every
    child. Only things without connections, threads or locks held cross the fork: the
    identifier and the sentiment lexicon are plain Python and numpy objects. The index is
    not one of them (it holds a Redis client and reads the database): see `_warm_up`.
    """
    if not _answers_here():
        return
    _logging()  # this signal comes before Celery sets logging up (configuring is idempotent)
    from worker.agent import language
    from worker.escalation import sentiment

    started = time.perf_counter()
    language.preload()
    sentiment.preload()
    log.info("answer models preloaded in %.2fs", time.perf_counter() - started)


@signals.worker_process_init.connect
def _after_fork(**_kw: object) -> None:
    """A forked child must not share the parent's database or Redis connections; a child that
    answers builds its engine and index at once, in the background (see `_warm_up`)."""
    reset_engine()
    reset_redis()
    if _answers_here():
        threading.Thread(target=_warm_up, name="answer-warm-up", daemon=True).start()


def _warm_up() -> None:
    """Build this process's engine and knowledge-base index before its first task needs them.

    In a thread, because Celery gives `worker_process_init` only a few seconds and a large
    KB takes longer to index. A task that arrives meanwhile waits on the index's own lock
    for the build already under way (as it would have built it itself), never a second one.
    Failure only means the first task builds it, as before.
    """
    try:
        from worker.agent.retrieval import get_knowledge_base
        from worker.engines import answer_engine

        answer_engine()
        get_knowledge_base().refresh(force=True)
    except Exception:
        log.warning("answer warm-up failed; the first task will build the index", exc_info=True)


def _answers_here() -> bool:
    """True when this worker consumes the answer queue (not a `files`-only worker)."""
    from models.jobs import queue_name

    consumed = app.amqp.queues.consume_from
    return not consumed or queue_name("agent") in consumed


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
