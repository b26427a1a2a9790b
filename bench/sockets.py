"""Idle sockets in ONE web process: RSS per socket, and chat latency while they are held.

    python bench/sockets.py [--levels 1000,3000,10000] [--modes sessions,one]
                            [--redis redis://localhost:6379] [--database-url PG_URL]
                            [--plot bench/sockets.png] [--memdebug]

For each mode it starts its own stack (one gunicorn web process, as WEB_CONCURRENCY=1, and one
Celery worker, through tests.stack.Stack as bench/chat_latency.py does) on a throwaway SQLite
file (or a `*_bench` PostgreSQL database) and Redis database 12, warms it up with a few answered
messages, reads the web worker's VmRSS, then opens idle sockets up to each level in turn:

- `sessions`: one conversation per socket (what many customers look like);
- `one`: every socket on one conversation (MAX_SOCKETS_PER_SESSION raised for the run), plus
  one message sent into that conversation: how long until every socket has its `complete`.

At each level: (RSS now - RSS before the first socket) / sockets held = KB per socket, the
sockets still open, and a few probe customers (new sessions, sequential messages) give the
`acknowledged` and `complete` percentiles while the idle sockets are held. A plot (RSS and
latency against sockets held) goes to --plot. `--memdebug` instead runs the web process under
bench/memdebug_gunicorn.py and prints what the first level's sockets hold (tracemalloc by
allocation site, live objects by type, malloc in use), per socket.

The machine may be shared: the numbers are noisy, and the script prints them as measured.
Every wait has a timeout; the run ends by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
import tracemalloc
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `tests`, `models` and `bench` importable
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from websockets.asyncio.client import ClientConnection, connect  # noqa: E402
from websockets.exceptions import WebSocketException  # noqa: E402

from bench.chat_latency import (  # noqa: E402
    Target,
    chat_load,
    load_questions,
    local_stack,
    log,
    ms,
    percentile,
    pyplot,
)

PLOT = ROOT / "bench" / "sockets.png"
TARGET_KB = 30.0


# -- the web worker ---------------------------------------------------------------------------
def worker_pid(master: int, timeout: float = 10.0) -> int:
    """The gunicorn worker (the child holding the sockets) of a one-worker master."""
    deadline = time.monotonic() + timeout
    while True:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if len(children) == 1:
            return int(children[0])
        if time.monotonic() > deadline:
            raise RuntimeError(f"gunicorn {master} has children {children}, expected one")
        time.sleep(0.2)


def rss_kb(pid: int) -> int:
    """VmRSS of a process, in KB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def raise_fd_limit() -> int:
    """10,000 client sockets need more descriptors than a default soft limit of 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# -- idle sockets -------------------------------------------------------------------------------
class Holder:
    """The idle sockets of one mode, opened up to each level in turn."""

    def __init__(self, base: str, mode: str, timeout: float) -> None:
        self.base = base
        self.mode = mode
        self.timeout = timeout
        self.sockets: list[ClientConnection] = []
        self.one: dict | None = None  # the shared conversation of mode `one`
        self.failures = 0

    async def _session(self, http: httpx.AsyncClient) -> dict:
        for attempt in range(3):
            try:
                resp = await http.post(f"{self.base}/api/sessions", json={"user_id": "idle"})
                break
            except httpx.TransportError:
                # A pooled connection that sat idle past gunicorn's 5 s keep-alive while the
                # handshakes queued: the server closed it as we reused it. Try a fresh one.
                if attempt == 2:
                    raise
        resp.raise_for_status()
        return resp.json()

    async def _open(self, chat: dict) -> None:
        params = urlencode({"session_id": chat["session_id"], "token": chat["token"]})
        try:
            ws = await connect(
                self.base.replace("http://", "ws://", 1) + "/ws?" + params,
                open_timeout=self.timeout,
                close_timeout=2,
                compression=None,
                ping_interval=None,
                max_queue=None,  # mode `one`: the fan-out probe floods every socket
                proxy=None,
            )
            raw = await asyncio.wait_for(ws.recv(), self.timeout)
            if json.loads(raw).get("type") != "connected":
                raise RuntimeError(f"first event {raw[:80]}")
        except (TimeoutError, WebSocketException, OSError, RuntimeError):
            self.failures += 1
            return
        self.sockets.append(ws)

    async def grow(self, level: int) -> None:
        """Open sockets until `level` are held (50 handshakes at a time)."""
        gate = asyncio.Semaphore(50)
        limits = httpx.Limits(max_connections=20, max_keepalive_connections=20)
        async with httpx.AsyncClient(timeout=self.timeout, limits=limits, trust_env=False) as http:
            if self.mode == "one" and self.one is None:
                self.one = await self._session(http)

            async def one(_: int) -> None:
                async with gate:
                    chat = self.one if self.mode == "one" else await self._session(http)
                    assert chat is not None
                    await self._open(chat)

            missing = level - len(self.sockets)
            await asyncio.gather(*(one(i) for i in range(missing)))

    def open_count(self) -> int:
        return sum(1 for ws in self.sockets if ws.close_code is None)

    async def fan_out(self) -> dict:
        """Mode `one`: a message into the shared conversation; seconds until its sender has the
        acknowledgement and until every held socket has the reply's `complete`."""
        if not self.sockets:
            return {}
        for ws in self.sockets:  # forget what arrived earlier
            while True:
                try:
                    await asyncio.wait_for(ws.recv(), 0)
                except (TimeoutError, WebSocketException):
                    break
        client_msg_id = uuid.uuid4().hex
        started = time.perf_counter()
        sender = self.sockets[0]
        await sender.send(
            json.dumps(
                {"type": "message", "content": "Where is my order?", "client_msg_id": client_msg_id}
            )
        )
        seen: list[float] = []
        ack: list[float] = []

        async def watch(ws: ClientConnection, is_sender: bool) -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    event = json.loads(await asyncio.wait_for(ws.recv(), 120))
                except (TimeoutError, WebSocketException):
                    return
                if is_sender and event.get("type") == "acknowledged":
                    ack.append(time.perf_counter() - started)
                if event.get("type") == "complete":
                    seen.append(time.perf_counter() - started)
                    return

        await asyncio.gather(*(watch(ws, i == 0) for i, ws in enumerate(self.sockets)))
        return {
            "fanout_sockets": len(seen),
            "fanout_ack": ack[0] if ack else None,
            "fanout_first": min(seen) if seen else None,
            "fanout_last": max(seen) if seen else None,
        }

    async def close(self) -> None:
        gate = asyncio.Semaphore(200)

        async def one(ws: ClientConnection) -> None:
            async with gate:
                try:
                    await asyncio.wait_for(ws.close(), 5)
                except (TimeoutError, WebSocketException, OSError):
                    pass

        await asyncio.gather(*(one(ws) for ws in self.sockets))


