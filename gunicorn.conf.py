"""gunicorn settings for the `web` process (Heroku-style: $PORT, $WEB_CONCURRENCY).

gevent workers hold thousands of idle WebSockets cheaply (threaded workers stalled between
3,000 and 5,000 sockets on a 2-core machine; see STACK-NOTES in the design notes).
"""

import os
import resource

# gevent records, for every greenlet, the stack that spawned it (a debugging aid): ~1 KB per
# greenlet, for nothing in production. Read by gevent when the worker starts its hub.
os.environ.setdefault("GEVENT_TRACK_GREENLET_TREE", "false")

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
worker_class = "gevent"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Concurrent connections per web process: idle sockets plus the HTTP requests beside them. At
# the limit gunicorn stops accepting, so 10,000 held sockets need room above 10,000.
worker_connections = int(os.environ.get("WEB_WORKER_CONNECTIONS", "12000"))


def _raise_fd_limit() -> None:
    """Every socket is a file descriptor: lift the soft limit (often 1,024) to the hard one,
    which gunicorn's worker processes inherit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):  # some sandboxes refuse: keep what we have
            pass


_raise_fd_limit()
timeout = 60
graceful_timeout = 10
keepalive = 5
# Several gunicorns on one host (tests, side-by-side web processes) must not fight over
# one control socket.
control_socket_disable = True
# Request lines up to gunicorn's maximum reach the app, which answers a request target over
# 4096 bytes with its JSON 414 (webapp/errors.py); only a line over 8190 bytes gets gunicorn's
# own text/html 414, which the OpenAPI document mentions.
limit_request_line = 8190
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()


def post_worker_init(worker) -> None:  # type: ignore[no-untyped-def]
    """On SIGTERM, after gunicorn stops accepting, close every socket with 1001 ("going away")
    instead of letting the graceful timeout reset them: clients reconnect to another web
    process with `after=<last seq>` at once. The work runs in its own (green) thread, never in
    the signal handler."""
    import signal
    import threading

    previous = signal.getsignal(signal.SIGTERM)

    def on_term(sig, frame):  # type: ignore[no-untyped-def]
        if callable(previous):
            previous(sig, frame)  # gunicorn's own: the worker stops accepting
        from webapp.events import going_away

        try:
            import gevent
        except ImportError:  # not the gevent worker class: a thread is safe here
            threading.Thread(target=going_away, name="going-away", daemon=True).start()
            return
        # The signal may arrive while gevent's hub runs, where any switch is forbidden:
        # starting a thread there raised BlockingSwitchOutError out of this handler and the
        # worker died at once, resetting its sockets instead of closing them with 1001. A loop
        # callback runs on the hub's next turn, where spawning a greenlet is safe.
        gevent.get_hub().loop.run_callback(gevent.spawn, going_away)

    signal.signal(signal.SIGTERM, on_term)
    # The task sender is built beside the serving loop, not in the first customer's send
    # (models/jobs.warm_up); a broker that does not answer never holds up the boot.
    from models.jobs import warm_up

    threading.Thread(target=warm_up, name="warm-up", daemon=True).start()
