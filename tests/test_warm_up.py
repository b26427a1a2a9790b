"""A web process builds its task sender at start (models/jobs.warm_up, run by gunicorn.conf.py
beside the serving loop), so the first customer message does not pay for it; and a broker that
is away at start never makes the warm-up fatal.

Each case is a fresh Python process (what a new web worker is), on a Redis database of its own
with no worker reading it: the one task sent is never run, and the database is emptied after.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import base_env, redis_url, release_redis
from tests.stack import ROOT

# Prints the Redis connections the first send opened, with and without a warm-up first.
_FIRST_SEND = textwrap.dedent(
    """
    import sys
    import redis
    from models import jobs

    watch = redis.Redis.from_url(sys.argv[1])
    def clients():
        return watch.info("clients")["connected_clients"]
    if sys.argv[2] == "warm":
        jobs.warm_up()
    before = clients()
    assert jobs.send_reply("00000000-0000-0000-0000-000000000001")
    print(clients() - before)
    """
)


@pytest.fixture
def own_redis():  # type: ignore[no-untyped-def]
    url = redis_url("warm-up")
    try:
        yield url
    finally:
        release_redis("warm-up")


def _run(code: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_after_the_warm_up_the_first_send_opens_no_connection(own_redis: str) -> None:
    env = {**base_env(), "REDIS_URL": own_redis, "BROKER_URL": ""}
    cold = _run(_FIRST_SEND, env, own_redis, "cold")
    warm = _run(_FIRST_SEND, env, own_redis, "warm")
    assert cold.returncode == 0 and warm.returncode == 0, (cold.stderr, warm.stderr)
    assert int(cold.stdout.split()[-1]) >= 1  # without it, the send connects to the broker
    assert int(warm.stdout.split()[-1]) == 0


def test_a_broker_that_is_away_at_start_is_not_fatal() -> None:
    # Port 9 on loopback: nothing listens there, so the connection is refused at once.
    env = {**base_env(), "REDIS_URL": "redis://127.0.0.1:9/0", "BROKER_URL": ""}
    done = _run("from models import jobs; jobs.warm_up(); print('served')", env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "served"
    assert "task sender not warmed up" in done.stderr
