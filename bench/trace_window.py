"""Where one web process's time went in a window of time (the burst of first messages, say):
a py-spy chrome trace, replayed, by stage of the socket accept.

    py-spy record --pid PID --idle --nonblocking --rate 200 --format chrometrace -o web.json
    python bench/trace_window.py web.json [--start S] [--seconds 0.5] [--after-last _admit]

Why not `bench/cpu_breakdown.py`: its raw samples carry no time, and the burst is half a second
in a run of a minute; averaged over the run it disappears. A chrome trace (with `--idle`, so
the hub's waits are there too) gives every stack with its start and end, so any window can be
summed. `--after-last _admit` starts the window at the first socket message after the last
socket was opened (`bench/chat_latency.py` opens every socket first, then all sessions send at
once): that is the burst. Time is what the sampled stack was doing, on the CPU or not (a
process waiting for a core in the middle of a `send` counts as `send`), so on a loaded machine
read shares, not milliseconds.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

# A stage is the first of these functions found on the stack, innermost stage first.
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("task publish: a new Redis connection", ("ConnectionPool.get_connection",)),
    ("task publish: queue declaration", ("Producer.maybe_declare",)),
    ("task publish: the rest", ("send_reply", "send_replies", "enqueue_all")),
    ("store (read, SQL, commit)", ("store_together",)),
    ("acknowledgement write", ("Connection._acknowledge",)),
    ("broadcast of the batch", ("announce",)),
    ("frame parse and checks", ("Connection.handle",)),
    ("socket open (token, subscription, replay)", ("_admit", "Connection._fill")),
    ("events to clients (reply streams)", ("Outbox.writer", "Outbox._deliver_one")),
    ("pub/sub listener", ("EventHub._listen",)),
]
DETAILS: list[tuple[str, tuple[str, ...]]] = [
    ("SQL statement compilation (cache miss)", ("ClauseElement._compile_w_cache",)),
    ("marshmallow", ("Schema.dump", "Schema.load")),
]

Frame = tuple[str, str]


def intervals(path: Path) -> list[tuple[int, int, tuple[Frame, ...]]]:
    """(start µs, end µs, stack) of the busiest thread (the gevent hub's), in order."""
    events = json.loads(path.read_text())
    main = Counter(e["tid"] for e in events).most_common(1)[0][0]
    stack: list[Frame] = []
    out: list[tuple[int, int, tuple[Frame, ...]]] = []
    prev: int | None = None
    for e in events:
        if e["tid"] != main:
            continue
        if prev is not None and e["ts"] > prev and stack:
            out.append((prev, e["ts"], tuple(stack)))
        prev = e["ts"]
        if e["ph"] == "B":
            stack.append((e["name"], e["args"].get("filename", "")))
        elif stack:
            stack.pop()
    return out


def idle(stack: tuple[Frame, ...]) -> bool:
    """The hub waiting for I/O with nothing to run (its loop at the bottom of a short stack)."""
    return stack[-1][0] == "Hub.run" and len(stack) < 6


def stage(stack: tuple[Frame, ...], table: list[tuple[str, tuple[str, ...]]]) -> str | None:
    names = {name for name, _file in stack}
    for label, keys in table:
        if names.intersection(keys):
            return label
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("trace", type=Path)
    p.add_argument("--start", type=float, help="seconds from the trace's start")
    p.add_argument("--after-last", help="start at the first socket message after this function")
    p.add_argument("--seconds", type=float, default=0.5)
    args = p.parse_args()
    spans = intervals(args.trace)
    t0 = spans[0][0]
    if args.after_last:
        last = max(a for a, _b, st in spans if any(n == args.after_last for n, _f in st))
        start = min(
            a
            for a, _b, st in spans
            if a > last and any(n == "Connection.on_message" for n, _f in st)
        )
    else:
        start = t0 + int((args.start or 0.0) * 1e6)
    end = start + int(args.seconds * 1e6)
    stages: Counter[str] = Counter()
    details: Counter[str] = Counter()
    wall = busy = 0
    for a, b, st in spans:
        lo, hi = max(a, start), min(b, end)
        if hi <= lo:
            continue
        wall += hi - lo
        if idle(st):
            continue
        busy += hi - lo
        stages[stage(st, STAGES) or "other (hub, HTTP, ...)"] += hi - lo
        extra = stage(st, DETAILS)
        if extra:
            details[extra] += hi - lo
    print(
        f"{args.trace.name}: {(start - t0) / 1e6:.2f}-{(end - t0) / 1e6:.2f} s, "
        f"sampled {wall / 1e3:.0f} ms, busy {busy / 1e3:.0f} ms"
    )
    for label, us in (stages + details).most_common():
        print(f"  {label:45s} {us / 1e3:8.1f} ms {100 * us / max(busy, 1):5.1f} %")


if __name__ == "__main__":
    main()
