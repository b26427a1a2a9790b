"""Chaos: 50 sessions x 40 messages over WebSockets while the worker is SIGKILLed at random
moments (and restarted) and Redis restarts empty; afterwards every message has exactly one
answer, no client saw a seq gap or a repeat, and everything finished within a stated bound.

The stack is its own (`side_stack`: database, channel prefix, two web processes and a worker)
on a private `redis-server` on a free port (`private_redis` in tests/stack.py), because
restarting the machine's shared Redis would break every other test run on it. Timings are
lowered so leases run out quickly: AGENT_LEASE_SECONDS=3, SWEEP_INTERVAL=1; the rate limits
are off (40 messages a session in two minutes, 50 customers on one address).

Load is open-loop at a steady pace: each session sends its next message on a fixed schedule
(every SEND_SECONDS / 40 s, sessions staggered evenly), whether or not the previous one was
answered, so the kills always find work in flight and a backlog builds while the worker is
down. Every client also drops its socket once at a random moment and reconnects with
`after=<last seq it saw>`, and once more at the end, to collect anything it missed. The test
is also the worker's supervisor: a worker that exits by itself is restarted (and counted).

Figures (printed, and asserted on as a dict):
  sent                 distinct messages sent (each acknowledged, then stored)
  answered_once        user messages with exactly one assistant reply (reply_to_id)
  failed_with_reason   user messages closed `failed` (with an error), at most one reply
  lost                 sent but never stored, or stored and never closed
  duplicated           user messages with more than one reply, or a `complete` seen twice
  seq_gaps / seq_repeats  per client, after replay: the persisted seqs it received vs 1..N
  orphan_recovery_s    per kill: from the SIGKILL to the last reply among the messages the
                       dead worker had claimed
  kill_recovery_s      per kill: the same for every message open at that moment (the dead
                       worker's and the backlog behind it); the worst is the headline figure
  first_answer_after_restart_s  per kill: from the restart to the first reply (worker boot)
  redis_recovery_s     from the Redis kill to the last reply among messages open then or
                       sent while it was down (their tasks died with Redis: the sweeper)
  finished_after_last_send_s  from the last send to the last reply
  sweeper              tasks the sweepers re-sent, from the workers' logs
  worker_exits_by_itself  worker exits that were not our kills (restarted at once)

CHAOS_SEED picks the moments (printed; set it to replay a run), CHAOS_SEND_SECONDS the pace,
CHAOS_KEEP_LOGS a folder that keeps the processes' logs.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from models.chat import Message
from models.db import make_engine
from models.work import OPEN, REPLY
from tests.conftest import side_stack
from tests.stack import ROOT, private_redis

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

SESSIONS = 50
MESSAGES = 40
# 2000 messages in 120 s: 16.7/s, below the ~20-25/s one worker (2 processes) answered on the
# 2-core machine with other test runs on it (alone it takes 50/s); at 25/s each worker restart
# left a backlog that outlived the send phase (see bench/README.md, "Chaos and recovery").
SEND_SECONDS = float(os.environ.get("CHAOS_SEND_SECONDS", "120"))
SEED = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1_000_000))
LEASE_SECONDS = 3
SWEEP_INTERVAL = 1
# Everything is answered within this many seconds of the last send.
FINISH_BOUND = 120.0
# A restarted worker must boot (Celery + haystack imports: 2-4 s measured, more on a busy
# 2-core machine) before it answers anything; on top of that a dead worker's claim needs its
# lease to run out plus one sweep.
BOOT_ALLOWANCE = 30.0
SLACK = 15.0
SUPERVISE_POLL = 0.25  # how often the test, as the worker's supervisor, checks it is alive
ENV = {
    "AGENT_LEASE_SECONDS": str(LEASE_SECONDS),
    "SWEEP_INTERVAL": str(SWEEP_INTERVAL),
    "RATE_LIMIT_PER_MINUTE": "0",
    "RATE_LIMIT_PER_IP_PER_MINUTE": "0",  # 50 customers on one address, 720 messages a minute
    "SESSIONS_PER_IP_PER_MINUTE": "0",
    "LOG_LEVEL": "WARNING",  # 2000 answers of INFO lines would cost CPU the test needs
}


# -- questions -----------------------------------------------------------------------------
def load_questions() -> list[str]:
    """The benchmark's answerable questions, minus any that ask for a person: an explicit
    request hands the conversation over, after which the bot is (rightly) silent."""
    from worker.escalation import before_answer

    out = []
    for line in (ROOT / "bench" / "sample_questions.jsonl").read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            if row.get("relevant_ids") and not before_answer(row["question"]).escalate:
                out.append(row["question"])
    assert len(out) >= 20
    return out


# -- clients -------------------------------------------------------------------------------
@dataclass
class Outgoing:
    """One message a client sends; `stored` once its acknowledgement (or its copy) arrived."""

    client_msg_id: str
    content: str
    due: float  # monotonic time it is scheduled for
    sent_at: float | None = None  # wall clock of the first send
    sends: int = 0
    stored: bool = False


@dataclass
class Client:
    """One customer: a session, one socket at a time, a fixed sending schedule."""

    index: int
    base: str
    outgoing: list[Outgoing]
    reconnect_at: float  # monotonic time of the planned drop-and-reconnect
    session_id: str = ""
    token: str = ""
    ws: ClientConnection | None = None
    open_event: asyncio.Event = field(default_factory=asyncio.Event)
    seqs: list[int] = field(default_factory=list)  # persisted seqs received, in order
    last_seq: int = 0
    server_last_seq: int = 0  # `connected.last_seq` of the latest connection
    completes: Counter = field(default_factory=Counter)  # reply_to_id -> complete events
    errors: list[dict] = field(default_factory=list)
    connects: int = 0
    unexpected_drops: int = 0
    closing: bool = False  # a close we asked for (planned reconnect or the end)
    finished: bool = False
    close_codes: Counter = field(default_factory=Counter)  # the server's close codes seen
    fallback: str = ""  # where to reconnect once this web process closes or refuses us

    def url(self, after: int | None) -> str:
        params = {"session_id": self.session_id, "token": self.token}
        if after is not None:
            params["after"] = str(after)
        return self.base.replace("http://", "ws://", 1) + "/ws?" + urlencode(params)

    def on_event(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "connected":
            self.server_last_seq = int(event["last_seq"])
            return
        if kind == "acknowledged" and event.get("duplicate"):
            # The answer to a re-send: it repeats the original's seq and is not a log event.
            self._stored(event.get("client_msg_id"))
            return
        seq = event.get("seq")
        if kind == "acknowledged" and seq is not None and int(seq) <= self.last_seq:
            # The answer to our frame after its user_message already came from the database
            # (a resync overtook it): the log event was delivered once; this is only the reply.
            self._stored(event.get("client_msg_id"))
            return
        if seq is not None:
            self.seqs.append(int(seq))
            self.last_seq = max(self.last_seq, int(seq))
        if kind == "acknowledged":
            self._stored(event.get("client_msg_id"))
        elif kind == "user_message":  # our own message replayed after a drop
            self._stored((event.get("message") or {}).get("client_msg_id"))
        elif kind == "complete":
            self.completes[(event.get("message") or {}).get("reply_to_id")] += 1
        elif kind == "error":
            self.errors.append(event)  # a refused message stays unstored: re-sent later

    def _stored(self, client_msg_id: str | None) -> None:
        for out in self.outgoing:
            if out.client_msg_id == client_msg_id:
                out.stored = True

    async def create(self, http: httpx.AsyncClient) -> None:
        resp = await http.post(f"{self.base}/api/sessions", json={"user_id": f"chaos-{self.index}"})
        assert resp.status_code == 201, resp.text
        body = resp.json()
        self.session_id, self.token = body["session_id"], body["token"]

    async def keep_connected(self) -> None:
        """Connect, read until the socket closes, reconnect with after=<last seq> until done."""
        while not self.finished:
            after = self.last_seq if self.connects else None
            try:
                self.ws = await connect(
                    self.url(after),
                    open_timeout=20,
                    close_timeout=2,
                    compression=None,
                    ping_interval=None,
                    max_size=2**22,
                    proxy=None,
                )
            except (WebSocketException, OSError, TimeoutError):
                if self.fallback:  # its web process is gone: the balancer routes elsewhere
                    self.base, self.fallback = self.fallback, ""
                await asyncio.sleep(0.5)
                continue
            self.connects += 1
            self.closing = False
            try:
                first = json.loads(await asyncio.wait_for(self.ws.recv(), 20))
                assert first["type"] == "connected", first
                self.on_event(first)
                self.open_event.set()
                async for raw in self.ws:
                    self.on_event(json.loads(raw))
            except (ConnectionClosed, OSError, TimeoutError):
                pass
            self.open_event.clear()
            if not self.closing:
                if self.ws.close_code is not None:
                    self.close_codes[self.ws.close_code] += 1
                if self.fallback:  # as a load balancer would route it (1001 expected)
                    self.base, self.fallback = self.fallback, ""
            if not self.closing and not self.finished:
                self.unexpected_drops += 1
                await asyncio.sleep(0.2)

    async def send(self, out: Outgoing) -> None:
        while True:
            await self.open_event.wait()
            assert self.ws is not None
            try:
                await self.ws.send(
                    json.dumps(
                        {
                            "type": "message",
                            "content": out.content,
                            "client_msg_id": out.client_msg_id,
                        }
                    )
                )
            except ConnectionClosed:
                await asyncio.sleep(0.1)
                continue
            if out.sent_at is None:
                out.sent_at = time.time()
            out.sends += 1
            return

    async def drop(self) -> None:
        """Close our socket on purpose; keep_connected reconnects with after=<last seq>."""
        if self.ws is not None and self.open_event.is_set():
            self.closing = True
            await self.ws.close()

    async def run_schedule(self) -> None:
        """Send every message at its time, dropping the socket once on the way."""
        dropped = False
        for out in self.outgoing:
            now = time.monotonic()
            if not dropped and self.reconnect_at <= out.due:
                await asyncio.sleep(max(0.0, self.reconnect_at - now))
                await self.drop()
                dropped = True
                now = time.monotonic()
            await asyncio.sleep(max(0.0, out.due - now))
            await self.send(out)

    async def resend_unstored(self, older_than: float = 10.0) -> int:
        """Re-send (same client_msg_id: the server answers `duplicate`) what was never stored."""
        count = 0
        for out in self.outgoing:
            if not out.stored and (out.sends == 0 or time.monotonic() - out.due > older_than):
                await self.send(out)
                count += 1
        return count

    async def catch_up(self, timeout: float) -> None:
        """Reconnect with after=<last seq> and read until the server's last seq has arrived."""
        before = self.connects
        await self.drop()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (
                self.connects > before
                and self.open_event.is_set()
                and self.last_seq >= self.server_last_seq
            ):
                # The final connection's `connected.last_seq` is the session's last seq now.
                return
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        self.finished = True
        self.closing = True
        if self.ws is not None:
            try:
                await self.ws.close()
            except (WebSocketException, OSError):
                pass