# -- one mode ---------------------------------------------------------------------------------
@dataclass
class Level:
    """What one level measured."""

    mode: str
    sockets: int
    still_open: int
    rss_kb: int
    kb_per_socket: float
    open_seconds: float
    ack: list[float] = field(default_factory=list)
    complete: list[float] = field(default_factory=list)
    errors: int = 0
    timeouts: int = 0
    fanout: dict = field(default_factory=dict)


async def probe(target: Target, args: argparse.Namespace) -> tuple[list, list, int, int]:
    """A few customers chatting while the sockets are held."""
    questions = load_questions()
    result = await chat_load(target.urls, questions, args, args.probe_sessions, args.probe_messages)
    return (
        result.acks,
        [s.complete for s in result.samples],
        sum(result.errors.values()),
        result.timeouts,
    )


def settle(pid: int, seconds: float) -> int:
    """RSS after the process has had `seconds` to finish what the last handshakes started."""
    time.sleep(seconds)
    return rss_kb(pid)


async def run_mode(target: Target, pid: int, mode: str, args: argparse.Namespace) -> list[Level]:
    holder = Holder(target.urls[0], mode, args.timeout)
    questions = load_questions()
    # Warm-up: imports, connection pools and the worker's index, before the baseline.
    await chat_load(target.urls, questions, args, 2, args.warmup)
    before = settle(pid, 2.0)
    log(f"[{mode}] web worker {pid}: RSS before {before / 1024:.1f} MB")
    acks, done, errors, timeouts = await probe(target, args)
    levels = [Level(mode, 0, 0, before, 0.0, 0.0, acks, done, errors, timeouts)]
    try:
        for level in args.levels:
            started = time.perf_counter()
            await holder.grow(level)
            opened = time.perf_counter() - started
            rss = settle(pid, args.settle)
            held = len(holder.sockets)
            per = (rss - before) / held if held else 0.0
            log(
                f"[{mode}] {held} sockets held ({holder.failures} failed) in {opened:.1f} s: "
                f"RSS {rss / 1024:.1f} MB, {per:.1f} KB/socket; probing chat"
            )
            acks, done, errors, timeouts = await probe(target, args)
            row = Level(mode, held, holder.open_count(), rss, per, opened, acks, done)
            row.errors, row.timeouts = errors, timeouts
            if mode == "one" and args.fanout:
                row.fanout = await holder.fan_out()
            row.still_open = holder.open_count()
            levels.append(row)
            print_level(row)
    finally:
        await holder.close()
    return levels


