"""Attachment uploads: time from the first byte sent to the 202, by file size and concurrency.

    python bench/uploads.py [--sizes 100K,1M,5M,20M] [--count 40] [--concurrency 1,4,16]
                            [--kind png|txt] [--storage db|file:///dir] [--database-url PG_URL]
                            [--url URL --token-session] [--plot bench/uploads.png] [--profile]

By default it starts its own stack (one gunicorn web process + a Celery worker, as
bench/chat_latency.py does, through tests.stack.Stack) on a throwaway SQLite file (PostgreSQL with
`--database-url`, whose name must end in `_bench`), a Redis database of its own and a channel
prefix of its own, with MAX_UPLOAD_MB raised so the 20 MB case is accepted, and removes it all
afterwards. `--storage` is the stack's ATTACHMENT_STORAGE (where accepted bytes go); without it,
the default: files beside the SQLite file, rows of the database on PostgreSQL.

Every upload is the multipart POST /api/chat/upload a browser sends (fields `session_id`, then
`file`); the body is built once per size, so the client spends its time sending, not encoding.
Sequential runs (`--concurrency 1`) show the cost of one upload; the others run C clients
uploading at once (a closed loop: each sends its next file when its previous one got the 202).
A new conversation every few uploads keeps the per-conversation quota out of the way.

The files: `png` (a PNG signature and random bytes: sniffed from its first bytes, not parsed)
or `txt` (plain ASCII text: every byte is checked as text before the 202, then parsed).

`--profile` then samples the web process with py-spy (if it is on PATH) while 5 MB files are
uploaded one after another, and prints the hottest functions (a flame graph SVG goes next to
the plot). The numbers come from a shared, noisy machine: repeat a run before trusting a change.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `tests` and `models` importable
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.chat_latency import (  # noqa: E402
    _postgres_admin,
    flush_redis,
    log,
    migrate,
    percentile,
    pyplot,
)

BENCH_REDIS_DBS = (11, 10, 9)  # chat_latency uses 12; a concurrent run of it keeps its own
UNITS = {"K": 1024, "M": 1024 * 1024}


def parse_size(text: str) -> int:
    """`100K`, `5M` or a number of bytes."""
    text = text.strip().upper()
    if text[-1:] in UNITS:
        return int(float(text[:-1]) * UNITS[text[-1]])
    return int(text)


def label(size: int) -> str:
    if size >= UNITS["M"]:
        return f"{size / UNITS['M']:g} MB"
    return f"{size / UNITS['K']:g} KB"


def make_file(kind: str, size: int) -> tuple[str, bytes]:
    """A file of exactly `size` bytes that the server accepts as `kind`."""
    if kind == "png":
        head = b"\x89PNG\r\n\x1a\n"
        return "photo.png", head + os.urandom(size - len(head))
    line = b"My router keeps dropping the connection every evening around nine.\n"
    return "notes.txt", (line * (size // len(line) + 1))[:size]


def multipart(session_id: str, name: str, data: bytes) -> tuple[bytes, str]:
    """The body a browser's FormData sends: the session id field first, then the file."""
    boundary = f"----helplinebench{uuid.uuid4().hex}"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="session_id"\r\n\r\n'
        f"{session_id}\r\n"
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head + data + tail, f"multipart/form-data; boundary={boundary}"