def exactly_once(clients: list[Client], histories: dict[int, list[dict]]) -> tuple[int, list[str]]:
    """Messages answered exactly once (one stored reply, status done), and every departure:
    a message not stored, a reply missing or doubled, a `complete` seen twice, a gap or repeat
    in the seqs a client saw. Shared by the topology and failover tests."""
    problems: list[str] = []
    answered_once = 0
    for c in clients:
        messages = histories[c.index]
        users = [m for m in messages if m["role"] == "user"]
        replies = Counter(m["reply_to_id"] for m in messages if m["role"] == "assistant")
        if sorted(u["client_msg_id"] for u in users) != sorted(o.client_msg_id for o in c.outgoing):
            problems.append(f"session {c.index}: stored {len(users)} of {len(c.outgoing)}")
        for u in users:
            if replies[u["id"]] == 1 and u["status"] == "done":
                answered_once += 1
            else:
                problems.append(f"{u['client_msg_id']}: {u['status']}, {replies[u['id']]} replies")
        if any(n > 1 for n in c.completes.values()):
            problems.append(f"session {c.index}: a complete arrived twice")
        if c.seqs != list(range(1, c.server_last_seq + 1)):
            problems.append(f"session {c.index}: seqs {c.seqs} (last {c.server_last_seq})")
    return answered_once, problems


