"""Real processes for the tests: gunicorn web servers and a Celery worker, as `make run` starts.

Nothing is mocked: each process gets its environment (database, Redis database number, channel
prefix) and the tests talk to it over HTTP and WebSocket.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


LOCK_KEY = "helpline:test-run-lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim_redis_db(base_url: str, candidates: Sequence[int] = range(15, 7, -1)) -> int:
    """A Redis database number no other live test run or benchmark on this host is using.

    Celery queue names are the same in every run, so two runs sharing a database would take
    each other's tasks. A lock key holding our pid marks the claim; a dead holder's is taken.
    """
    import redis

    for db in candidates:
        client = redis.Redis.from_url(f"{base_url.rstrip('/')}/{db}")
        holder = client.get(LOCK_KEY)
        if holder is not None:
            if int(holder) == os.getpid() or _alive(int(holder)):
                continue
            # A dead run's claim: remove it only if it is still that run's (compare, delete).
            client.eval(
                "if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('del', KEYS[1]) end",
                1,
                LOCK_KEY,
                holder,
            )
        if not client.set(LOCK_KEY, os.getpid(), nx=True, ex=6 * 3600):
            continue  # another run won this database a moment ago
        # Empty it of a previous run's leftovers, keeping our claim (never FLUSHDB here: it
        # would drop the claim and let a second run in).
        for key in client.scan_iter(count=1000):
            if key != LOCK_KEY.encode():
                client.delete(key)
        return db
    raise RuntimeError(f"no free Redis database among {list(candidates)} at {base_url}")


def free_port() -> int:
    """An unused loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """Web servers + a worker sharing one database and one Redis."""

    def __init__(self, env: dict[str, str], logdir: Path, name: str = "main") -> None:
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.logdir = logdir
        self.name = name
        self.webs: list[tuple[subprocess.Popen, int]] = []
        self.worker: subprocess.Popen | None = None
        self.worker_starts = 0

    # -- processes -----------------------------------------------------------------------
    def _spawn(self, args: list[str], log: str) -> subprocess.Popen:
        out = open(self.logdir / f"{self.name}-{log}.log", "ab")  # noqa: SIM115
        return subprocess.Popen(
            args,
            cwd=ROOT,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start_web(self) -> str:
        port = free_port()
        proc = self._spawn(
            [
                str(BIN / "gunicorn"),
                "-c",
                "gunicorn.conf.py",
                "--workers",
                "1",
                "--bind",
                f"127.0.0.1:{port}",
                "wsgi:app",
            ],
            f"web{len(self.webs)}",
        )
        self.webs.append((proc, port))
        return f"http://127.0.0.1:{port}"

    def start_worker(self, queues: str = "interactive,agent,attachments,kb") -> None:
        """A Celery worker on `queues` (all four by default; `make run` splits them)."""
        self.worker_starts += 1
        self.worker = self._spawn(
            [
                str(BIN / "celery"),
                "-A",
                "worker",
                "worker",
                "-Q",
                queues,
                "--concurrency",
                "2",
                "--pool",
                "prefork",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "INFO",
                "-n",
                f"{self.name}{self.worker_starts}-{os.getpid()}@%h",
            ],
            f"worker{self.worker_starts}",
        )

    def kill_worker(self) -> None:
        """SIGKILL the whole worker process group: no chance to ack, requeue or clean up."""
        assert self.worker is not None
        os.killpg(self.worker.pid, signal.SIGKILL)
        self.worker.wait(10)
        self.worker = None

    def pause_worker(self) -> None:
        """SIGSTOP the whole worker process group: alive, holding its sockets, doing nothing
        (what a stuck or overloaded worker looks like to a customer)."""
        assert self.worker is not None
        os.killpg(self.worker.pid, signal.SIGSTOP)

    def resume_worker(self) -> None:
        assert self.worker is not None
        os.killpg(self.worker.pid, signal.SIGCONT)

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for _, port in self.webs]

    def wait_ready(self, timeout: float = 90) -> None:
        """Every web answers /health/ready (database, Redis and a worker) with 200."""
        deadline = time.monotonic() + timeout
        for url in self.urls:
            while True:
                try:
                    if httpx.get(f"{url}/health/ready", timeout=5).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                self._check_alive()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{url} not ready; logs in {self.logdir}\n{self.tail()}")
                time.sleep(0.2)

    def _check_alive(self) -> None:
        for proc, _ in self.webs:
            if proc.poll() is not None:
                raise RuntimeError(f"a web process exited\n{self.tail()}")
        if self.worker is not None and self.worker.poll() is not None:
            raise RuntimeError(f"the worker exited\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        parts = []
        for path in sorted(self.logdir.glob(f"{self.name}-*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(parts)

    def stop(self) -> None:
        procs = [p for p, _ in self.webs] + ([self.worker] if self.worker else [])
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
