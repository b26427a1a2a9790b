"""Per-message costs for the capacity model (docs/scaling.md): SQL statements and rows written,
Redis commands, CPU of the web and the worker per answered message, and memory per idle socket.

    python bench/costs.py [--broker redis|amqp] [--sessions 20] [--messages 10] [--sockets 500]
                          [--database-url postgresql://root@localhost:5432/helpline_costs_bench]

It starts its own stack (one gunicorn web process, one Celery worker with 2 processes, as the
tests do) on a PostgreSQL database of its own (name ending in `_bench`, dropped afterwards), a
private `redis-server` on a free port (so `INFO commandstats` counts only this stack) and, with
`--broker amqp`, RabbitMQ on localhost:5672 under a prefix of its own.

How each figure is counted:
  SQL statements  every process of the stack counts what it sends through SQLAlchemy (a
                  `before_cursor_execute` listener loaded by bench/sqlcount/sitecustomize.py)
  rows written    pg_stat_user_tables n_tup_ins + n_tup_upd + n_tup_del, per table
  transactions    pg_stat_database xact_commit
  Redis commands  INFO commandstats deltas on the private server
  CPU             utime + stime of every process in the web's and the worker's process groups
  socket memory   the web process's RSS before and after opening --sockets idle sockets

Background work (the sweeper every SWEEP_INTERVAL, readiness probes) is measured over an idle
window of the same length first and subtracted. Each customer sends its next message when the
previous answer is complete (closed loop), over a WebSocket, like the chat page.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import redis  # noqa: E402

from bench.chat_latency import (  # noqa: E402
    _bench_db_name,
    _postgres_admin,
    chat_load,
    load_questions,
    migrate,
)
from tests.client import load_sample_kb  # noqa: E402
from tests.stack import Stack, free_port  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") / 1024


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- measurements --------------------------------------------------------------------------
def group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) of every live process in one process group."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the name: state, ppid, pgrp, …
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK


def rss_kb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KB


def web_worker_pid(master: int) -> int:
    """The gunicorn worker (the child that holds the sockets) of a one-worker master."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def sql_counts(folder: Path) -> Counter:
    out: Counter = Counter()
    for path in folder.glob("*.json"):
        try:
            out.update(json.loads(path.read_text()))
        except (OSError, ValueError):
            pass
    return out


def redis_calls(client: redis.Redis) -> Counter:
    stats = client.info("commandstats")
    return Counter({k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()})


def pg_figures(database_url: str) -> dict[str, Counter]:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted, "
            "tup_fetched FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
        tables = conn.execute(
            "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables"
        ).fetchall()
    keys = ("commits", "rollbacks", "inserted", "updated", "deleted", "fetched")
    return {"db": Counter(dict(zip(keys, row, strict=True))), "tables": Counter(dict(tables))}


class Snapshot:
    def __init__(self, stack: Stack, r: redis.Redis, database_url: str, sqldir: Path) -> None:
        self.at = time.monotonic()
        self.sql = sql_counts(sqldir)
        self.redis = redis_calls(r)
        self.pg = pg_figures(database_url)
        self.web_cpu = sum(group_cpu(p.pid) for p, _ in stack.webs)
        assert stack.worker is not None
        self.worker_cpu = group_cpu(stack.worker.pid)


def settle(stack: Stack, seconds: float = 2.5) -> None:
    """Let statistics reach their counters: PostgreSQL flushes table stats about once a second;
    a readiness probe and a sweep make every process write its SQL counts."""
    time.sleep(seconds)
    for url in stack.urls:
        httpx.get(f"{url}/health/ready", timeout=10, trust_env=False)
    time.sleep(1.2)


def delta(after: Snapshot, before: Snapshot) -> dict:
    return {
        "seconds": after.at - before.at,
        "sql": after.sql - before.sql,
        "redis": after.redis - before.redis,
        "db": after.pg["db"] - before.pg["db"],
        "tables": after.pg["tables"] - before.pg["tables"],
        "web_cpu": after.web_cpu - before.web_cpu,
        "worker_cpu": after.worker_cpu - before.worker_cpu,
    }


def net(load: dict, idle: dict) -> dict:
    """Load minus the idle background scaled to the load's duration."""
    scale = load["seconds"] / idle["seconds"]
    out = dict(load)
    for key in ("sql", "redis", "db", "tables"):
        scaled = Counter({k: v * scale for k, v in idle[key].items()})
        out[key] = Counter(
            {
                k: load[key][k] - scaled.get(k, 0)
                for k in load[key]
                if load[key][k] - scaled.get(k, 0) > 0
            }
        )
    for key in ("web_cpu", "worker_cpu"):
        out[key] = max(0.0, load[key] - idle[key] * scale)
    return out


