"""Chat latency under load: acknowledgement, first streamed text and stored reply, per message.

    python bench/chat_latency.py [--sessions 1,10,50,100] [--messages 5] [--web-processes 2]
                                 [--databases sqlite,postgresql] [--plot bench/chat_latency.png]
                                 [--url URL[,URL...] [--redis-url URL]]

By default it starts its own stack (gunicorn web processes + a Celery worker, as `make run` does,
through tests.stack.Stack) on a throwaway SQLite file (`--databases postgresql`: a PostgreSQL
database named by `--database-url`, made and dropped; both: one stack after the other), Redis
database 12 and a channel prefix of its own, loads the sample KB and tears everything down
afterwards. Each level of `--sessions` is measured on the same stack, one after the other.
`--url` measures a server that is already running instead (the no-op baseline then needs
`--redis-url`, the broker it uses).

Every session is a real client: POST /api/sessions, a WebSocket, then M messages one after the
other (the next leaves when the previous reply is complete), so N sessions keep up to N messages
in flight: a closed-loop load, where throughput and latency trade against each other.

The baseline is the floor of the message path, measured on the same stack in the same run: a
no-op Celery task (`helpline.ping`) sent and awaited through the same Redis, plus the engine's
own time per answer (the stored reply's `processing_time`); and no-op tasks per second with
`--floor-tasks` in flight (what the broker and pool carry when answering costs nothing), which
answered/s is printed as a share of. The targets: `acknowledged` p50 <= 5 ms, `complete` p50 <=
2 x (round trip + engine time). `--plot` draws latency percentiles and answers/s against the
number of sessions (matplotlib, from requirements-dev.txt).
Every wait has a timeout and the whole load phase has a deadline, so the run always ends.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `tests` and `models` importable
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from websockets.asyncio.client import ClientConnection, connect  # noqa: E402
from websockets.exceptions import WebSocketException  # noqa: E402

BENCH_REDIS_DB = 12
QUESTIONS = ROOT / "bench" / "sample_questions.jsonl"
ACK_TARGET_MS = 5.0
COMPLETE_TARGET_FACTOR = 2.0


# -- statistics ------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100); None for no data, so a table shows '-'."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def ms(value: float | None, digits: int = 1) -> str:
    """Seconds as milliseconds for the tables; '-' when there is no measurement."""
    return "-" if value is None else f"{value * 1000:.{digits}f}"


# -- inputs ----------------------------------------------------------------------------------
def load_questions(path: Path = QUESTIONS) -> list[str]:
    """Questions that the KB is meant to answer (empty `relevant_ids` are off-topic probes that
    take the cheaper abstain path, which would flatter the numbers)."""
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            if row.get("relevant_ids"):
                out.append(row["question"])
    if not out:
        raise SystemExit(f"{path}: no question with relevant_ids")
    return out


# -- a throwaway stack -----------------------------------------------------------------------
def _bench_db_name(url: str) -> str:
    """Refuse any PostgreSQL database whose name does not say it is disposable."""
    name = urlparse(url).path.lstrip("/")
    if not name.endswith("_bench"):
        raise SystemExit(f"refusing to use database {name!r}: its name must end in _bench")
    return name


def _postgres_admin(url: str, create: bool) -> None:
    """Drop (and optionally re-create) the bench database through the `postgres` database."""
    import psycopg

    name = _bench_db_name(url)
    admin = urlunparse(urlparse(url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            conn.execute(f'CREATE DATABASE "{name}"')


def migrate(url: str) -> None:
    """Create the schema through the real migrations (the entry point the tests use)."""
    from models.migrate import upgrade

    upgrade(url)


def flush_redis(url: str) -> None:
    """Empty the bench's own Redis database (never called on a --url target's Redis)."""
    import redis

    redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2).flushdb()


def claim_redis(base_url: str) -> str:
    """Database 12, claimed the way test runs claim theirs: two stacks on one broker database
    take each other's Celery tasks (and each flush wipes the other's queues), which would show
    up here as lost replies. Released by the final flush."""
    from tests.stack import claim_redis_db

    try:
        db = claim_redis_db(base_url, [BENCH_REDIS_DB])
    except RuntimeError:
        raise SystemExit(
            f"Redis database {BENCH_REDIS_DB} at {base_url} is held by another live run "
            "(a test suite or a benchmark); try again when it has finished"
        ) from None
    return f"{base_url.rstrip('/')}/{db}"


@dataclass
class Target:
    """What the load runs against: web base URLs, the broker for the ping, the log folder."""

    urls: list[str]
    redis_url: str | None
    logdir: Path | None = None
    prefix: str = "helpline"  # the target's EVENT_CHANNEL_PREFIX (its queue names)


@contextmanager
def local_stack(args: argparse.Namespace, postgres_url: str | None = None) -> Iterator[Target]:
    """Web processes + one worker on a fresh database (SQLite, or `postgres_url`) and Redis db
    12; removed afterwards."""
    from tests.client import load_sample_kb
    from tests.stack import Stack

    # First, so that a second run stops before touching the first one's Redis or database.
    redis_url = claim_redis(args.redis)
    tmp = Path(tempfile.mkdtemp(prefix="helpline-bench-"))
    logdir = Path(args.log_dir) if args.log_dir else tmp / "logs"
    logdir.mkdir(parents=True, exist_ok=True)
    database_url = postgres_url or f"sqlite:///{tmp / 'helpline_bench.db'}"
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "BROKER_URL": "",
        # Pub/sub ignores database numbers: a prefix of our own keeps other stacks' events out.
        "EVENT_CHANNEL_PREFIX": f"hlbench-{uuid.uuid4().hex[:8]}",
        "STAFF_API_KEYS": f"bench-{uuid.uuid4().hex}",
        # 0 disables each limiter: every client of the benchmark is one IP on loopback.
        "RATE_LIMIT_PER_MINUTE": "0",
        "RATE_LIMIT_PER_IP_PER_MINUTE": "0",
        "SESSIONS_PER_IP_PER_MINUTE": "0",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "LLM_PROVIDER": "offline",
        "OPENAI_API_KEY": "",
        "OPENAI_BASE_URL": "",
    }
    stack = None
    try:
        if postgres_url:
            _postgres_admin(database_url, create=True)
        migrate(database_url)
        stack = Stack(env, logdir, name="bench")
        for _ in range(args.web_processes):
            stack.start_web()
        stack.start_worker()
        stack.wait_ready(timeout=120)
        log(f"stack ready: {', '.join(stack.urls)}; loading the sample KB")
        load_sample_kb(stack)
        yield Target(stack.urls, redis_url, logdir, stack.prefix)
    finally:
        if stack is not None:
            stack.stop()
        try:
            flush_redis(redis_url)  # also releases the claim
        except Exception as exc:  # Redis may be the reason we are here
            log(f"could not flush {redis_url}: {exc}")
        if postgres_url:
            try:
                _postgres_admin(database_url, create=False)
            except Exception as exc:
                log(f"could not drop the bench database: {exc}")
        shutil.rmtree(tmp, ignore_errors=True)  # the logs survive only under --log-dir


def log(text: str) -> None:
    """Progress goes to stderr so stdout is only the report."""
    print(text, file=sys.stderr, flush=True)


# -- the no-op Celery round trip ------------------------------------------------------------
def celery_client(redis_url: str, prefix: str):  # type: ignore[no-untyped-def]
    """A client configured as the target's web processes are (broker on `redis_url`, queues and
    keys under `prefix`): celeryconfig at import would read the bench's own environment."""
    from celery import Celery

    import celeryconfig
    from tests.stack import settings_of

    env = {"REDIS_URL": redis_url, "BROKER_URL": "", "EVENT_CHANNEL_PREFIX": prefix}
    app = Celery("helpline-bench")
    app.conf.update(celeryconfig.build(settings_of(env)))
    app.conf.task_default_queue = f"{prefix}.interactive"  # the ping's queue
    return app


