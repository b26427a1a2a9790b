"""Make sure Redis answers at REDIS_URL: start a local redis-server if installed, else explain."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from urllib.parse import urlparse

import redis


def ping(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def main() -> int:
    url = os.environ.get("REDIS_URL") or "redis://localhost:6379/0"
    if ping(url):
        return 0
    host = urlparse(url).hostname or "localhost"
    port = urlparse(url).port or 6379
    server = shutil.which("redis-server")
    if host not in ("localhost", "127.0.0.1", "::1") or server is None:
        print(
            f"Redis is not answering at {url}. Start one (e.g. `redis-server --port {port}`) "
            "or set REDIS_URL to a running Redis.",
            file=sys.stderr,
        )
        return 1
    print(f"Redis is not answering at {url}; starting a local redis-server on port {port}")
    subprocess.run(
        [
            server,
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "-::1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        check=True,
    )
    for _ in range(50):
        if ping(url):
            return 0
        time.sleep(0.1)
    print(f"started redis-server, but {url} still does not answer", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
