"""`?wait=` never holds a database connection while it waits.

With the worker stopped, many customers waiting for replies at once must not starve the web
process's connection pool: every wait ends with its 202 and an unrelated request is served at
once. (The pool is 5 + 10 connections on SQLite and 10 + 20 on PostgreSQL per process.)
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.conftest import side_stack

WAITERS = 60


def test_many_waits_with_no_worker_keep_the_pool_free(logdir):
    with side_stack(logdir, "wait", {"RATE_LIMIT_PER_MINUTE": "0"}, kb=False) as stack:
        base = stack.urls[0]
        with httpx.Client(base_url=base, timeout=30) as http:
            chats = [http.post("/api/sessions", json={}).json() for _ in range(WAITERS)]
        stack.kill_worker()

        def wait_for_reply(chat: dict) -> int:
            with httpx.Client(base_url=base, timeout=30) as client:
                return client.post(
                    f"/api/chat/sessions/{chat['session_id']}/messages",
                    params={"wait": 10},
                    json={"message": "is anyone there?"},
                    headers={"Authorization": f"Bearer {chat['token']}"},
                ).status_code

        with ThreadPoolExecutor(max_workers=WAITERS) as pool:
            futures = [pool.submit(wait_for_reply, c) for c in chats]
            time.sleep(3.0)  # every waiter is now inside its 10 s wait
            with httpx.Client(base_url=base, timeout=30) as http:
                other = http.get(
                    f"/api/sessions/{chats[0]['session_id']}",
                    headers={"Authorization": f"Bearer {chats[0]['token']}"},
                )
            # Served while every waiter still waits: it did not queue for a connection that a
            # waiter held (a starved request would only get one when the first wait ended).
            still_waiting = sum(not f.done() for f in futures)
            codes = [f.result() for f in futures]
        assert other.status_code == 200
        assert still_waiting == WAITERS
        assert codes == [202] * WAITERS