def ping_round_trips(
    app: Any,
    count: int,
    timeout: float,
    stop: threading.Event | None = None,
    pause: float = 0.0,
    deadline: float | None = None,
) -> tuple[list[float], int]:
    """Sequential `helpline.ping` send + get; returns (round trips, failures).

    Sequential on purpose: it is the latency of one task through broker, worker and result
    backend, not the broker's throughput.
    """
    times: list[float] = []
    failures = 0
    for i in range(count):
        if (stop is not None and stop.is_set()) or (deadline and time.monotonic() > deadline):
            break
        started = time.perf_counter()
        try:
            result = app.send_task(
                "helpline.ping", args=[f"p{i}"], queue=app.conf.task_default_queue
            )
            if result.get(timeout=timeout) != f"p{i}":
                failures += 1
                continue
            times.append(time.perf_counter() - started)
            result.forget()
        except Exception:  # a timeout or a broker error: counted, never fatal
            failures += 1
        if pause:
            time.sleep(pause)
    return times, failures


def noop_throughput(app: Any, count: int, timeout: float) -> float | None:
    """No-op tasks per second with `count` in flight at once: the most answers per second this
    broker, worker pool and result backend could carry if answering cost nothing (the floor
    that answered/s is compared with)."""
    if count <= 0:
        return None
    started = time.perf_counter()
    try:
        results = [
            app.send_task("helpline.ping", args=["t"], queue=app.conf.task_default_queue)
            for _ in range(count)
        ]
        for result in results:
            result.get(timeout=timeout)
    except Exception as exc:  # a timeout or a broker error: no floor rather than a wrong one
        log(f"no-op throughput run failed: {exc}")
        return None
    rate = count / (time.perf_counter() - started)
    for result in results:
        result.forget()
    return rate


