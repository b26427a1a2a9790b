"""Real processes for the tests: gunicorn web servers and a Celery worker, as `make run` starts.

Nothing is mocked: each process gets its environment (database, Redis database number, channel
prefix) and the tests talk to it over HTTP and WebSocket.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


LOCK_KEY = "helpline:test-run-lock"

# The run's own databases, for the `db_free` check in tests/conftest.py (kept here because
# test modules import conftest a second time, as tests.conftest, with globals of its own).
SUITE_PG_NAMES: set[str] = set()  # PostgreSQL databases made for the suite's stacks
SUITE_TOUCHES: list[str] = []  # suite databases reached (URLs), in order
SIDE_TEMPLATE: list[str] = []  # the migrated database side stacks' databases are copied from


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

    Queues and keys carry each run's prefix, so runs sharing a database would not take each
    other's tasks, but a side stack empties its database when it stops (and a run empties it
    when it starts): a database of our own keeps those flushes apart. A lock key holding our
    pid marks the claim; a dead holder's is taken.
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


def settings_of(env: dict[str, str]):  # type: ignore[no-untyped-def]
    """Settings as a process with `env` reads them (the environment is swapped back at once)."""
    from models.settings import Settings

    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        return Settings.from_env()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def forget_rabbitmq_names(broker_url: str, prefix: str) -> None:
    """Delete a test deployment's queues and exchanges from RabbitMQ: quorum queues are durable,
    and every run has its own prefix, so nothing else would ever remove them."""
    from kombu import Connection

    from models.jobs import QUEUE_KINDS, queue_name

    with Connection(broker_url, connect_timeout=2) as conn:
        channel = conn.channel()
        for kind in QUEUE_KINDS:
            channel.queue_delete(queue_name(kind, prefix))
        for exchange in (
            prefix,
            f"{prefix}.events",
            f"{prefix}.control.pidbox",
            f"reply.{prefix}.control.pidbox",
        ):
            channel.exchange_delete(exchange)


def free_port() -> int:
    """An unused loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A redis-server of the test's own on a free loopback port, in its own folder under
    `folder`: a private Redis the test may kill and restart (test_chaos.py), or one member of a
    Sentinel group (test_sentinel.py). A plain server keeps nothing on disk, so a restart comes
    back empty; with `sentinel_conf` it runs as a sentinel (which rewrites that file)."""

    def __init__(
        self, folder: Path, name: str, args: Sequence[str] = (), *, sentinel_conf: str = ""
    ) -> None:
        import pytest

        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self.folder, self.name, self.port = folder, name, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        home = folder / name
        home.mkdir(parents=True, exist_ok=True)
        self.args = [binary]
        if sentinel_conf:
            conf = home / "sentinel.conf"
            conf.write_text(sentinel_conf)
            self.args += [str(conf), "--sentinel"]
        else:
            self.args += ["--save", "", "--appendonly", "no"]
        self.args += ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(home), *args]
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout: float = 10) -> None:
        """Start it and return once it answers PING."""
        import redis

        self.starts += 1
        log = open(self.folder / f"{self.name}-redis{self.starts}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not start; see {self.folder}")
                time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: no save, no goodbye to clients (the data goes with it)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


@contextmanager
def private_redis(folder: Path, name: str) -> Iterator[RedisServer]:
    """A started RedisServer, stopped on the way out."""
    server = RedisServer(folder, name)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Stack:
    """Web servers + a worker sharing one database and one Redis."""

    def __init__(self, env: dict[str, str], logdir: Path, name: str = "main") -> None:
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.logdir = logdir
        self.name = name
        self.webs: list[tuple[subprocess.Popen, int]] = []
        self.worker: subprocess.Popen | None = None  # the latest worker started
        self.workers: list[subprocess.Popen] = []  # every worker started, dead or alive
        self.worker_starts = 0
        self.roles: set[str] = set()  # the worker roles started, for wait_ready

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

    # the web processes' gunicorn settings (bench/sockets.py --memdebug swaps in its own)
    web_config = "gunicorn.conf.py"

    def start_web(self) -> str:
        port = free_port()
        proc = self._spawn(
            [
                str(BIN / "gunicorn"),
                "-c",
                self.web_config,
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

    def start_worker(self, role: str = "all") -> None:
        """A Celery worker of `role` (`all` four queue kinds by default; the Procfile splits
        them into `worker` and `files`); its queues carry the stack's prefix."""
        self.worker_starts += 1
        self.roles.add(role)
        self.worker = self._spawn(
            [
                str(BIN / "python"),
                "-m",
                "worker.run",
                role,
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
        self.workers.append(self.worker)

    @property
    def worker_log(self) -> Path:
        """The log file of the worker started last (`_spawn` names it)."""
        return self.logdir / f"{self.name}-worker{self.worker_starts}.log"

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
    def prefix(self) -> str:
        return self.env["EVENT_CHANNEL_PREFIX"]

    def settings(self):  # type: ignore[no-untyped-def]
        """The settings this stack's processes read (built from its environment)."""
        return settings_of(self.env)

    def celery(self):  # type: ignore[no-untyped-def]
        """A Celery client configured as this stack's web processes are (close it after use)."""
        from celery import Celery

        import celeryconfig

        app = Celery(f"{self.name}-probe")
        app.conf.update(celeryconfig.build(self.settings()))
        return app

    def queue(self, kind: str) -> str:
        """This stack's broker queue of `kind` (e.g. `agent`)."""
        from models.jobs import queue_name

        return queue_name(kind, self.prefix)

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for _, port in self.webs]

    def wait_ready(self, timeout: float = 90) -> None:
        """Every web answers /health/ready (database, Redis and the answer worker) with 200,
        and, once a role that parses files was started, without the `warning` that no worker
        consumes the files queues: readiness allows that (chat is answered), the tests' stacks
        wait for every role they started."""
        deadline = time.monotonic() + timeout
        files = bool(self.roles & {"files", "all"})
        for url in self.urls:
            while True:
                try:
                    resp = httpx.get(f"{url}/health/ready", timeout=5)
                    if resp.status_code == 200 and not (
                        files and resp.json()["checks"]["worker"].get("warning")
                    ):
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

    def stop(self, *, graceful: bool = True) -> None:
        """Stop every process; on RabbitMQ also delete the stack's queues and exchanges.

        `graceful=False` (the suite's fixtures) SIGKILLs them instead of waiting for their
        shutdown: nothing reads a stack's processes once its tests are done, and a Celery
        worker's warm shutdown alone took ~3 s a stack on the 2-core machine, paid by every
        side stack of every pass. The SIGTERM paths that matter are tests of their own
        (tests/test_topology.py stops a web process mid-load)."""
        self.stop_processes(graceful=graceful)
        broker = self.env.get("BROKER_URL", "")
        if broker.startswith("amqp"):
            try:
                forget_rabbitmq_names(broker, self.prefix)
            except Exception as exc:  # a cleanup failure must not hide the test's outcome
                print(f"could not delete {self.prefix}'s RabbitMQ queues: {exc}")

    def stop_processes(self, *, graceful: bool = True) -> None:
        procs = [p for p, _ in self.webs] + [w for w in self.workers if w.poll() is None]
        for proc in procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM if graceful else signal.SIGKILL)
                except ProcessLookupError:  # exited between the poll and the signal
                    pass
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