def print_level(r: Level) -> None:
    print(
        f"  {r.mode:<8} {r.sockets:>6} sockets ({r.still_open} open)  "
        f"RSS {r.rss_kb / 1024:7.1f} MB  {r.kb_per_socket:6.1f} KB/socket  "
        f"ack p50/p95 {ms(percentile(r.ack, 50))}/{ms(percentile(r.ack, 95))} ms  "
        f"complete p50/p95 {ms(percentile(r.complete, 50))}/{ms(percentile(r.complete, 95))} ms  "
        f"(n={len(r.complete)}, errors {r.errors}, timeouts {r.timeouts})",
        flush=True,
    )
    if r.fanout:
        f = r.fanout
        print(
            f"           fan-out to one conversation: ack {ms(f.get('fanout_ack'))} ms, "
            f"complete on the first socket {ms(f.get('fanout_first'))} ms, on the last "
            f"({f.get('fanout_sockets')} sockets) {ms(f.get('fanout_last'))} ms",
            flush=True,
        )


def table(levels: list[Level]) -> str:
    lines = [
        "| mode | sockets held | still open | web RSS MB | KB/socket | ack p50/p95 ms "
        "| complete p50/p95 ms | errors/timeouts | fan-out: last socket complete ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in levels:
        fan = ms(r.fanout.get("fanout_last"), 0) if r.fanout else ""
        lines.append(
            f"| {r.mode} | {r.sockets} | {r.still_open} | {r.rss_kb / 1024:.1f} "
            f"| {r.kb_per_socket:.1f} | {ms(percentile(r.ack, 50))} / {ms(percentile(r.ack, 95))} "
            f"| {ms(percentile(r.complete, 50))} / {ms(percentile(r.complete, 95))} "
            f"| {r.errors}/{r.timeouts} | {fan} |"
        )
    return "\n".join(lines)


def plot(levels: list[Level], path: Path, title: str) -> None:
    """RSS per socket and probe latency against sockets held, one line per mode."""
    plt = pyplot()
    if plt is None:
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for mode in sorted({r.mode for r in levels}):
        rows = [r for r in levels if r.mode == mode]
        xs = [r.sockets for r in rows]
        label = "one session per socket" if mode == "sessions" else "all in one session"
        left.plot(xs, [r.rss_kb / 1024 for r in rows], marker="o", label=f"RSS, {label}")
        for q, style in ((50, "-"), (95, "--")):
            ys = [(percentile(r.complete, q) or float("nan")) * 1000 for r in rows if r.complete]
            xq = [r.sockets for r in rows if r.complete]
            right.plot(xq, ys, style, marker="o", label=f"complete p{q}, {label}")
    left.set_xlabel("idle sockets held by one web process")
    left.set_ylabel("web process RSS (MB)")
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    right.set_xlabel("idle sockets held by one web process")
    right.set_ylabel("probe chat: send -> complete (ms)")
    right.grid(alpha=0.3)
    right.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    log(f"plot written to {path}")


# -- memdebug -------------------------------------------------------------------------------
class MemdebugStack:
    """Stacks started inside run their web process with bench/memdebug_gunicorn.py, which
    writes what it holds into `folder` (MEMDEBUG_DIR) when asked."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __enter__(self) -> MemdebugStack:
        from tests.stack import Stack

        os.environ["MEMDEBUG_DIR"] = str(self.folder)  # a Stack's env starts from os.environ
        Stack.web_config = "bench/memdebug_gunicorn.py"
        return self

    def __exit__(self, *exc: object) -> None:
        from tests.stack import Stack

        Stack.web_config = "gunicorn.conf.py"
        os.environ.pop("MEMDEBUG_DIR", None)

    def snapshot(self, tag: str, timeout: float = 120) -> dict:
        (self.folder / f"{tag}.want").touch()
        deadline = time.monotonic() + timeout
        out = self.folder / f"{tag}.json"
        while not out.exists() or (self.folder / f"{tag}.want").exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"no memory snapshot {tag}")
            time.sleep(0.3)
        return json.loads(out.read_text())


def _site(frame: tracemalloc.Frame) -> str:
    name = frame.filename
    for marker in ("site-packages/", "python3.11/", str(ROOT) + "/"):
        if marker in name:
            name = name.split(marker, 1)[1]
    return f"{name}:{frame.lineno}"


def memdebug_report(md: MemdebugStack, before: dict, after: dict, held: int) -> None:
    """What the held sockets hold, per socket."""
    print(f"\n## What {held} idle sockets hold (per socket)\n")
    print(
        f"RSS {(after['rss_kb'] - before['rss_kb']) / held:.1f} KB; malloc in use "
        f"{((after['malloc_in_use'] or 0) - (before['malloc_in_use'] or 0)) / 1024 / held:.1f} KB;"
        f" traced by tracemalloc {(after['traced'] - before['traced']) / 1024 / held:.1f} KB; "
        f"file descriptors {(after['fds'] - before['fds']) / held:.2f}"
    )
    old = tracemalloc.Snapshot.load(str(md.folder / "before.tm"))
    new = tracemalloc.Snapshot.load(str(md.folder / "after.tm"))
    print("\ntracemalloc, grown allocation sites (innermost frame), bytes per socket:")
    for stat in new.compare_to(old, "lineno")[:25]:
        if stat.size_diff <= 0:
            continue
        print(
            f"  {stat.size_diff / held:8.0f} B  {stat.count_diff / held:6.2f} blocks  "
            f"{_site(stat.traceback[0])}"
        )
    print("\ntracemalloc, grown by the outermost project or library frame, bytes per socket:")
    grouped: dict[str, int] = {}
    for stat in new.compare_to(old, "traceback"):
        if stat.size_diff <= 0:
            continue
        frames = list(stat.traceback)
        key = "?"
        for frame in reversed(frames):  # innermost first: the first of ours or a library's
            site = _site(frame)
            if not site.startswith(("threading.py", "queue.py", "json/", "gevent/_")):
                key = site.rsplit(":", 1)[0]
                break
        grouped[key] = grouped.get(key, 0) + stat.size_diff
    for key, size in sorted(grouped.items(), key=lambda kv: -kv[1])[:15]:
        print(f"  {size / held:8.0f} B  {key}")
    print("\nlive objects grown, per socket:")
    diff = {
        name: after["types"].get(name, 0) - before["types"].get(name, 0)
        for name in set(after["types"]) | set(before["types"])
    }
    for name, count in sorted(diff.items(), key=lambda kv: -kv[1])[:25]:
        if count > 0:
            print(f"  {count / held:6.2f}  {name}")


async def memdebug_run(
    target: Target, md: MemdebugStack, mode: str, args: argparse.Namespace
) -> None:
    questions = load_questions()
    await chat_load(target.urls, questions, args, 2, args.warmup)
    holder = Holder(target.urls[0], mode, args.timeout)
    time.sleep(2.0)
    before = md.snapshot("before")
    await holder.grow(args.levels[0])
    time.sleep(args.settle)
    after = md.snapshot("after")
    print(f"\n# memdebug, mode {mode}")
    memdebug_report(md, before, after, len(holder.sockets))
    await holder.close()


# -- main -------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--levels", default="1000,3000,10000", help="sockets held, cumulative")
    p.add_argument("--modes", default="sessions,one", help="sessions (one each) and/or one")
    p.add_argument("--redis", default="redis://localhost:6379", help="own stack: Redis (db 12)")
    p.add_argument("--database-url", help="own stack on PostgreSQL (database name *_bench)")
    p.add_argument("--probe-sessions", type=int, default=4, help="chatting customers per level")
    p.add_argument("--probe-messages", type=int, default=5, help="messages per probe customer")
    p.add_argument("--warmup", type=int, default=3, help="unmeasured messages first")
    p.add_argument("--settle", type=float, default=3.0, help="seconds before reading RSS")
    p.add_argument(
        "--no-fanout",
        dest="fanout",
        action="store_false",
        help="mode one: skip the message to every held socket",
    )
    p.add_argument("--timeout", type=float, default=60.0, help="seconds for any single wait")
    p.add_argument("--max-seconds", type=float, default=300.0, help="deadline of a probe")
    p.add_argument("--plot", default=str(PLOT), help="PNG to write ('' for none)")
    p.add_argument("--label", default="", help="title of the plot")
    p.add_argument("--memdebug", action="store_true", help="what the sockets hold, not speed")
    p.add_argument("--log-dir", help="keep the stack's process logs here")
    args = p.parse_args(argv)
    args.levels = sorted(int(x) for x in args.levels.split(",") if x)
    args.modes = [m for m in args.modes.split(",") if m]
    if any(m not in ("sessions", "one") for m in args.modes) or not args.levels:
        p.error("--modes takes sessions and/or one; --levels at least one number")
    # What chat_latency's helpers read.
    args.seed, args.web_processes, args.database_url = 1, 1, args.database_url
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    limit = raise_fd_limit()
    if limit < max(args.levels) + 200:
        log(f"only {limit} file descriptors: the client cannot hold {max(args.levels)} sockets")
    # The stack's processes inherit these (tests.stack.Stack merges os.environ).
    os.environ["MAX_SOCKETS_PER_SESSION"] = str(max(args.levels) + 100)
    os.environ["WEB_CONCURRENCY"] = "1"
    # Every client comes from 127.0.0.1: the per-IP limits would refuse the 21st session.
    os.environ["SESSIONS_PER_IP_PER_MINUTE"] = "0"
    os.environ["RATE_LIMIT_PER_IP_PER_MINUTE"] = "0"
    # gunicorn's gevent pool must have room for the probes on top of the idle sockets.
    os.environ.setdefault("WEB_WORKER_CONNECTIONS", str(max(args.levels) + 1000))
    if args.memdebug:
        for mode in args.modes:  # a stack per mode: closed sockets would blur the next count
            with tempfile.TemporaryDirectory(prefix="helpline-memdebug-") as folder:
                with MemdebugStack(Path(folder)) as md, local_stack(args) as target:
                    asyncio.run(memdebug_run(target, md, mode, args))
        return 0
    levels: list[Level] = []
    for mode in args.modes:
        with local_stack(args) as target:
            pid = worker_pid(_master_pid(target))
            levels += asyncio.run(run_mode(target, pid, mode, args))
    store = "PostgreSQL" if args.database_url else "SQLite"
    print(f"\n## Idle sockets in one web process ({store})\n")
    print(table(levels))
    if args.plot:
        title = args.label or f"Idle sockets in one gevent web process ({store})"
        plot(levels, Path(args.plot), title)
    worst = max((r.kb_per_socket for r in levels if r.sockets), default=0.0)
    print(f"\nworst KB/socket {worst:.1f} (target <= {TARGET_KB:.0f})")
    return 0


def _master_pid(target: Target) -> int:
    """The gunicorn master bound to the target's port (its one worker holds the sockets)."""
    bind = target.urls[0].removeprefix("http://")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"gunicorn") for a in argv[:2]) and bind.encode() in argv:
            parent = Path(f"/proc/{(proc / 'stat').read_text().split()[3]}/cmdline")
            try:
                if bind.encode() in parent.read_bytes().split(b"\0"):
                    continue  # a worker (forked, same command line): its parent is the master
            except OSError:
                pass
            return int(proc.name)
    raise RuntimeError(f"no gunicorn master bound to {bind}")


if __name__ == "__main__":
    sys.exit(main())