# -- the chat load ---------------------------------------------------------------------------
@dataclass
class Sample:
    """One answered message, seconds from send."""

    ack: float
    first_text: float | None
    complete: float
    processing_time: float | None


@dataclass
class LoadResult:
    """Everything the sessions measured."""

    samples: list[Sample] = field(default_factory=list)
    acks: list[float] = field(default_factory=list)  # also for messages that were never answered
    acks_later: list[float] = field(default_factory=list)  # without each session's first burst
    acks_first: list[float] = field(default_factory=list)  # each session's first: the burst
    errors: Counter = field(default_factory=Counter)
    timeouts: int = 0
    overtaken: int = 0  # replies whose events arrived before their acknowledgement
    sent: int = 0
    wall: float = 0.0
    loop_lag: list[float] = field(default_factory=list)


class Timeout(Exception):
    """A wait ran past its limit."""


def ws_url(base: str, **params: str) -> str:
    """The socket URL of a web base URL."""
    return base.replace("http://", "ws://", 1) + "/ws?" + urlencode(params)


async def recv_event(ws: ClientConnection, limit: float) -> dict:
    """The next event within `limit` seconds (Timeout otherwise)."""
    if limit <= 0:
        raise Timeout
    try:
        raw = await asyncio.wait_for(ws.recv(), limit)
    except TimeoutError:
        raise Timeout from None
    return json.loads(raw)