# -- the chaos -----------------------------------------------------------------------------
@dataclass
class Fault:
    """One injected failure and what was open when it struck."""

    kind: str  # "worker" | "redis"
    at: float  # wall clock of the kill
    back: float = 0.0  # wall clock of the restart
    open_ids: set[str] = field(default_factory=set)  # user messages not yet closed
    orphan_ids: set[str] = field(default_factory=set)  # claimed by the dead worker


def open_messages(db_url_engine) -> tuple[set[str], set[str]]:  # type: ignore[no-untyped-def]
    """(every open user message, those being processed) in the stack's database."""
    with Session(db_url_engine) as db:
        rows = db.execute(
            select(Message.id, Message.status).where(
                Message.role == "user", Message.status.in_([s.value for s in OPEN])
            )
        ).all()
    return {r[0] for r in rows}, {r[0] for r in rows if r[1] == "processing"}


def mid_answer(engine, within: float) -> bool:  # type: ignore[no-untyped-def]
    """Wait (at most `within` s) for an instant when some message is being answered, so a
    kill at a random moment also catches a claim in flight (answers take ~30 ms)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with Session(engine) as db:
            if db.scalar(
                select(Message.id).where(Message.role == "user", Message.status == "processing")
            ):
                return True
        time.sleep(0.01)
    return False


@dataclass
class Exit:
    """The worker exiting by itself (not one of our kills): restarted as a supervisor would."""

    at: float  # wall clock it was noticed
    code: int | None
    after: str  # the fault before it
    seconds_after: float


def restart_exited(stack) -> None:  # type: ignore[no-untyped-def]
    """What systemd or a platform's process manager does for a crashed worker."""
    try:
        os.killpg(stack.worker.pid, signal.SIGKILL)  # any child left behind
    except ProcessLookupError:
        pass
    stack.worker.wait(10)
    stack.start_worker()


