"""Start a Celery worker for one role of the Procfile: `python -m worker.run worker|files|all`.

The queues come from the settings (`<EVENT_CHANNEL_PREFIX>.<kind>`), so a Procfile, a systemd
unit or a test never spells a queue name: a deployment with another prefix consumes its own
queues without editing any of them. Extra arguments go to `celery worker` unchanged and win
(e.g. `--concurrency 4`, `-n answers-2@%h`).
"""

from __future__ import annotations

import os
import sys

from models.jobs import role_queues
from models.settings import ConfigError, get_settings


def worker_argv(role: str, extra: list[str]) -> list[str]:
    """The `celery worker` command line for `role` (extra arguments last, so they win)."""
    s = get_settings()
    concurrency = s.files_concurrency if role == "files" else s.worker_concurrency
    argv = [
        "worker",
        "-Q",
        ",".join(role_queues(role)),
        "--loglevel",
        s.log_level,
        "--without-gossip",
        "--without-mingle",
    ]
    if not any(a in ("-n", "--hostname") or a.startswith("--hostname=") for a in extra):
        argv += ["-n", f"{role}.{s.event_channel_prefix}@%h"]
    if not any(a in ("-c", "--concurrency") or a.startswith("--concurrency=") for a in extra):
        argv += ["--concurrency", str(concurrency)]
    return argv + extra


def lower_priority(nice: int) -> int:
    """Run this process (and the pool children it forks) at niceness `nice`, never higher
    priority than it already has; returns the niceness in force.

    On a machine shared with the web process, the accept path (store, acknowledge, enqueue)
    must get the CPU before answer generation does, or acknowledgements queue behind a busy
    worker pool. The kernel only weighs niceness when processes compete for a core: a worker
    with the machine to itself runs at full speed whatever its niceness.
    """
    current = os.nice(0)
    if nice > current:
        current = os.nice(nice - current)
    return current


def main(args: list[str]) -> None:
    """Parse the role, then hand over to Celery's own command line."""
    if not args or args[0] not in ("worker", "files", "all"):
        sys.exit("usage: python -m worker.run worker|files|all [celery worker options]")
    try:
        argv = worker_argv(args[0], args[1:])
        lower_priority(get_settings().worker_nice)
    except ConfigError as exc:
        sys.exit(f"helpline: configuration error: {exc}")
    from worker import app

    app.worker_main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