class Session:
    """One customer: a session, a socket and M sequential questions."""

    def __init__(self, index: int, base: str, questions: list[str], args: argparse.Namespace):
        self.index = index
        self.base = base
        self.rng = random.Random(args.seed * 100_003 + index)
        self.questions = questions
        self.args = args
        self.ws: ClientConnection | None = None

    async def open(self, http: httpx.AsyncClient) -> None:
        """Create the session over HTTP and connect its socket (until `connected`)."""
        resp = await http.post(f"{self.base}/api/sessions", json={"user_id": f"bench-{self.index}"})
        if resp.status_code != 201:
            raise RuntimeError(f"POST /api/sessions: {resp.status_code} {resp.text[:200]}")
        body = resp.json()
        self.ws = await connect(
            ws_url(self.base, session_id=body["session_id"], token=body["token"]),
            open_timeout=self.args.timeout,
            close_timeout=2,
            compression=None,  # the server does not compress; skip the negotiation
            ping_interval=None,  # keepalives would only add noise to the measurements
            max_size=2**22,
            proxy=None,
        )
        deadline = time.monotonic() + self.args.timeout
        while (await recv_event(self.ws, deadline - time.monotonic())).get("type") != "connected":
            pass

    async def close(self) -> None:
        if self.ws is not None:
            try:
                await self.ws.close()
            except (WebSocketException, OSError):
                pass

    async def ask(self, text: str, result: LoadResult, deadline: float, first: bool) -> None:
        """Send one message and wait for its acknowledgement, first delta and stored reply."""
        assert self.ws is not None
        client_msg_id = uuid.uuid4().hex
        wait_until = min(deadline, time.monotonic() + self.args.timeout)
        started = time.perf_counter()
        await self.ws.send(
            json.dumps({"type": "message", "content": text, "client_msg_id": client_msg_id})
        )
        result.sent += 1
        message_id: str | None = None
        ack = first_text = None
        # The protocol promises `acknowledged` before the reply's events; if the reply overtakes
        # it anyway, keep what came early (by the id it answers) and count the overtaking.
        early: dict[str, dict[str, Any]] = {}
        while True:
            event = await recv_event(self.ws, wait_until - time.monotonic())
            now = time.perf_counter() - started
            kind = event.get("type")
            if kind == "acknowledged" and event.get("client_msg_id") == client_msg_id:
                ack, message_id = now, str(event.get("message_id"))
                result.acks.append(ack)
                (result.acks_first if first else result.acks_later).append(ack)
                seen = early.get(message_id)
                if seen:
                    result.overtaken += 1
                    first_text = seen.get("text")
                    if "complete" in seen:
                        result.samples.append(
                            Sample(ack, first_text, seen["complete"], seen["processing_time"])
                        )
                        return
            elif kind == "error":
                result.errors[str(event.get("code"))] += 1
                return
            elif kind in ("text", "complete"):
                message = event.get("message") or {}
                reply_to = event.get("reply_to") if kind == "text" else message.get("reply_to_id")
                if message_id is None:
                    slot = early.setdefault(str(reply_to), {})
                    if kind == "text":
                        slot.setdefault("text", now)
                    else:
                        slot.update(complete=now, processing_time=message.get("processing_time"))
                elif reply_to != message_id:
                    continue
                elif kind == "text" and first_text is None:
                    first_text = now
                elif kind == "complete":
                    assert ack is not None
                    sample = Sample(ack, first_text, now, message.get("processing_time"))
                    result.samples.append(sample)
                    return

    async def run(
        self, start: asyncio.Event, count: int, result: LoadResult, deadline: float
    ) -> None:
        await start.wait()
        for i in range(count):
            if time.monotonic() > deadline:
                result.timeouts += 1
                return
            try:
                await self.ask(self.rng.choice(self.questions), result, deadline, first=i == 0)
            except Timeout:
                result.timeouts += 1
                return  # late events of that message would confuse the next one
            except (WebSocketException, OSError) as exc:
                result.errors[type(exc).__name__] += 1
                return


async def watch_loop_lag(result: LoadResult, stop: asyncio.Event, tick: float = 0.01) -> None:
    """How late the client's own event loop wakes up: if this grows, the client is the
    bottleneck and its timestamps are inflated."""
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(tick)
        result.loop_lag.append(time.perf_counter() - before - tick)


async def open_all(sessions: list[Session], timeout: float) -> Counter:
    """Open every session, at most 50 handshakes at a time; returns failures by kind."""
    failures: Counter = Counter()
    gate = asyncio.Semaphore(50)
    limits = httpx.Limits(max_connections=50, max_keepalive_connections=50)
    async with httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False) as http:

        async def one(s: Session) -> None:
            async with gate:
                try:
                    await s.open(http)
                except (Timeout, RuntimeError, httpx.HTTPError, WebSocketException, OSError) as e:
                    failures[f"open:{type(e).__name__}"] += 1
                    await s.close()
                    s.ws = None

        await asyncio.gather(*(one(s) for s in sessions))
    return failures


