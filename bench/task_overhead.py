"""Worker CPU per no-op task: what Celery, kombu and Redis cost around every answer.

    python bench/task_overhead.py [--layout prefork|solo] [--processes 2] [--tasks 1500]
                                  [--rounds 3] [--redis redis://127.0.0.1:6379/3]
                                  [--log-level INFO]

Starts the answer worker (`python -m worker.run worker`, the Procfile's `worker` role) on a
throwaway SQLite file and the given Redis database (emptied before and after), in one process
group: `prefork` is today's layout, one Celery worker whose parent consumes, acknowledges and
hands each task to `--processes` pool processes over pipes; `solo` is `--processes` separate
`--pool solo` workers, each consuming and running its own tasks with no parent in between.
Each round publishes `--tasks` `helpline.ping` tasks at once (results ignored, so only the
broker's side of a task is counted), waits until the queue and the unacknowledged index are
empty, and reads the CPU (utime + stime) of every process in the group from /proc. Prints the
CPU per task of each round after a first warm round, and the drain rate. At `--log-level INFO`
Celery writes its "received" and "succeeded" lines for every task, as in production.

No-op tasks hold no engine or database work, so this is the per-task floor of the layout, not
an answer's cost (bench/costs.py measures that). CPU under contention grows with the machine's
load: alternate layouts or versions and read the load that is printed beside each line.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from bench.chat_latency import celery_client, migrate  # noqa: E402
from bench.costs import group_cpu  # noqa: E402


def start_workers(args: argparse.Namespace, env: dict[str, str], logdir: Path) -> subprocess.Popen:
    """The worker processes of the layout, all in one new process group (a shell that waits)."""
    python = shlex.quote(sys.executable)
    common = "-m worker.run worker --without-gossip --without-mingle"
    if args.layout == "prefork":
        cmds = [f"{python} {common} --pool prefork --concurrency {args.processes} -n ovh@%h"]
    else:
        cmds = [f"{python} {common} --pool solo -n ovh{i}@%h" for i in range(args.processes)]
    line = " & ".join(cmds) + " & wait"
    out = open(logdir / "worker.log", "ab")  # noqa: SIM115
    return subprocess.Popen(
        ["sh", "-c", line],
        cwd=ROOT,
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--layout", choices=("prefork", "solo"), default="prefork")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--tasks", type=int, default=1500)
    p.add_argument("--rounds", type=int, default=3, help="measured rounds after a warm one")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/3", help="emptied before and after")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args()

    r = redis.Redis.from_url(args.redis)
    r.flushdb()
    tmp = Path(tempfile.mkdtemp(prefix="helpline-overhead-"))
    database_url = f"sqlite:///{tmp / 'overhead.db'}"
    migrate(database_url)
    prefix = f"hlovh-{uuid.uuid4().hex[:6]}"
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": args.redis,
        "BROKER_URL": "",
        "EVENT_CHANNEL_PREFIX": prefix,
        "STAFF_API_KEYS": f"bench-{uuid.uuid4().hex}",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": args.log_level,
        "LLM_PROVIDER": "offline",
    }
    workers = start_workers(args, env, tmp)
    app = celery_client(args.redis, prefix)
    queue = f"{prefix}.interactive"
    try:
        deadline = time.monotonic() + 120
        while True:  # ready once a ping comes back
            try:
                app.send_task("helpline.ping", args=["up"], queue=queue).get(timeout=2)
                break
            except Exception:
                if workers.poll() is not None or time.monotonic() > deadline:
                    tail = (tmp / "worker.log").read_text(errors="replace")[-2000:]
                    raise SystemExit(f"the workers did not start:\n{tail}") from None
        time.sleep(2)  # every process of the layout consuming
        per_task: list[float] = []
        rates: list[float] = []
        for round_ in range(args.rounds + 1):
            cpu0, t0 = group_cpu(workers.pid), time.perf_counter()
            with app.producer_or_acquire() as producer:
                for _ in range(args.tasks):
                    app.send_task(
                        "helpline.ping",
                        args=["t"],
                        queue=queue,
                        ignore_result=True,
                        producer=producer,
                    )
            # Drained: nothing waiting and nothing held unacknowledged (keys carry the prefix).
            while r.llen(f"{prefix}:{queue}") + r.hlen(f"{prefix}:unacked"):
                time.sleep(0.02)
            wall = time.perf_counter() - t0
            time.sleep(0.5)  # the last acks' bookkeeping
            if round_:  # the first round warms the processes
                per_task.append((group_cpu(workers.pid) - cpu0) / args.tasks * 1000)
                rates.append(args.tasks / wall)
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        cpu = " ".join(f"{v:.2f}" for v in per_task)
        print(
            f"{args.layout} x{args.processes} log {args.log_level}: worker CPU ms per no-op "
            f"task {cpu} (median {sorted(per_task)[len(per_task) // 2]:.2f}); tasks/s "
            f"{' '.join(f'{v:.0f}' for v in rates)}; load {load}"
        )
    finally:
        try:
            os.killpg(workers.pid, signal.SIGTERM)
            workers.wait(20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(workers.pid, signal.SIGKILL)
        r.flushdb()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