def chaos(stack, server, engine, t0, rng, faults, exits, stop) -> None:  # type: ignore[no-untyped-def]
    """Three worker kills (each at a random moment, nudged to the next instant a message is
    being answered) and one empty Redis restart at random moments of the send phase; in
    between (and until `stop`), restart the worker if it exits by itself."""
    plan = [
        (rng.uniform(0.10, 0.25), "worker"),
        (rng.uniform(0.32, 0.42), "redis"),
        (rng.uniform(0.48, 0.62), "worker"),
        (rng.uniform(0.70, 0.85), "worker"),
    ]

    def supervise(until: float | None) -> None:
        while not stop.is_set() and (until is None or time.monotonic() < until):
            if stack.worker is not None and stack.worker.poll() is not None:
                last = faults[-1] if faults else None
                exits.append(
                    Exit(
                        time.time(),
                        stack.worker.returncode,
                        last.kind if last else "none",
                        round(time.time() - last.back, 2) if last else 0.0,
                    )
                )
                restart_exited(stack)
            stop.wait(SUPERVISE_POLL)

    for fraction, kind in plan:
        supervise(t0 + fraction * SEND_SECONDS)
        fault = Fault(kind, at=time.time())
        if kind == "worker":
            mid_answer(engine, within=2.0)
            stack.kill_worker()  # SIGKILL to the whole process group
            fault.open_ids, fault.orphan_ids = open_messages(engine)
            time.sleep(rng.uniform(0.5, 3.0))
            stack.start_worker()
        else:
            server.kill()
            fault.open_ids, _ = open_messages(engine)
            time.sleep(rng.uniform(1.0, 2.5))
            server.start()
        fault.back = time.time()
        faults.append(fault)
    supervise(None)


async def load(clients: list[Client], t0: float, on_sent) -> dict:  # type: ignore[no-untyped-def]
    """Connect every client, run the schedules; returns client-side counts."""
    limits = httpx.Limits(max_connections=20)
    async with httpx.AsyncClient(timeout=30, limits=limits, trust_env=False) as http:
        for chunk in range(0, len(clients), 10):
            await asyncio.gather(*(c.create(http) for c in clients[chunk : chunk + 10]))
    readers = [asyncio.create_task(c.keep_connected()) for c in clients]
    await asyncio.wait_for(asyncio.gather(*(c.open_event.wait() for c in clients)), 60)
    await asyncio.gather(*(c.run_schedule() for c in clients))
    on_sent()
    resent = 0
    # Anything refused or lost in a drop is sent again until stored (bounded).
    deadline = time.monotonic() + 60
    while any(not o.stored for c in clients for o in c.outgoing):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(2.0)
        resent += sum(await asyncio.gather(*(c.resend_unstored() for c in clients)))
    return {"readers": readers, "resent": resent}