# -- sockets -------------------------------------------------------------------------------
async def hold_sockets(url: str, count: int, per_session: int) -> list:
    from websockets.asyncio.client import connect

    socks = []
    async with httpx.AsyncClient(timeout=30, trust_env=False) as http:
        chats = []
        for _ in range((count + per_session - 1) // per_session):
            chats.append((await http.post(f"{url}/api/sessions", json={})).json())
    gate = asyncio.Semaphore(50)

    async def one(chat: dict) -> None:
        async with gate:
            params = urlencode({"session_id": chat["session_id"], "token": chat["token"]})
            ws = await connect(
                url.replace("http://", "ws://") + "/ws?" + params,
                ping_interval=None,
                compression=None,
                proxy=None,
            )
            await ws.recv()  # connected
            socks.append(ws)

    await asyncio.gather(*(one(chats[i // per_session]) for i in range(count)))
    return socks


def socket_memory(stack: Stack, count: int) -> dict:
    pid = web_worker_pid(stack.webs[0][0].pid)

    async def run() -> dict:
        before = rss_kb(pid)
        socks = await hold_sockets(stack.urls[0], count, per_session=8)
        await asyncio.sleep(2.0)
        after = rss_kb(pid)
        for ws in socks:
            await ws.close()
        return {
            "sockets": len(socks),
            "rss_before_mb": before / 1024,
            "kb_per_socket": (after - before) / max(1, len(socks)),
        }

    return asyncio.run(run())


# -- the run -------------------------------------------------------------------------------
def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--broker", choices=("redis", "amqp"), default="redis")
    p.add_argument("--amqp-url", default="amqp://guest:guest@localhost:5672//")
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--messages", type=int, default=10)
    p.add_argument("--sockets", type=int, default=500, help="idle sockets for the memory probe")
    p.add_argument(
        "--database-url", default="postgresql://root@localhost:5432/helpline_costs_bench"
    )
    args = p.parse_args()
    _bench_db_name(args.database_url)
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed")

    tmp = Path(tempfile.mkdtemp(prefix="helpline-costs-"))
    sqldir = tmp / "sql"
    sqldir.mkdir()
    port = free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    prefix = f"hlcosts-{uuid.uuid4().hex[:6]}"
    env = {
        "DATABASE_URL": args.database_url,
        "REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "BROKER_URL": args.amqp_url if args.broker == "amqp" else "",
        "EVENT_CHANNEL_PREFIX": prefix,
        "STAFF_API_KEYS": f"bench-{uuid.uuid4().hex}",
        # Quotas stay on (their Redis commands are part of a message's cost), far above the load.
        "RATE_LIMIT_PER_MINUTE": "100000",
        "RATE_LIMIT_PER_IP_PER_MINUTE": "1000000",
        "SESSIONS_PER_IP_PER_MINUTE": "1000000",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "WARNING",
        "LLM_PROVIDER": "offline",
        "OPENAI_API_KEY": "",
        "OPENAI_BASE_URL": "",
        "PYTHONPATH": str(ROOT / "bench" / "sqlcount"),
        "SQLCOUNT_DIR": str(sqldir),
    }
    stack = None
    try:
        r = redis.Redis(port=port)
        for _ in range(100):
            try:
                r.ping()
                break
            except redis.RedisError:
                time.sleep(0.05)
        _postgres_admin(args.database_url, create=True)
        migrate(args.database_url)
        stack = Stack(env, tmp, name="costs")
        stack.start_web()
        stack.start_worker()
        stack.wait_ready(timeout=120)
        load_sample_kb(stack)
        questions = load_questions()
        ns = argparse.Namespace(timeout=60.0, max_seconds=600.0, seed=1)
        log("warm-up")
        asyncio.run(chat_load(stack.urls, questions, ns, 4, 3))
        settle(stack)

        log("idle window")
        idle0 = Snapshot(stack, r, args.database_url, sqldir)
        time.sleep(15)
        settle(stack)
        idle = delta(Snapshot(stack, r, args.database_url, sqldir), idle0)

        log(f"load: {args.sessions} sessions x {args.messages} messages")
        before = Snapshot(stack, r, args.database_url, sqldir)
        result = asyncio.run(chat_load(stack.urls, questions, ns, args.sessions, args.messages))
        wall = result.wall
        settle(stack)
        raw = delta(Snapshot(stack, r, args.database_url, sqldir), before)
        # The idle window is 15 s plus its settling; scale it to the load window.
        load = net(raw, idle)
        answered = len(result.samples)

        log(f"socket memory: {args.sockets} idle sockets")
        sockets = socket_memory(stack, args.sockets)
    finally:
        if stack is not None:
            stack.stop()
        server.send_signal(signal.SIGTERM)
        server.wait(10)
        try:
            _postgres_admin(args.database_url, create=False)
        except Exception as exc:
            log(f"could not drop the bench database: {exc}")
        shutil.rmtree(tmp, ignore_errors=True)

    per = 1 / max(1, answered)
    report = {
        "broker": args.broker,
        "answered": answered,
        "errors": dict(result.errors),
        "timeouts": result.timeouts,
        "load_wall_s": round(wall, 2),
        "answers_per_s": round(answered / wall, 1),
        "per_message": {
            "sql_statements": round(sum(load["sql"].values()) * per, 1),
            "sql_by_kind": {k: round(v * per, 2) for k, v in load["sql"].most_common()},
            "transactions": round(load["db"]["commits"] * per, 1),
            "rows_written": round(
                (load["db"]["inserted"] + load["db"]["updated"] + load["db"]["deleted"]) * per, 1
            ),
            "rows_written_by_table": {
                k: round(v * per, 2) for k, v in load["tables"].most_common()
            },
            "redis_commands": round(sum(load["redis"].values()) * per, 1),
            "redis_by_command": {k: round(v * per, 2) for k, v in load["redis"].most_common()},
            "worker_cpu_ms": round(load["worker_cpu"] * per * 1000, 1),
            "web_cpu_ms": round(load["web_cpu"] * per * 1000, 1),
        },
        "idle_per_s": {
            "sql_statements": round(sum(idle["sql"].values()) / idle["seconds"], 1),
            "redis_commands": round(sum(idle["redis"].values()) / idle["seconds"], 1),
        },
        "sockets": {k: round(v, 1) for k, v in sockets.items()},
        "note": "2-core machine shared with other sessions' test runs: CPU and rates are noisy",
    }
    print(json.dumps(report, indent=2))
    return 0 if answered and not result.timeouts else 1


if __name__ == "__main__":
    sys.exit(main())