async def chat_load(
    urls: list[str], questions: list[str], args: argparse.Namespace, sessions: int, messages: int
) -> LoadResult:
    """N sessions (spread round-robin over the web processes), M messages each, all starting
    together once every socket is connected."""
    result = LoadResult()
    clients = [Session(i, urls[i % len(urls)], questions, args) for i in range(sessions)]
    result.errors.update(await open_all(clients, args.timeout))
    live = [s for s in clients if s.ws is not None]
    start, stop = asyncio.Event(), asyncio.Event()
    deadline = time.monotonic() + args.max_seconds
    lag = asyncio.create_task(watch_loop_lag(result, stop))
    tasks = [asyncio.create_task(s.run(start, messages, result, deadline)) for s in live]
    began = time.perf_counter()
    start.set()
    try:
        # Each task bounds itself; this is the belt to those braces.
        await asyncio.wait_for(asyncio.gather(*tasks), args.max_seconds + args.timeout + 5)
    except TimeoutError:
        result.timeouts += sum(not t.done() for t in tasks)
    result.wall = time.perf_counter() - began
    stop.set()
    await lag
    await asyncio.gather(*(s.close() for s in clients))
    return result


# -- the worker's own timing ---------------------------------------------------------------
_SUCCEEDED = re.compile(r"Task helpline\.generate_reply\[[^\]]+\] succeeded in ([0-9.]+)s")


def task_runtimes(logdir: Path | None) -> list[float]:
    """generate_reply run times as the worker logged them (Celery's 'succeeded in'): the
    engine time plus claim, context read and reply commit."""
    if logdir is None:
        return []
    out = []
    for path in logdir.glob("bench-worker*.log"):
        out += [float(m) for m in _SUCCEEDED.findall(path.read_text(errors="replace"))]
    return out


# -- report ----------------------------------------------------------------------------------
@dataclass
class Report:
    """The numbers of one run, ready for the summary and the markdown row."""

    label: str
    web_processes: int | str
    load: LoadResult
    ping: list[float]
    ping_failures: int
    ping_loaded: list[float]
    task_times: list[float]
    database: str = "sqlite"
    sessions: int = 0
    floor_rate: float | None = None  # no-op tasks/s through the same stack, same run

    def column(self, name: str) -> list[float]:
        values = [getattr(s, name) for s in self.load.samples]
        return [v for v in values if v is not None]

    @property
    def processing_median(self) -> float | None:
        values = self.column("processing_time")
        return statistics.median(values) if values else None

    @property
    def ratio(self) -> float | None:
        ping, proc = percentile(self.ping, 50), self.processing_median
        complete = percentile(self.column("complete"), 50)
        if ping is None or proc is None or complete is None:
            return None
        return complete / (ping + proc)

    @property
    def rate(self) -> float:
        return len(self.load.samples) / self.load.wall if self.load.wall else 0.0

    @property
    def floor_share(self) -> float | None:
        """Answered/s as a share of the no-op task rate measured in the same run."""
        return self.rate / self.floor_rate if self.floor_rate else None