# -- a throwaway stack -----------------------------------------------------------------------
@dataclass
class Target:
    url: str
    web_pid: int | None = None  # gunicorn's arbiter (its worker is the child doing the work)


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU of `pid`'s children (gunicorn's worker): the server's own cost per
    upload, which a busy shared machine inflates far less than it inflates wall time."""
    if pid is None:
        return None
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        total = 0.0
        for child in children:
            fields = Path(f"/proc/{child}/stat").read_text().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total
    except OSError:
        return None


@contextmanager
def local_stack(args: argparse.Namespace) -> Iterator[Target]:
    """One web process + one worker on a fresh database and a Redis database of our own."""
    from tests.stack import Stack, claim_redis_db

    try:
        db = claim_redis_db(args.redis, list(BENCH_REDIS_DBS))
    except RuntimeError:
        raise SystemExit("every bench Redis database is held by another live run") from None
    redis_url = f"{args.redis.rstrip('/')}/{db}"
    tmp = Path(tempfile.mkdtemp(prefix="helpline-upbench-"))
    logdir = Path(args.log_dir) if args.log_dir else tmp / "logs"
    logdir.mkdir(parents=True, exist_ok=True)
    database_url = args.database_url or f"sqlite:///{tmp / 'helpline_bench.db'}"
    storage = args.storage
    if storage == "file":
        storage = f"file://{tmp / 'attachments'}"
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "BROKER_URL": "",
        "EVENT_CHANNEL_PREFIX": f"hlupbench-{uuid.uuid4().hex[:8]}",
        "STAFF_API_KEYS": f"bench-{uuid.uuid4().hex}",
        "RATE_LIMIT_PER_MINUTE": "0",
        "RATE_LIMIT_PER_IP_PER_MINUTE": "0",
        "SESSIONS_PER_IP_PER_MINUTE": "0",
        "MAX_UPLOAD_MB": str(max(25, args.max_mb)),
        "MAX_UPLOAD_MB_PER_SESSION": "100000",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "WARNING",
        "LLM_PROVIDER": "offline",
        "OPENAI_API_KEY": "",
        "OPENAI_BASE_URL": "",
        "PYTHONPATH": "",  # the bench's own extras (matplotlib) stay out of the servers
    }
    if storage:
        env["ATTACHMENT_STORAGE"] = storage
    stack = None
    try:
        if args.database_url:
            _postgres_admin(database_url, create=True)
        migrate(database_url)
        stack = Stack(env, logdir, name="upbench")
        stack.start_web()
        stack.start_worker()  # every queue, the `files` one included
        stack.wait_ready(timeout=120)
        log(f"stack ready: {stack.urls[0]} (storage {storage or 'default'})")
        yield Target(stack.urls[0], stack.webs[0][0].pid)
    finally:
        if stack is not None:
            stack.stop()
        try:
            flush_redis(redis_url)
        except Exception as exc:
            log(f"could not flush {redis_url}: {exc}")
        if args.database_url:
            try:
                _postgres_admin(database_url, create=False)
            except Exception as exc:
                log(f"could not drop the bench database: {exc}")
        shutil.rmtree(tmp, ignore_errors=True)


# -- the load --------------------------------------------------------------------------------
@dataclass
class Cell:
    """One (size, concurrency) measurement."""

    size: int
    concurrency: int
    times: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall: float = 0.0
    cpu: float | None = None  # the web worker's CPU seconds for the whole cell

    def p(self, q: float) -> float | None:
        return percentile(self.times, q)


class Uploader:
    """One client: its own connection and conversation (renewed every few uploads)."""

    def __init__(self, url: str, kind: str, size: int, per_session: int) -> None:
        self.http = httpx.Client(base_url=url, timeout=60)
        self.name, self.data = make_file(kind, size)
        self.per_session = per_session
        self.sent = 0
        self._new_session()

    def _new_session(self) -> None:
        resp = self.http.post("/api/sessions", json={})
        resp.raise_for_status()
        chat = resp.json()
        self.headers = {"Authorization": f"Bearer {chat['token']}"}
        self.body, ctype = multipart(chat["session_id"], self.name, self.data)
        self.headers["Content-Type"] = ctype

    def upload(self, cell: Cell) -> None:
        if self.sent and self.sent % self.per_session == 0:
            self._new_session()
        self.sent += 1
        start = time.perf_counter()
        resp = self.http.post("/api/chat/upload", content=self.body, headers=self.headers)
        took = time.perf_counter() - start
        if resp.status_code == 202:
            cell.times.append(took)
        else:
            cell.errors.append(f"{resp.status_code} {resp.text[:120]}")

    def close(self) -> None:
        self.http.close()


def measure(
    url: str, kind: str, size: int, concurrency: int, count: int, pid: int | None = None
) -> Cell:
    """`count` uploads in all, spread over `concurrency` clients uploading at once."""
    cell = Cell(size, concurrency)
    clients = [Uploader(url, kind, size, per_session=20) for _ in range(concurrency)]
    clients[0].upload(Cell(size, 1))  # warm-up: first connection, first imports in the server
    per = max(1, count // concurrency)
    barrier = threading.Barrier(concurrency)

    def run(client: Uploader) -> None:
        barrier.wait()
        for _ in range(per):
            client.upload(cell)

    threads = [threading.Thread(target=run, args=(c,)) for c in clients]
    cpu_before = cpu_seconds(pid)
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cell.wall = time.perf_counter() - start
    cpu_after = cpu_seconds(pid)
    if cpu_before is not None and cpu_after is not None:
        cell.cpu = cpu_after - cpu_before
    for c in clients:
        c.close()
    return cell


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def report(cells: list[Cell]) -> None:
    head = f"{'size':>8} {'clients':>7} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'MB/s':>7}"
    print(f"\n{head} {'web CPU ms/upload':>17}  errors")
    for c in cells:
        rate = len(c.times) * c.size / UNITS["M"] / c.wall if c.wall else 0
        errors = f"{len(c.errors)} ({c.errors[0]})" if c.errors else "0"
        done = len(c.times) + len(c.errors)
        cpu = "-" if c.cpu is None or not done else f"{c.cpu * 1000 / done:.1f}"
        print(
            f"{label(c.size):>8} {c.concurrency:>7} {len(c.times):>5} {ms(c.p(50)):>8} "
            f"{ms(c.p(95)):>8} {rate:>7.0f} {cpu:>17}  {errors}"
        )


def plot(cells: list[Cell], path: Path, title: str) -> None:
    """p50/p95 against size (one client) and against clients (per size)."""
    plt = pyplot()
    if plt is None:
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    seq = sorted((c for c in cells if c.concurrency == 1), key=lambda c: c.size)
    xs = [c.size / UNITS["M"] for c in seq]
    for q, style in ((50, "o-"), (95, "s--")):
        left.plot(xs, [(c.p(q) or 0) * 1000 for c in seq], style, label=f"p{q}")
    left.axhline(20, color="grey", linewidth=0.8, linestyle=":", label="target (5 MB p50)")
    left.set_xscale("log")
    left.set_xlabel("file size (MB, log)")
    left.set_ylabel("time to 202 (ms)")
    left.set_title("one client")
    left.legend()
    for size in sorted({c.size for c in cells}):
        row = sorted((c for c in cells if c.size == size), key=lambda c: c.concurrency)
        if len(row) < 2:
            continue
        cs = [c.concurrency for c in row]
        (line,) = right.plot(cs, [(c.p(50) or 0) * 1000 for c in row], "o-", label=label(size))
        right.plot(cs, [(c.p(95) or 0) * 1000 for c in row], "s--", color=line.get_color())
    right.set_xscale("log", base=2)
    right.set_yscale("log")
    right.set_xlabel("concurrent clients")
    right.set_ylabel("time to 202 (ms, log): p50 solid, p95 dashed")
    right.set_title("under load")
    if right.get_legend_handles_labels()[0]:
        right.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    log(f"plot written to {path}")


def profile(url: str, pid: int, kind: str, out: Path, seconds: float = 15) -> None:
    """Sample the web process with py-spy while one client uploads 5 MB files back to back."""
    spy = shutil.which("py-spy")
    if spy is None:
        log("py-spy is not on PATH; no profile")
        return
    stop = threading.Event()
    cell = Cell(5 * UNITS["M"], 1)

    def load() -> None:
        client = Uploader(url, kind, 5 * UNITS["M"], per_session=20)
        while not stop.is_set():
            client.upload(cell)
        client.close()

    thread = threading.Thread(target=load)
    thread.start()
    time.sleep(1)
    try:
        for fmt, dest in (("raw", out.with_suffix(".txt")), ("flamegraph", out)):
            subprocess.run(
                [spy, "record", "-p", str(pid), "-d", str(int(seconds / 2)), "-r", "500"]
                + ["-f", fmt, "-o", str(dest), "--subprocesses"],
                check=True,
                capture_output=True,
            )
    finally:
        stop.set()
        thread.join()
    log(f"profile: {len(cell.times)} uploads, p50 {ms(cell.p(50))} ms; flame graph {out}")
    summarize_profile(out.with_suffix(".txt"))


def summarize_profile(raw: Path, top: int = 15) -> None:
    """Self time per function (py-spy's collapsed stacks) and inclusive time of our frames."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + n
    if not total:
        return
    print(f"\nself time, top {top} of {total} samples:")
    for frame, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {100 * n / total:5.1f}%  {frame}")
    print("\ninclusive time of the upload path's own frames:")
    for frame, n in sorted(inclusive.items(), key=lambda kv: -kv[1]):
        if ("webapp" in frame or "models" in frame) and n * 50 >= total:
            print(f"  {100 * n / total:5.1f}%  {frame}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", default="100K,1M,5M,20M")
    p.add_argument("--count", type=int, default=40, help="uploads per size and concurrency")
    p.add_argument("--concurrency", default="1,4,16", help="clients at once, comma-separated")
    p.add_argument("--load-sizes", default="1M,5M", help="sizes measured at every concurrency")
    p.add_argument("--kind", choices=("png", "txt"), default="png")
    p.add_argument(
        "--storage", default="", help="our ATTACHMENT_STORAGE (db, file: a tmp dir; unset: default)"
    )
    p.add_argument("--max-mb", type=int, default=25, help="MAX_UPLOAD_MB of our stack")
    p.add_argument("--url", help="a running server instead of our own stack")
    p.add_argument("--redis", default="redis://localhost:6379", help="own stack: Redis base URL")
    p.add_argument("--database-url", help="own stack on PostgreSQL (database name *_bench)")
    p.add_argument("--log-dir", help="keep the stack's logs here")
    p.add_argument("--plot", default=str(ROOT / "bench" / "uploads.png"))
    p.add_argument("--title", default="")
    p.add_argument("--profile", action="store_true", help="py-spy the web process (own stack)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    load_sizes = {parse_size(s) for s in args.load_sizes.split(",")}
    levels = [int(c) for c in args.concurrency.split(",")]

    @contextmanager
    def target() -> Iterator[Target]:
        if args.url:
            yield Target(args.url.rstrip("/"))
        else:
            with local_stack(args) as t:
                yield t

    cells: list[Cell] = []
    with target() as t:
        for size in sizes:
            for c in levels:
                if c > 1 and size not in load_sizes:
                    continue
                cell = measure(t.url, args.kind, size, c, args.count, t.web_pid)
                cells.append(cell)
                log(f"{label(size)} x{c}: p50 {ms(cell.p(50))} ms, p95 {ms(cell.p(95))} ms")
        report(cells)
        if args.profile and t.web_pid:
            profile(t.url, t.web_pid, args.kind, Path(args.plot).with_suffix(".profile.svg"))
    db = "PostgreSQL" if args.database_url else "SQLite"
    title = args.title or f"POST /api/chat/upload → 202 ({args.kind}, {db}, {args.storage or 'db'})"
    plot(cells, Path(args.plot), title)
    five = [c for c in cells if c.size == 5 * UNITS["M"] and c.concurrency == 1]
    if five and five[0].times:
        mean = ms(statistics.mean(five[0].times))
        print(f"\n5 MB, one client: p50 {ms(five[0].p(50))} ms, mean {mean} ms (target p50 <= 20)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
