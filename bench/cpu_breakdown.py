"""Where one answer's CPU goes: py-spy samples of the web and worker processes, by layer.

    py-spy record --pid PID --gil --nonblocking --rate 250 --format raw -o web.txt --duration 15
    python bench/cpu_breakdown.py web=web-*.txt worker=worker-*.txt

Record each gunicorn worker and each Celery pool process while `bench/chat_latency.py` keeps
them busy (`--log-dir` keeps the stack running long enough to attach; `--gil` keeps only samples
that hold the interpreter, so time blocked on a socket or a lock is not counted as CPU). Each
sample is charged to the innermost frame that belongs to a known layer (engine, database, Redis,
Celery/kombu, JSON, logging, WebSocket/HTTP, gevent), so JSON encoding inside a Redis publish
counts as JSON, and SQLAlchemy building a statement counts as database. Multiply a layer's share
by the process's CPU per answer (bench/costs.py) for milliseconds per answer.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

LAYERS: list[tuple[str, re.Pattern[str]]] = [
    ("logging", re.compile(r"\((logging/|models/logs\.py|pythonjsonlogger)")),
    ("JSON", re.compile(r"\((json/|simplejson|orjson|kombu/utils/json)")),
    ("database", re.compile(r"\((sqlalchemy/|sqlite3|psycopg|models/db\.py)")),
    ("Redis", re.compile(r"\(redis/")),
    ("Celery/kombu", re.compile(r"\((celery/|kombu/|billiard/|vine/|amqp/)")),
    (
        "engine",
        re.compile(
            r"\((worker/agent/|worker/escalation/|worker/ingest/|haystack|bm25s|wordllama|"
            r"numpy|scipy|py3langid|Stemmer)"
        ),
    ),
    (
        "WebSocket/HTTP",
        re.compile(r"\((simple_websocket|wsproto|flask_sock|gunicorn|werkzeug|flask/|h11)"),
    ),
    ("gevent", re.compile(r"\(gevent/")),
    ("marshmallow", re.compile(r"\(marshmallow/")),
]
OWN = re.compile(r"\((webapp|worker|models)/[^:]+:\d+\)")


def layer(stack: str) -> str:
    """The layer of the innermost frame that has one ("other" when none does)."""
    for frame in reversed(stack.split(";")):
        for name, pattern in LAYERS:
            if pattern.search(frame):
                return name
    return "other"


def breakdown(paths: list[Path]) -> tuple[Counter, Counter]:
    """Samples per layer, and per innermost frame of our own code."""
    layers: Counter = Counter()
    own: Counter = Counter()
    for path in paths:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            layers[layer(stack)] += int(count)
            for frame in reversed(stack.split(";")):
                if OWN.search(frame):
                    own[frame] += int(count)
                    break
    return layers, own


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    for arg in argv:
        name, _, pattern = arg.partition("=")
        folder = Path(pattern).parent
        paths = sorted(folder.glob(Path(pattern).name))
        layers, own = breakdown(paths)
        total = sum(layers.values()) or 1
        print(f"\n{name}: {total} samples in {len(paths)} file(s)")
        for key, count in layers.most_common():
            print(f"  {key:<16} {100 * count / total:5.1f} %")
        print("  busiest frames of our own code:")
        for frame, count in own.most_common(10):
            print(f"    {100 * count / total:5.1f} %  {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
