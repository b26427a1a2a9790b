"""gunicorn settings of the skeleton's web processes: the gevent worker class with the same
connection limit and greenlet-tree switch as gunicorn.conf.py, no access log; each worker warms
its task sender and starts its pub/sub listener beside the serving loop, as Helpline's does."""

import os

os.environ.setdefault("GEVENT_TRACK_GREENLET_TREE", "false")

worker_class = "gevent"
worker_connections = 12000
timeout = 60
graceful_timeout = 5
keepalive = 5
control_socket_disable = True
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()


def post_worker_init(worker) -> None:  # type: ignore[no-untyped-def]
    """Build the task sender and subscribe before the first customer arrives (a thread, so a
    slow broker never holds up the boot)."""
    import threading

    from bench.ceiling.web import hub
    from models.jobs import warm_up

    threading.Thread(target=warm_up, name="warm-up", daemon=True).start()
    hub().start()