async def finish(clients: list[Client], readers: list[asyncio.Task]) -> None:
    """Final reconnect of every client with after=<last seq>, then close."""
    await asyncio.gather(*(c.catch_up(30) for c in clients))
    await asyncio.gather(*(c.close() for c in clients))
    await asyncio.wait(readers, timeout=10)


def wait_all_closed(engine, expected: int, timeout: float) -> float:  # type: ignore[no-untyped-def]
    """Until every stored user message is closed; returns when (wall clock)."""
    deadline = time.monotonic() + timeout
    while True:
        with Session(engine) as db:
            stored = db.scalar(select(func.count()).where(Message.role == "user"))
            still = db.scalar(
                select(func.count()).where(
                    Message.role == "user", Message.status.in_([s.value for s in OPEN])
                )
            )
        if stored >= expected and still == 0:
            return time.time()
        if time.monotonic() > deadline:
            return time.time()
        time.sleep(0.5)


def sweeper_counts(logdir: Path) -> Counter:
    """Tasks the sweepers re-sent (and gave up on), by kind, from the workers' JSON logs."""
    out: Counter = Counter()
    for path in logdir.glob("chaos-worker*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if "sweeper recovered work" not in line:
                continue
            try:
                row = json.loads(line)
            except ValueError:
                continue
            out[f"{row.get('kind')}_resent"] += int(row.get("resent") or 0)
            out[f"{row.get('kind')}_gave_up"] += int(row.get("gave_up") or 0)
    return out


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted values, rounded for the figures."""
    if not values:
        return None
    return round(values[min(len(values) - 1, int(len(values) * q / 100))], 3)


def epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(UTC).timestamp()


# -- the test ------------------------------------------------------------------------------
@pytest.mark.timeout(600)
def test_every_message_answered_once_through_worker_kills_and_a_redis_restart(logdir):
    rng = random.Random(SEED)
    print(f"\nchaos seed {SEED} (CHAOS_SEED={SEED} replays these moments)")
    questions = load_questions()
    began = time.monotonic()
    with (
        private_redis(logdir, "chaos") as server,
        side_stack(logdir, "chaos", {**ENV, "REDIS_URL": server.url}) as stack,
    ):
        stack.start_web()  # a second web process: sockets spread over both
        stack.wait_ready()
        engine = make_engine(stack.env["DATABASE_URL"])
        ready_s = time.monotonic() - began

        t0 = time.monotonic() + 3.0  # time to create sessions and connect
        step = SEND_SECONDS / MESSAGES
        clients = []
        for i in range(SESSIONS):
            phase = i * step / SESSIONS
            outgoing = [
                Outgoing(f"c{i}-m{j}", rng.choice(questions), due=t0 + phase + j * step)
                for j in range(MESSAGES)
            ]
            reconnect_at = t0 + rng.uniform(0.05, 0.95) * SEND_SECONDS
            clients.append(Client(i, stack.urls[i % len(stack.urls)], outgoing, reconnect_at))

        faults: list[Fault] = []
        exits: list[Exit] = []
        stop = threading.Event()
        chaos_thread = threading.Thread(
            target=chaos,
            args=(stack, server, engine, t0, rng, faults, exits, stop),
            name="chaos",
        )
        last_send: list[float] = []

        async def main() -> dict:
            chaos_thread.start()
            out = await load(clients, t0, lambda: last_send.append(time.time()))
            closed_at = await asyncio.to_thread(
                wait_all_closed, engine, SESSIONS * MESSAGES, FINISH_BOUND
            )
            out["closed_at"] = closed_at
            await finish(clients, out.pop("readers"))
            return out

        try:
            out = asyncio.run(main())
        finally:
            stop.set()
            chaos_thread.join(60)
        assert not chaos_thread.is_alive()
        assert [f.kind for f in faults] == ["worker", "redis", "worker", "worker"]
        assert stack.worker is not None and stack.worker.poll() is None, stack.tail()

        # -- what the server stored: every session's history, as a client reads it ----------
        histories = {}
        with httpx.Client(timeout=30, trust_env=False) as http:
            for c in clients:
                resp = http.get(
                    f"{c.base}/api/chat/sessions/{c.session_id}/messages",
                    params={"limit": 500},
                    headers={"Authorization": f"Bearer {c.token}"},
                )
                assert resp.status_code == 200, resp.text
                histories[c.index] = resp.json()["messages"]
        with Session(engine) as db:  # the reasons of failed messages (not in the history)
            failed_reasons = dict(
                db.execute(
                    select(Message.id, Message.error).where(
                        Message.role == "user", Message.status == "failed"
                    )
                ).all()
            )
        engine.dispose()
        sweeps = sweeper_counts(logdir)
        if os.environ.get("CHAOS_KEEP_LOGS"):  # the processes' logs outlive the run there
            keep = Path(os.environ["CHAOS_KEEP_LOGS"])
            keep.mkdir(parents=True, exist_ok=True)
            for path in logdir.glob("chaos-*.log"):
                shutil.copy(path, keep / path.name)

    wall_s = time.monotonic() - began
    answered_once = failed = lost = duplicated = silent = 0
    reply_at: dict[str, float] = {}  # user message id -> wall clock of its reply
    problems: list[str] = []
    for c in clients:
        messages = histories[c.index]
        users = [m for m in messages if m["role"] == "user"]
        replies = Counter(m["reply_to_id"] for m in messages if m["role"] == "assistant")
        for m in messages:
            if m["role"] == "assistant":
                reply_at.setdefault(m["reply_to_id"], epoch(m["timestamp"]))
        sent_ids = {o.client_msg_id for o in c.outgoing}
        stored_ids = {u["client_msg_id"] for u in users}
        if stored_ids != sent_ids or len(users) != len(sent_ids):
            lost += len(sent_ids - stored_ids)
            problems.append(f"session {c.index}: stored {len(users)} of {len(sent_ids)}")
        for u in users:
            n = replies[u["id"]]
            if n > 1:
                duplicated += 1
                problems.append(f"session {c.index} {u['client_msg_id']}: {n} replies")
            elif u["status"] == "failed":
                failed += 1  # with or without its apology; the reason is checked below
                problems.append(f"session {c.index} {u['client_msg_id']}: failed")
            elif n == 1 and u["status"] == "done":
                answered_once += 1
            elif n == 0 and u["status"] == "done":
                silent += 1  # handed to a person (no question here asks for one)
                problems.append(f"session {c.index} {u['client_msg_id']}: no reply, done")
            else:
                lost += 1
                problems.append(f"session {c.index} {u['client_msg_id']}: {u['status']}, {n}")
        if sum(replies.values()) != sum(replies[u["id"]] for u in users):
            problems.append(f"session {c.index}: a reply to something that is not a message")
        duplicated += sum(1 for n in c.completes.values() if n > 1)

    # Seqs as each client received them across all its connections, after the final replay.
    seq_gaps = seq_repeats = 0
    for c in clients:
        expected = list(range(1, c.server_last_seq + 1))
        counts = Counter(c.seqs)
        gaps = [s for s in expected if s not in counts]
        repeats = [s for s, n in counts.items() if n > 1]
        seq_gaps += len(gaps)
        seq_repeats += len(repeats)
        if c.seqs != expected:
            problems.append(
                f"session {c.index}: seqs gaps {gaps[:5]} repeats {repeats[:5]} "
                f"(got {len(c.seqs)}, last {c.server_last_seq})"
            )

    def recovery(fault: Fault, ids: set[str]) -> float | None:
        times = [reply_at[i] - fault.at for i in ids if i in reply_at]
        return round(max(times), 2) if times else None

    def first_after(moment: float) -> float | None:
        later = [t - moment for t in reply_at.values() if t > moment]
        return round(min(later), 2) if later else None

    # Messages sent while Redis was down (acknowledged, stored, their enqueue failed) count
    # as open at its kill too.
    user_ids_by_cmid = {
        u["client_msg_id"]: u["id"]
        for msgs in histories.values()
        for u in msgs
        if u["role"] == "user"
    }
    for fault in faults:
        if fault.kind == "redis":
            for c in clients:
                for o in c.outgoing:
                    if o.sent_at and fault.at <= o.sent_at <= fault.back:
                        fault.open_ids.add(user_ids_by_cmid.get(o.client_msg_id, ""))

    user_at = {
        u["id"]: epoch(u["timestamp"])
        for msgs in histories.values()
        for u in msgs
        if u["role"] == "user"
    }
    latencies = sorted(reply_at[i] - t for i, t in user_at.items() if i in reply_at)
    kills = [f for f in faults if f.kind == "worker"]
    redis_fault = next(f for f in faults if f.kind == "redis")
    last_reply = max(reply_at.values()) if reply_at else float("inf")
    figures = {
        "seed": SEED,
        "sessions": SESSIONS,
        "messages_per_session": MESSAGES,
        "send_seconds": SEND_SECONDS,
        "sent": sum(1 for c in clients for o in c.outgoing if o.sends),
        "stored": sum(1 for msgs in histories.values() for m in msgs if m["role"] == "user"),
        "answered_once": answered_once,
        "failed_with_reason": failed,
        "lost": lost,
        "duplicated": duplicated,
        "silent": silent,
        "seq_gaps": seq_gaps,
        "seq_repeats": seq_repeats,
        "worker_kills": len(kills),
        "redis_restarts": 1,
        "worker_down_s": [round(f.back - f.at, 2) for f in kills],
        "orphans_per_kill": [len(f.orphan_ids) for f in kills],
        "open_per_kill": [len(f.open_ids) for f in kills],
        "kill_recovery_s": [recovery(f, f.open_ids) for f in kills],
        "orphan_recovery_s": [recovery(f, f.orphan_ids) for f in kills],
        "first_answer_after_restart_s": [first_after(f.back) for f in kills],
        "worst_recovery_after_kill_s": max(
            (r for f in kills if (r := recovery(f, f.open_ids)) is not None), default=0.0
        ),
        "redis_down_s": round(redis_fault.back - redis_fault.at, 2),
        "redis_open": len(redis_fault.open_ids - {""}),
        "redis_recovery_s": recovery(redis_fault, redis_fault.open_ids),
        "finished_after_last_send_s": round(last_reply - last_send[0], 2),
        "latency_p50_s": pct(latencies, 50),
        "latency_p95_s": pct(latencies, 95),
        "latency_max_s": pct(latencies, 100),
        "worker_exits_by_itself": [
            {"after": e.after, "seconds_after": e.seconds_after, "code": e.code} for e in exits
        ],
        "sweeper": dict(sweeps),
        "resent": out["resent"],
        "error_events": sum(len(c.errors) for c in clients),
        "unexpected_drops": sum(c.unexpected_drops for c in clients),
        "reconnects_with_after": sum(c.connects - 1 for c in clients),
        "stack_ready_s": round(ready_s, 1),
        "wall_s": round(wall_s, 1),
    }
    print("chaos figures: " + json.dumps(figures))
    for p in problems[:20]:
        print("  problem:", p)

    total = SESSIONS * MESSAGES
    assert figures["sent"] == total and figures["stored"] == total, figures
    assert figures["answered_once"] + figures["failed_with_reason"] == total, figures
    assert figures["lost"] == 0 and figures["duplicated"] == 0 and figures["silent"] == 0, figures
    assert all(failed_reasons.values()), failed_reasons  # failed, each with a readable reason
    assert figures["seq_gaps"] == 0 and figures["seq_repeats"] == 0, problems[:10]
    assert figures["reconnects_with_after"] >= 2 * SESSIONS  # the planned drop + the final one
    assert figures["finished_after_last_send_s"] <= FINISH_BOUND, figures
    # A message the dead worker held: its lease runs out, a sweep re-sends it, a worker that
    # had to boot first answers it.
    for fault, took in zip(kills, figures["orphan_recovery_s"], strict=True):
        limit = (fault.back - fault.at) + BOOT_ALLOWANCE + LEASE_SECONDS + SWEEP_INTERVAL + SLACK
        assert took is None or took <= limit, ("orphan", took, limit, figures)
    # Everything open at a kill (queued behind it too) is answered within the finish bound.
    for took in figures["kill_recovery_s"]:
        assert took is None or took <= FINISH_BOUND, ("backlog", took, figures)
    # A task that died with Redis: its claim deadline passes, a sweep re-sends it (plus a boot
    # if the worker exited on the restart: see the xfail test below).
    redis_limit = (
        figures["redis_down_s"]
        + REPLY.claim_deadline.total_seconds()
        + SWEEP_INTERVAL
        + SLACK
        + (BOOT_ALLOWANCE if any(e.after == "redis" for e in exits) else 0.0)
    )
    took = figures["redis_recovery_s"]
    assert took is None or took <= redis_limit, ("redis", took, redis_limit, figures)


# -- a Redis restart while the worker holds a task -----------------------------------------
KOMBU_REDIS_CRASH = (
    "celery/kombu 5.7.0: on broker connection loss the consumer closes the connection, "
    "kombu restores the unacknowledged messages through a connection already cleared "
    "(AttributeError: 'NoneType' object has no attribute 'hostname') and the worker "
    "exits with 'Unrecoverable error' (code 1); nothing is answered until something "
    "restarts it. Remove this mark when it passes (XPASS) every time."
)


def hold_a_task(stack, seconds: int) -> None:  # type: ignore[no-untyped-def]
    """Publish a no-op ping due in `seconds` straight onto the stack's `interactive` queue: its
    worker fetches it and holds it unacknowledged until it is due. (Celery's send_task would
    route a countdown on RabbitMQ quorum queues through delayed-delivery queues instead, and
    the worker would hold nothing.)"""
    import uuid

    client = stack.celery()
    try:
        message = client.amqp.create_task_message(
            str(uuid.uuid4()), "helpline.ping", ["held"], {}, countdown=seconds
        )
        queue = client.amqp.queues[stack.queue("interactive")]
        with client.producer_or_acquire() as producer:
            client.amqp.send_task_message(
                producer,
                "helpline.ping",
                message,
                exchange=queue.exchange.name,
                routing_key=queue.routing_key,
                retry=False,
            )
    finally:
        client.close()


# How long the worker is watched after the Redis restart: the kombu crash exits it within a
# second or two of the reconnect; one that is still alive after this has survived.
RESTART_WATCH = 8.0


def held_by_worker(stack, timeout: float) -> list[str]:  # type: ignore[no-untyped-def]
    """The worker's `received` log lines for the held ping, as soon as there is one."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [
            line
            for path in stack.logdir.glob(f"{stack.name}-worker*.log")
            for line in path.read_text(errors="replace").splitlines()
            if "helpline.ping" in line and "received" in line and "held" in line
        ]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


