"""The ceiling of the fixed stack: Helpline's message path with no database and no engine.

    .venv/bin/python bench/stack_ceiling.py [--variant helpline|fast] [--redis redis://127.0.0.1:6379]
        [--web-processes 2] [--pool prefork|solo] [--worker-processes N] [--concurrency C]
        [--prefetch P] [--acks-late|--no-acks-late] [--worker-log-level INFO] [--nice 5]
        [--sessions 1,100] [--messages 10] [--pings 500] [--floor-tasks 1000]
        [--burst-sessions 100] [--burst-rounds 3] [--serve | --helpline]

Why: issue 10 asks for 300 answers/s and an acknowledgement p95 <= 20 ms (the first-message
burst of 100 sockets included) on this 2-core machine, with Flask under gunicorn's gevent
worker, Celery on a Redis broker and Redis pub/sub back to the web process. Before optimising
Helpline further this measures what that stack alone can do: bench/ceiling/ is a skeleton of the
message path (sessions in memory; the socket acknowledges at once, sends one Celery task; the
worker's task publishes one `text` and one `complete` event; each web process's pub/sub
listener forwards them to the socket), built from Helpline's own socket server, listener, task
sender and Celery settings, and measured by bench/chat_latency.py's client, unchanged, run in
this process against the skeleton (its `--url` mode). The skeleton's acknowledgement is free
(nothing is stored first); Helpline's must be durable, so the skeleton's ack is a lower bound.

It starts `--web-processes` gunicorns (gevent worker class, one worker each, as chat_latency's
own stack does) and the Celery worker(s) on a Redis database it claims (11..8) under a channel
prefix of its own, runs chat_latency's baseline (no-op `helpline.ping` round trips and tasks/s)
and its load at each `--sessions` level, and reads the CPU (utime + stime, /proc) of the web
processes, the worker processes, the Redis server and this client around each load: CPU per
answer, hence the most answers per second 2 cores could carry at that cost. Then the burst
probe: with the worker stopped (SIGSTOP), `--burst-sessions` open sockets each send their first
message at once, `--burst-rounds` times; the acknowledgements' latency and the CPU per message of
the web, Redis and the client give the burst's floor and the bound p95 >~ 0.95 N c / P. At the
end every process it started is stopped and its Redis database flushed (which frees the claim).

`--helpline` measures Helpline itself the same way (chat_latency's own stack: SQLite, Redis
database 12 of `--redis`, the sample KB; its web and worker process groups read alike), so the
two can be alternated and their CPU per answer compared part by part.

Variants: `helpline` is Helpline's delivery semantics (late acks, prefetch 1, one prefork worker
with 2 processes, per-task log lines at INFO, niceness 5 as WORKER_NICE's default); `fast` the
most favourable settings the stack allows (acks on receipt, prefetch 8, two `--pool solo`
workers, log WARNING). Options given explicitly override the preset. `--serve` only
starts the skeleton and prints what to point bench/chat_latency.py at, until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `bench`, `tests` and `models` importable
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import redis  # noqa: E402

from bench import chat_latency  # noqa: E402
from bench.costs import group_cpu  # noqa: E402
from tests.stack import claim_redis_db, free_port  # noqa: E402

BIN = Path(sys.executable).parent
CLK = os.sysconf("SC_CLK_TCK")
REDIS_DBS = [11, 10, 9, 8]  # never 12: chat_latency's own stack claims that one
PRESETS: dict[str, dict[str, Any]] = {
    "helpline": {
        "pool": "prefork",
        "worker_processes": 1,
        "concurrency": 2,
        "prefetch": 1,
        "acks_late": True,
        "worker_log_level": "INFO",
    },
    "fast": {
        "pool": "solo",
        "worker_processes": 2,
        "concurrency": 1,
        "prefetch": 8,
        "acks_late": False,
        "worker_log_level": "WARNING",
    },
}


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# -- the skeleton's processes ----------------------------------------------------------------
@dataclass
class Skeleton:
    """The web and worker processes, each the leader of its own process group."""

    env: dict[str, str]
    logdir: Path
    webs: list[tuple[subprocess.Popen, int]] = field(default_factory=list)
    workers: list[subprocess.Popen] = field(default_factory=list)

    def _spawn(self, args: list[str], name: str, nice: int = 0) -> subprocess.Popen:
        out = open(self.logdir / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it

        def lower() -> None:
            if nice > 0:
                os.nice(nice)

        return subprocess.Popen(
            args,
            cwd=ROOT,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lower,  # noqa: PLW1509 - only os.nice, before exec
        )

    def start_web(self) -> None:
        port = free_port()
        args = [
            str(BIN / "gunicorn"),
            "-c",
            "bench/ceiling/gunicorn_conf.py",
            "--workers",
            "1",
            "--bind",
            f"127.0.0.1:{port}",
            "bench.ceiling.web:app",
        ]
        self.webs.append((self._spawn(args, f"web{len(self.webs)}"), port))

    def start_worker(self, opts: argparse.Namespace) -> None:
        index = len(self.workers)
        args = [
            str(BIN / "python"),
            "-m",
            "celery",
            "-A",
            "bench.ceiling.worker",
            "worker",
            "--pool",
            opts.pool,
            "--prefetch-multiplier",
            str(opts.prefetch),
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            opts.worker_log_level,
            "-n",
            f"ceiling{index}-{os.getpid()}@%h",
        ]
        if opts.pool != "solo":
            args += ["--concurrency", str(opts.concurrency)]
        self.workers.append(self._spawn(args, f"worker{index}", opts.nice))

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for _, port in self.webs]

    def groups(self, which: str) -> list[int]:
        procs = [p for p, _ in self.webs] if which == "web" else self.workers
        return [p.pid for p in procs]

    def check_alive(self) -> None:
        for proc in [p for p, _ in self.webs] + self.workers:
            if proc.poll() is not None:
                raise RuntimeError(f"a skeleton process exited; logs in {self.logdir}")

    def wait_ready(self, app: Any, timeout: float = 60) -> None:
        """Every web answers /health/ready with its listener subscribed, and a ping comes back."""
        deadline = time.monotonic() + timeout
        for url in self.urls:
            while True:
                try:
                    resp = httpx.get(f"{url}/health/ready", timeout=5, trust_env=False)
                    if resp.status_code == 200 and resp.json().get("hub"):
                        break
                except httpx.HTTPError:
                    pass
                self.check_alive()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{url} not ready; logs in {self.logdir}")
                time.sleep(0.2)
        times, failures = chat_latency.ping_round_trips(app, 3, timeout)
        if failures or not times:
            raise RuntimeError(f"the skeleton's worker does not answer; logs in {self.logdir}")

    def stop(self) -> None:
        procs = [p for p, _ in self.webs] + self.workers
        for proc in procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(5)


# -- CPU around each load --------------------------------------------------------------------
def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of one process (the Redis server)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class CpuWindow:
    """CPU seconds spent by each part during one chat load, and what it answered."""

    label: str
    answered: int
    wall: float
    cpu: dict[str, float]

    def per_answer(self, part: str) -> float | None:
        return self.cpu[part] / self.answered if self.answered else None


class Processes(Protocol):
    """What is measured: the web base URLs and the process groups of web and worker."""

    @property
    def urls(self) -> list[str]: ...

    def groups(self, which: str) -> list[int]: ...


class HelplineProcesses:
    """Helpline's own stack as chat_latency starts it (tests.stack.Stack): every process there
    leads its own process group too."""

    def __init__(self, stack: Any) -> None:
        self.stack = stack

    @property
    def urls(self) -> list[str]:
        return list(self.stack.urls)

    def groups(self, which: str) -> list[int]:
        if which == "web":
            return [p.pid for p, _ in self.stack.webs]
        return [w.pid for w in self.stack.workers if w.poll() is None]


def snapshot(procs: Processes, redis_pid: int | None) -> dict[str, float]:
    """CPU seconds so far of the web groups, the worker groups, the Redis server and this
    client (the load generator, with its ping probe thread)."""
    return {
        "web": sum(group_cpu(g) for g in procs.groups("web")),
        "worker": sum(group_cpu(g) for g in procs.groups("worker")),
        "redis": process_cpu(redis_pid) if redis_pid else 0.0,
        "client": self_cpu(),
    }


def measure_loads(procs: Processes, redis_pid: int | None, windows: list[CpuWindow]) -> None:
    """Wrap chat_latency's chat_load so every load it runs (warm-up and levels) is bracketed by
    CPU readings of the web groups, the worker groups, the Redis server and this client. The
    ping probe (one no-op task every 100 ms) runs during the load and is included."""
    original = chat_latency.chat_load

    async def measured(
        urls: list[str], questions: list[str], args: argparse.Namespace, *counts: int
    ) -> chat_latency.LoadResult:
        sessions, messages = counts
        before = snapshot(procs, redis_pid)
        result = await original(urls, questions, args, sessions, messages)
        after = snapshot(procs, redis_pid)
        windows.append(
            CpuWindow(
                f"{sessions}x{messages}",
                len(result.samples),
                result.wall,
                {k: after[k] - before[k] for k in before},
            )
        )
        return result

    chat_latency.chat_load = measured  # type: ignore[assignment]


def print_cpu(windows: list[CpuWindow], cores: int) -> None:
    """CPU per answer of each part, and the answers/s `cores` could carry at that cost."""
    print(
        "\n| load | answered | answered/s | web ms/answer | worker ms/answer | redis ms/answer "
        f"| client ms/answer | stack (web+worker+redis) ms | at most /s on {cores} cores "
        "(stack) | with client |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for w in windows:
        if not w.answered:
            continue
        per = {k: w.per_answer(k) * 1000 for k in w.cpu}  # type: ignore[operator]
        stack = per["web"] + per["worker"] + per["redis"]
        total = stack + per["client"]

        def most(ms_each: float) -> str:  # a short load may read 0 ticks (10 ms each)
            return f"{cores * 1000 / ms_each:.0f}" if ms_each > 0 else "-"

        print(
            f"| {w.label} | {w.answered} | {w.answered / w.wall:.1f} | {per['web']:.2f} "
            f"| {per['worker']:.2f} | {per['redis']:.2f} | {per['client']:.2f} | {stack:.2f} "
            f"| {most(stack)} | {most(total)} |"
        )


@dataclass
class BurstProbe:
    """N first messages sent at once with the worker stopped: only the accept path runs."""

    sessions: int
    acks: list[float]
    cpu: dict[str, float]  # seconds by part, from just before the burst to its last ack

    def per_message(self, part: str) -> float:
        return self.cpu[part] / max(len(self.acks), 1)


async def _burst(
    procs: Processes, sessions: int, timeout: float, redis_pid: int | None
) -> BurstProbe:
    """Open `sessions` sockets (chat_latency's Session), then send every first message at
    once and wait for each acknowledgement; CPU is read once all are open and once all are
    acknowledged, so it is the accept path's alone (receive, parse, ack, enqueue)."""
    urls = procs.urls
    ns = argparse.Namespace(seed=1, timeout=timeout)
    clients = [chat_latency.Session(i, urls[i % len(urls)], [], ns) for i in range(sessions)]
    failures = await chat_latency.open_all(clients, timeout)
    if failures:
        raise RuntimeError(f"burst probe: sockets failed to open: {dict(failures)}")
    acks: list[float] = []

    async def one(s: chat_latency.Session) -> None:
        assert s.ws is not None
        msg_id = uuid.uuid4().hex
        started = time.perf_counter()
        await s.ws.send(
            json.dumps({"type": "message", "content": "burst", "client_msg_id": msg_id})
        )
        deadline = time.monotonic() + timeout
        while True:
            event = await chat_latency.recv_event(s.ws, deadline - time.monotonic())
            if event.get("type") == "acknowledged" and event.get("client_msg_id") == msg_id:
                acks.append(time.perf_counter() - started)
                return

    await asyncio.sleep(0.5)  # the handshakes' own work is done before the first reading
    before = snapshot(procs, redis_pid)
    await asyncio.gather(*(one(s) for s in clients))
    after = snapshot(procs, redis_pid)
    await asyncio.gather(*(s.close() for s in clients))
    return BurstProbe(sessions, acks, {k: after[k] - before[k] for k in before})


def burst_probes(
    procs: Processes, sessions: int, rounds: int, timeout: float, redis_pid: int | None
) -> list[BurstProbe]:
    """`rounds` bursts of `sessions` first messages with the worker groups stopped (SIGSTOP), so
    nothing but the accept path (and the client) wants the CPU; the worker answers the queued
    messages after each probe, to sockets already closed. The burst ack p95 here is the
    stack's floor for the burst: in the chat load the worker competes for the CPU too."""
    out = []
    for _ in range(rounds):
        workers = procs.groups("worker")
        for pgid in workers:
            os.killpg(pgid, signal.SIGSTOP)
        try:
            out.append(asyncio.run(_burst(procs, sessions, timeout, redis_pid)))
        finally:
            for pgid in workers:
                os.killpg(pgid, signal.SIGCONT)
        time.sleep(3)  # the worker drains the probe's replies before the next round
    return out


def print_burst_probes(probes: list[BurstProbe], web_processes: int, cores: int) -> None:
    """Each probe's ack latencies, the CPU per message of each part, and two bounds for the
    p95 of a burst of N: the web's alone (c on P processes) and the machine's (web, Redis and
    the client's own sending and reading, all on `cores`)."""
    print(
        "\n| burst, worker stopped | acks | burst ack p50 / p95 / max ms | web c ms/msg "
        "| redis ms/msg | client ms/msg | 0.95*N*c/P ms | 0.95*N*(web+redis+client)/cores ms |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for i, b in enumerate(probes, 1):
        c = b.per_message("web")
        machine = c + b.per_message("redis") + b.per_message("client")
        print(
            f"| {b.sessions} sockets, round {i} | {len(b.acks)} "
            f"| {chat_latency.ms(chat_latency.percentile(b.acks, 50))} / "
            f"{chat_latency.ms(chat_latency.percentile(b.acks, 95))} / "
            f"{chat_latency.ms(max(b.acks, default=None))} | {c * 1000:.2f} "
            f"| {b.per_message('redis') * 1000:.2f} | {b.per_message('client') * 1000:.2f} "
            f"| {0.95 * b.sessions * c / web_processes * 1000:.1f} "
            f"| {0.95 * b.sessions * machine / cores * 1000:.1f} |"
        )


def print_burst_bound(reports: list[chat_latency.Report], windows: list[CpuWindow]) -> None:
    """The burst's lower bound from the web's CPU per message: the 95th of N first messages
    that all arrive at once waits for about 0.95 N of them to be handled on P web processes."""
    for r in reports:
        window = next((w for w in windows if w.label == r.label.split()[-1]), None)
        if window is None or not window.answered or r.sessions < 2 or not r.load.acks_first:
            continue
        c = window.cpu["web"] / window.answered
        p = r.web_processes if isinstance(r.web_processes, int) else 2
        bound = 0.95 * r.sessions * c / p
        measured = chat_latency.percentile(r.load.acks_first, 95)
        print(
            f"burst at {r.sessions} sessions: web CPU per message c = {c * 1000:.2f} ms, "
            f"bound p95 >~ 0.95*N*c/P = {bound * 1000:.1f} ms (P = {p}); measured burst ack p95 "
            f"{chat_latency.ms(measured)} ms"
        )


# -- main ------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--variant", choices=sorted(PRESETS), default="helpline")
    p.add_argument("--redis", default="redis://127.0.0.1:6379", help="Redis (a database 11..8)")
    p.add_argument("--web-processes", type=int, default=2)
    p.add_argument(
        "--pool",
        choices=["prefork", "solo"],
        help="Celery pool (a gevent pool received the first task and never ran it: left out)",
    )
    p.add_argument("--worker-processes", type=int, help="Celery worker processes (each a pool)")
    p.add_argument("--concurrency", type=int, help="pool size of each (not for solo)")
    p.add_argument("--prefetch", type=int, help="worker_prefetch_multiplier")
    p.add_argument("--acks-late", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--worker-log-level", help="the worker's log level (INFO logs every task)")
    p.add_argument("--nice", type=int, default=5, help="worker niceness (WORKER_NICE default 5)")
    p.add_argument("--sessions", default="1,100", help="chat_latency's --sessions")
    p.add_argument("--messages", type=int, default=10, help="chat_latency's --messages")
    p.add_argument("--pings", type=int, default=500, help="chat_latency's --pings")
    p.add_argument("--floor-tasks", type=int, default=1000, help="chat_latency's --floor-tasks")
    p.add_argument("--burst-sessions", type=int, default=100, help="sockets in the burst probe")
    p.add_argument("--burst-rounds", type=int, default=3, help="burst probes (0: none)")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--log-dir", help="keep the skeleton's process logs here")
    p.add_argument("--serve", action="store_true", help="start the skeleton and wait (Ctrl-C)")
    p.add_argument(
        "--helpline",
        action="store_true",
        help="measure Helpline itself instead (chat_latency's own stack, SQLite), the same way",
    )
    args = p.parse_args(argv)
    for key, value in PRESETS[args.variant].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.web_processes < 1 or args.worker_processes < 1 or args.concurrency < 1:
        p.error("--web-processes, --worker-processes and --concurrency must be at least 1")
    return args


def describe(args: argparse.Namespace) -> str:
    pool = "solo" if args.pool == "solo" else f"{args.pool} x{args.concurrency}"
    return (
        f"skeleton {args.variant}: {args.web_processes} web, {args.worker_processes} worker "
        f"process(es) ({pool}), prefetch {args.prefetch}, acks_late {args.acks_late}, worker "
        f"log {args.worker_log_level}, nice {args.nice}"
    )


def chat_args(args: argparse.Namespace, label: str, extra: list[str]) -> argparse.Namespace:
    """chat_latency's own options for this run (its parser checks them)."""
    return chat_latency.parse_args(
        [
            *extra,
            "--sessions",
            args.sessions,
            "--messages",
            str(args.messages),
            "--pings",
            str(args.pings),
            "--floor-tasks",
            str(args.floor_tasks),
            "--timeout",
            str(args.timeout),
            "--label",
            label,
        ]
    )


def measure(
    procs: Processes,
    run: Any,
    args: argparse.Namespace,
    title: str,
    redis_pid: int | None,
) -> int:
    """chat_latency's baseline and loads (`run()`, with CPU read around each load), then the
    burst probes; prints chat_latency's report, the CPU per answer and the burst bounds."""
    windows: list[CpuWindow] = []
    measure_loads(procs, redis_pid, windows)
    started_load = load_average()
    reports = run()
    ended_load = load_average()
    probes = []
    if args.burst_rounds:
        time.sleep(1)
        probes = burst_probes(
            procs, args.burst_sessions, args.burst_rounds, args.timeout, redis_pid
        )
    print(f"\n# {title}\nload average before {started_load}, after {ended_load}")
    for report in reports:
        chat_latency.print_report(report)
    if len(reports) > 1:
        chat_latency.print_summary(reports)
    cores = os.cpu_count() or 2
    print_cpu(windows, cores)
    print_burst_bound(reports, windows)
    if probes:
        print_burst_probes(probes, len(procs.urls), cores)
    print(f"load average at the end {load_average()}")
    return 0 if all(r.load.samples for r in reports) else 1


def redis_server_pid(url: str) -> int | None:
    """The local Redis server's pid (its CPU is part of the stack's), None if not on this host."""
    if urlparse(url).hostname not in ("127.0.0.1", "localhost"):
        return None
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        return int(client.info("server")["process_id"])
    finally:
        client.close()


def measure_helpline(args: argparse.Namespace) -> int:
    """Helpline itself, on the stack bench/chat_latency.py starts (SQLite, its Redis database
    12, the sample KB), measured the same way as the skeleton."""
    from tests import stack as stack_module

    made: list[Any] = []

    class RecordingStack(stack_module.Stack):  # type: ignore[misc, valid-type]
        """chat_latency's Stack, remembered so its process groups can be read."""

        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            made.append(self)

    stack_module.Stack = RecordingStack
    cl_args = chat_args(args, "helpline", ["--databases", "sqlite", "--redis", args.redis])
    log(f"Helpline (SQLite) through chat_latency's own stack; load {load_average()}")
    with chat_latency.local_stack(cl_args) as target:
        procs = HelplineProcesses(made[-1])
        return measure(
            procs,
            lambda: chat_latency.run(target, cl_args, "sqlite"),
            args,
            f"Helpline, SQLite, {len(target.urls)} web, worker prefork x2 (chat_latency's stack)",
            redis_server_pid(args.redis),
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM (a `timeout`, a CI runner) unwinds like Ctrl-C, so the processes are stopped and
    # the Redis database flushed instead of left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.helpline:
        return measure_helpline(args)
    base = args.redis.rstrip("/")
    try:
        db = claim_redis_db(base, REDIS_DBS)
    except RuntimeError:
        raise SystemExit(
            f"Redis databases {REDIS_DBS} at {base} are all held by live runs"
        ) from None
    redis_url = f"{base}/{db}"
    prefix = f"ceiling-{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.mkdtemp(prefix="helpline-ceiling-"))
    logdir = Path(args.log_dir) if args.log_dir else tmp
    logdir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "REDIS_URL": redis_url,
        "BROKER_URL": "",
        "EVENT_CHANNEL_PREFIX": prefix,
        # Never opened: the settings want a database URL, the skeleton has no database.
        "DATABASE_URL": f"sqlite:///{tmp / 'unused.db'}",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "CEILING_ACKS_LATE": "1" if args.acks_late else "0",
        "GEVENT_TRACK_GREENLET_TREE": "false",
    }
    skeleton = Skeleton(env, logdir)
    log(describe(args) + f"; Redis {redis_url}, prefix {prefix}; load {load_average()}")
    try:
        for _ in range(args.web_processes):
            skeleton.start_web()
        for _ in range(args.worker_processes):
            skeleton.start_worker(args)
        app = chat_latency.celery_client(redis_url, prefix)
        skeleton.wait_ready(app)
        log(f"skeleton ready: {', '.join(skeleton.urls)}")
        if args.serve:
            log(
                f"bench/chat_latency.py --url {','.join(skeleton.urls)} --redis-url {redis_url} "
                f"--prefix {prefix}   (Ctrl-C here to stop)"
            )
            while True:
                time.sleep(1)
                skeleton.check_alive()
        extra = ["--url", ",".join(skeleton.urls), "--redis-url", redis_url, "--prefix", prefix]
        cl_args = chat_args(args, "skeleton", extra)
        target = chat_latency.Target(skeleton.urls, redis_url, prefix=prefix)

        def run() -> list[chat_latency.Report]:
            reports = chat_latency.run(target, cl_args, "skeleton")
            skeleton.check_alive()
            return reports

        return measure(skeleton, run, args, describe(args), redis_server_pid(redis_url))
    except KeyboardInterrupt:
        return 0
    finally:
        skeleton.stop()
        try:
            redis.Redis.from_url(redis_url, socket_timeout=5).flushdb()  # queues, results, claim
        except redis.RedisError as exc:
            log(f"could not flush {redis_url}: {exc}")
        if not args.log_dir:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