def print_report(r: Report) -> None:
    """A readable summary, then one markdown table to paste."""
    load = r.load
    errors = sum(load.errors.values())
    print(f"\n## {r.label} ({r.web_processes} web process(es))\n")
    print(
        f"sent {load.sent}, answered {len(load.samples)} in {load.wall:.1f} s "
        f"-> {r.rate:.1f} answered/s; errors {errors} {dict(load.errors) or ''}; "
        f"timeouts {load.timeouts}; acknowledgements overtaken by their reply {load.overtaken}"
    )
    for name, label in (
        ("ack", "acknowledged"),
        ("first_text", "first text"),
        ("complete", "complete"),
    ):
        values = load.acks if name == "ack" else r.column(name)
        print(
            f"  send -> {label:<13} p50 {ms(percentile(values, 50)):>8} ms  "
            f"p95 {ms(percentile(values, 95)):>8} ms  p99 {ms(percentile(values, 99)):>8} ms  "
            f"(n={len(values)})"
        )
    if load.acks_later and len(load.acks_later) < len(load.acks):
        # Every session's first message leaves at the same instant: a burst the server queues.
        later = load.acks_later
        print(
            f"  acknowledged, without each session's first message: p50 "
            f"{ms(percentile(later, 50))} ms  p95 {ms(percentile(later, 95))} ms  "
            f"p99 {ms(percentile(later, 99))} ms  (n={len(later)})"
        )
        burst = load.acks_first
        print(
            f"  acknowledged, each session's first message only (the burst): p50 "
            f"{ms(percentile(burst, 50))} ms  p95 {ms(percentile(burst, 95))} ms  "
            f"max {ms(max(burst, default=None))} ms  (n={len(burst)})"
        )
    print(
        f"  no-op ping (idle)    p50 {ms(percentile(r.ping, 50)):>8} ms  "
        f"p95 {ms(percentile(r.ping, 95)):>8} ms  (n={len(r.ping)}, failed {r.ping_failures})"
    )
    if r.ping_loaded:
        print(
            f"  no-op ping (loaded)  p50 {ms(percentile(r.ping_loaded, 50)):>8} ms  "
            f"p95 {ms(percentile(r.ping_loaded, 95)):>8} ms  (n={len(r.ping_loaded)})"
        )
    if r.floor_rate:
        print(
            f"  no-op tasks/s (same stack, same run) {r.floor_rate:.0f}; answered/s is "
            f"{r.floor_share:.2f} of it"
        )
    print(f"  engine processing_time median {ms(r.processing_median)} ms")
    if r.task_times:
        print(
            f"  worker generate_reply run time p50 {ms(percentile(r.task_times, 50))} ms "
            f"p95 {ms(percentile(r.task_times, 95))} ms (n={len(r.task_times)})"
        )
    print(
        f"  client loop lag p99 {ms(percentile(load.loop_lag, 99))} ms "
        "(if large, the client itself is the bottleneck)"
    )
    ack50 = percentile(load.acks, 50)
    ratio = r.ratio
    print(
        f"  targets: ack p50 <= {ACK_TARGET_MS:.0f} ms: "
        f"{'-' if ack50 is None else ('met' if ack50 * 1000 <= ACK_TARGET_MS else 'MISSED')}; "
        f"complete p50 / (ping p50 + processing) = {'-' if ratio is None else f'{ratio:.2f}'} "
        f"(target <= {COMPLETE_TARGET_FACTOR:.0f}: "
        f"{'-' if ratio is None else ('met' if ratio <= COMPLETE_TARGET_FACTOR else 'MISSED')})"
    )
    acks, text, done = load.acks, r.column("first_text"), r.column("complete")

    def trio(values: list[float]) -> str:
        return " / ".join(ms(percentile(values, q)) for q in (50, 95, 99))

    print(
        "\n| run | web | ack p50/p95/p99 ms | first text p50/p95/p99 ms "
        "| complete p50/p95/p99 ms | answered/s | errors | timeouts | ack overtaken "
        "| ping p50/p95 ms | processing p50 ms | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {r.label} | {r.web_processes} | {trio(acks)} | {trio(text)} | {trio(done)} "
        f"| {r.rate:.1f} | {errors} | {load.timeouts} | {load.overtaken} "
        f"| {ms(percentile(r.ping, 50))} / {ms(percentile(r.ping, 95))} "
        f"| {ms(r.processing_median)} | {'-' if ratio is None else f'{ratio:.2f}'} |"
    )