@pytest.mark.parametrize(
    "broker",
    [
        # strict=False: the crash is a race in kombu's restore; an occasional pass must not
        # fail CI.
        pytest.param("redis", marks=pytest.mark.xfail(strict=False, reason=KOMBU_REDIS_CRASH)),
        # On RabbitMQ, Redis holds no task: its restart costs pub/sub and results only.
        "rabbitmq",
    ],
)
@pytest.mark.timeout(180)
def test_worker_survives_a_redis_restart_while_holding_a_task(logdir, broker):
    """The chaos test restarts a worker that exits (as a supervisor would); this one says
    whether it has to. Any acks_late task in hand at the moment Redis goes away triggers it: a
    reply being written, a Busy retry waiting its 0.5 s, or, here, deterministically, a
    no-op ping with a countdown, which the worker holds unacknowledged until it is due."""
    from tests.client import Api
    from tests.test_deployments import RABBITMQ_URL, needs_rabbitmq

    env = {**ENV, "BROKER_URL": "", "LOG_LEVEL": "INFO"}  # INFO: the "received" line
    if broker == "rabbitmq":
        needs_rabbitmq()
        env["BROKER_URL"] = RABBITMQ_URL
    with (
        private_redis(logdir, f"rrestart{broker}") as server,
        side_stack(
            logdir, f"rrestart{broker}", {**env, "REDIS_URL": server.url}, kb=False
        ) as stack,
    ):
        hold_a_task(stack, 120)
        received = held_by_worker(stack, timeout=15)  # fetched, held until it is due
        assert received and '"eta": null' not in received[0], stack.tail()
        server.kill()
        time.sleep(1.5)  # Redis stays down this long
        server.start()
        # The consumer notices, reconnects (or dies): a worker that exits has done so by then.
        assert stack.worker is not None
        try:
            code = stack.worker.wait(RESTART_WATCH)
        except subprocess.TimeoutExpired:
            code = None
        assert code is None, f"the worker exited with code {code} after the Redis restart"
        api = Api(stack.urls[0])
        try:  # and it still answers, without being restarted
            resp = api.send(api.create_session(), "hello there", wait=20)
            assert resp.status_code == 200, resp.text
        finally:
            api.close()
