"""A skeleton of Helpline's message path with no database and no answer engine.

`bench/stack_ceiling.py` starts it and measures it with `bench/chat_latency.py`'s own client:
`web.py` is the Flask app the gunicorn gevent workers serve (sessions in memory, the lean socket
server of webapp/wsserver.py, one pub/sub listener per process from webapp/events.py, tasks sent
through models/jobs.py), `worker.py` the Celery app whose answer task publishes a fixed reply.
What is left is the stack's own cost per answer: Flask, gunicorn, gevent, Celery, kombu, Redis.
"""
