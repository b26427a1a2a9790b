"""gunicorn settings for the `web` process (Heroku-style: $PORT, $WEB_CONCURRENCY).

gevent workers hold thousands of idle WebSockets cheaply (threaded workers stalled between
3,000 and 5,000 sockets on a 2-core machine; see STACK-NOTES in the design notes).
"""

import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
worker_class = "gevent"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_connections = int(os.environ.get("WEB_WORKER_CONNECTIONS", "10000"))
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