def print_summary(reports: list[Report]) -> None:
    """One table over every database and load level of this run."""
    print(
        "\n| database | sessions x messages | ack p50/p95 ms | complete p50/p95 ms | answered/s "
        "| no-op tasks/s | share of floor | ping p50 ms | processing p50 ms | ratio | errors |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in reports:
        acks, done = r.load.acks, r.column("complete")
        print(
            f"| {r.database} | {r.label} | {ms(percentile(acks, 50))} / {ms(percentile(acks, 95))} "
            f"| {ms(percentile(done, 50))} / {ms(percentile(done, 95))} | {r.rate:.1f} "
            f"| {'-' if r.floor_rate is None else f'{r.floor_rate:.0f}'} "
            f"| {'-' if r.floor_share is None else f'{r.floor_share:.2f}'} "
            f"| {ms(percentile(r.ping, 50))} | {ms(r.processing_median)} "
            f"| {'-' if r.ratio is None else f'{r.ratio:.2f}'} "
            f"| {sum(r.load.errors.values()) + r.load.timeouts} |"
        )


def pyplot() -> Any | None:
    """matplotlib's pyplot drawing to files (no display), or None (said) when it is missing:
    it is a benchmark extra (requirements-dev.txt), never a reason for a run to fail."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed (requirements-dev.txt): no plot")
        return None
    return plt


def plot(reports: list[Report], path: Path) -> None:
    """Latency percentiles (and answers per second) against the number of sessions, one line
    per database and percentile, as a PNG."""
    plt = pyplot()
    if plt is None:
        return
    fig, (lat, rate) = plt.subplots(1, 2, figsize=(12, 4.8))
    styles = {"sqlite": "-", "postgresql": "--"}
    for database in dict.fromkeys(r.database for r in reports):
        rows = sorted((r for r in reports if r.database == database), key=lambda r: r.sessions)
        x = [r.sessions for r in rows]
        style = styles.get(database, ":")
        for name, q, colour in (
            ("ack", 50, "tab:green"),
            ("ack", 95, "tab:olive"),
            ("complete", 50, "tab:blue"),
            ("complete", 95, "tab:purple"),
        ):
            y = [
                (percentile(r.load.acks if name == "ack" else r.column("complete"), q) or 0) * 1000
                for r in rows
            ]
            lat.plot(x, y, style, marker="o", color=colour, label=f"{database} {name} p{q}")
        rate.plot(x, [r.rate for r in rows], style, marker="o", label=f"{database} answered/s")
        floors = [r.floor_rate for r in rows if r.floor_rate]
        if floors:
            rate.axhline(
                statistics.median(floors),
                linestyle=style,
                color="grey",
                label=f"{database} no-op tasks/s",
            )
    lat.set_xscale("log")
    lat.set_yscale("log")
    lat.set_xlabel("concurrent sessions (closed loop)")
    lat.set_ylabel("ms from send")
    lat.set_title("Latency against load")
    lat.grid(True, which="both", alpha=0.3)
    lat.legend(fontsize=7)
    rate.set_xscale("log")
    rate.set_xlabel("concurrent sessions (closed loop)")
    rate.set_ylabel("answers per second")
    rate.set_title("Throughput against the no-op floor")
    rate.grid(True, which="both", alpha=0.3)
    rate.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    log(f"plot written to {path}")


# -- main ------------------------------------------------------------------------------------
def run(target: Target, args: argparse.Namespace, database: str = "sqlite") -> list[Report]:
    """Baseline (no-op round trip and throughput), warm-up, then the measured load at each
    level of --sessions (with a ping probe alongside it)."""
    questions = load_questions()
    app = celery_client(target.redis_url, target.prefix) if target.redis_url else None
    ping: list[float] = []
    ping_failures = 0
    floor_rate = None
    if app is not None and args.pings:
        log(f"no-op baseline: {args.pings} sequential helpline.ping round trips")
        ping_round_trips(app, 10, args.timeout)  # connections and the worker's first task
        ping, ping_failures = ping_round_trips(
            app, args.pings, args.timeout, deadline=time.monotonic() + args.max_seconds
        )
        log(f"no-op throughput: {args.floor_tasks} pings in flight at once")
        floor_rate = noop_throughput(app, args.floor_tasks, args.timeout)
    if args.warmup:
        # Each worker process builds its retrieval index on its first question; not measured.
        log(f"warm-up: {args.warmup} messages")
        warm = asyncio.run(chat_load(target.urls[:1], questions, args, 1, args.warmup))
        if len(warm.samples) < args.warmup:
            log(f"warm-up answered {len(warm.samples)}/{args.warmup}: {dict(warm.errors)}")
    reports = []
    for sessions in args.levels:
        log(f"load: {sessions} sessions x {args.messages} messages on {len(target.urls)} web")
        skip = len(task_runtimes(target.logdir))
        stop = threading.Event()
        loaded: list[float] = []
        probe = None
        if app is not None and args.pings:

            def probe_body(stop: threading.Event = stop, loaded: list[float] = loaded) -> None:
                # Every 100 ms: what a no-op task waits behind the chat load in the same queue.
                loaded.extend(ping_round_trips(app, 10_000, args.timeout, stop, pause=0.1)[0])

            probe = threading.Thread(target=probe_body, name="ping-probe", daemon=True)
            probe.start()
        try:
            result = asyncio.run(chat_load(target.urls, questions, args, sessions, args.messages))
        finally:
            stop.set()
            if probe is not None:
                probe.join(args.timeout + 5)
        time.sleep(0.5)  # let the worker flush its last log lines
        label = f"{sessions}x{args.messages}"
        if args.label:
            label = f"{args.label} {label}"
        reports.append(
            Report(
                label=label,
                web_processes=len(target.urls),
                load=result,
                ping=ping,
                ping_failures=ping_failures,
                ping_loaded=list(loaded),
                task_times=task_runtimes(target.logdir)[skip:],
                database=database,
                sessions=sessions,
                floor_rate=floor_rate,
            )
        )
    return reports


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--sessions",
        default="100",
        help="concurrent WebSocket sessions; a comma-separated list (1,10,50,100) measures each",
    )
    p.add_argument("--messages", type=int, default=5, help="sequential messages per session")
    p.add_argument("--web-processes", type=int, default=2, help="gunicorn processes (own stack)")
    p.add_argument("--url", help="running server(s), comma-separated, instead of our own stack")
    p.add_argument("--redis-url", help="with --url: the broker for the no-op ping baseline")
    p.add_argument("--prefix", default="helpline", help="with --url: its EVENT_CHANNEL_PREFIX")
    p.add_argument("--redis", default="redis://localhost:6379", help="own stack: Redis (db 12)")
    p.add_argument(
        "--databases",
        default="sqlite",
        help="own stack: sqlite, postgresql or both (sqlite,postgresql), one stack each",
    )
    p.add_argument(
        "--database-url",
        default="postgresql://root@localhost:5432/helpline_chat_bench",
        help="the PostgreSQL database for --databases postgresql (name *_bench; made and dropped)",
    )
    p.add_argument("--pings", type=int, default=500, help="no-op round trips for the baseline")
    p.add_argument(
        "--floor-tasks", type=int, default=1000, help="no-op tasks in flight for the tasks/s floor"
    )
    p.add_argument("--warmup", type=int, default=4, help="unmeasured messages first")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds for any single wait")
    p.add_argument("--max-seconds", type=float, default=600.0, help="deadline of each phase")
    p.add_argument("--seed", type=int, default=1, help="question choice")
    p.add_argument("--label", help="name of the run in the table")
    p.add_argument("--log-dir", help="own stack: keep the process logs here")
    p.add_argument("--plot", help="write latency percentiles against load to this PNG")
    args = p.parse_args(argv)
    try:
        args.levels = [int(n) for n in str(args.sessions).split(",") if n.strip()]
    except ValueError:
        p.error("--sessions takes whole numbers, comma-separated")
    args.dbs = [d.strip() for d in args.databases.split(",") if d.strip()]
    if not args.levels or min(args.levels) < 1 or args.messages < 1 or args.web_processes < 1:
        p.error("--sessions, --messages and --web-processes must be at least 1")
    if not args.dbs or set(args.dbs) - {"sqlite", "postgresql"}:
        p.error("--databases: sqlite, postgresql or both")
    urls = (args.url or "").split(",") + [args.redis_url, args.redis]
    if "postgresql" in args.dbs:
        urls.append(args.database_url)
        _bench_db_name(args.database_url)
    for url in filter(None, urls):
        if urlparse(url).hostname not in ("127.0.0.1", "localhost", "::1"):
            p.error(f"{url}: not a loopback address; the benchmark only generates local traffic")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    reports: list[Report] = []
    if args.url:
        urls = [u.rstrip("/") for u in args.url.split(",") if u]
        for url in urls:
            httpx.get(f"{url}/health/ready", timeout=10, trust_env=False).raise_for_status()
        if not args.redis_url:
            log("no --redis-url: skipping the no-op ping baseline")
        reports = run(Target(urls, args.redis_url, prefix=args.prefix), args, "target")
    else:
        for database in args.dbs:
            pg = args.database_url if database == "postgresql" else None
            with local_stack(args, pg) as target:
                reports += run(target, args, database)
    for report in reports:
        print_report(report)
    if len(reports) > 1:
        print_summary(reports)
    if args.plot:
        plot(reports, Path(args.plot))
    return 0 if all(r.load.samples for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
