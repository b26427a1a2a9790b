"""CPU and SQL statements of one answer, in one process: the web's accept and the worker's answer.

    python bench/answer_path.py [--database-url sqlite:///…|postgresql://…_bench]
                                [--sessions 10] [--messages 10] [--redis redis://localhost:6379]
                                [--profile worker|web] [--together N]

Why in one process: on a shared two-core machine wall times and per-process /proc CPU of a
whole stack move with everybody else's load; `time.process_time` of the very calls the web and
the worker make (`accept_message`, `answer_pending`) moves much less, and statement counts not
at all. It sets up a throwaway database (SQLite file by default; a PostgreSQL database whose
name ends in `_bench` is created and dropped), imports the sample KB through the worker's own
`ingest`, then for each message: accepts it as the WebSocket handler does (own ORM session,
`chat_for_message`: the session and the duplicate check in one read, `accept_message` inside
the Flask app) and answers it as the Celery task does (`answer_pending`). Redis is real (a
private database number and channel prefix; the sent tasks are flushed at the end, no worker
consumes them). The first message of each session is warm-up for that session; the first
session is warm-up for the process (models, index, statement caches) and not counted.

`--together N` (N > 1) accepts the messages of N sessions at a time as one batch, as the
socket batcher stores a burst (`store_together`, then the batch's broadcast and its enqueues);
web figures are then per message (the batch's CPU and statements divided by N). The first
batch of sessions is the warm-up.

Run it once on the old code and once on the new, alternately, to compare.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.chdir(ROOT)


def _admin(url: str, create: bool) -> None:
    import psycopg

    name = urlparse(url).path.lstrip("/")
    if not name.endswith("_bench"):
        raise SystemExit(f"refusing to use database {name!r}: its name must end in _bench")
    admin = urlunparse(urlparse(url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            conn.execute(f'CREATE DATABASE "{name}"')


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--database-url", default="")
    p.add_argument("--sessions", type=int, default=10)
    p.add_argument("--messages", type=int, default=10)
    p.add_argument("--redis", default="redis://localhost:6379")
    p.add_argument("--redis-db", type=int, default=11)
    p.add_argument("--profile", choices=("worker", "web"), help="print cProfile's top functions")
    p.add_argument("--label", default="")
    p.add_argument("--together", type=int, default=1, help="messages stored as one batch")
    p.add_argument("--sort", default="cumulative", help="cProfile sort key (with --profile)")
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="helpline-answer-path-"))
    url = args.database_url or f"sqlite:///{tmp / 'bench.db'}"
    if url.startswith("postgres"):
        _admin(url, create=True)
    prefix = f"hlap-{uuid.uuid4().hex[:6]}"
    os.environ.update(
        {
            "DATABASE_URL": url,
            "REDIS_URL": f"{args.redis}/{args.redis_db}",
            "BROKER_URL": "",
            "EVENT_CHANNEL_PREFIX": prefix,
            "RATE_LIMIT_PER_MINUTE": "0",
            "RATE_LIMIT_PER_IP_PER_MINUTE": "0",
            "SESSIONS_PER_IP_PER_MINUTE": "0",
            "LLM_PROVIDER": "offline",
            "OPENAI_API_KEY": "",
            "LOG_LEVEL": "WARNING",
            "HAYSTACK_TELEMETRY_ENABLED": "False",
            "STAFF_API_KEYS": "bench",
        }
    )
    import subprocess

    subprocess.run(
        [str(ROOT / ".venv/bin/flask"), "--app", "wsgi", "db", "upgrade"],
        check=True,
        capture_output=True,
    )

    import logging

    from sqlalchemy import event

    from models.logs import configure_logging

    configure_logging("INFO", "json")  # as the worker and web run by default

    from models.chat import ChatSession
    from models.db import get_engine, new_session
    from webapp import create_app
    from webapp.auth import Actor
    from webapp.chat import accept_message, chat_for_message
    from webapp.cli import _collect
    from webapp.kb import upsert_document
    from worker.kb import ingest
    from worker.replies import answer_pending

    counts = {"n": 0}

    @event.listens_for(get_engine(), "before_cursor_execute")
    def _count(*_a, **_k) -> None:  # type: ignore[no-untyped-def]
        counts["n"] += 1

    db = new_session()
    ids = []
    for item in _collect(("data/sample_kb",)):
        doc, _changed = upsert_document(db, **item, max_bytes=50 * 1024 * 1024)
        db.commit()
        ids.append(doc.id)
    db.close()
    for doc_id in ids:
        ingest(doc_id)
    questions = [
        json.loads(line)["question"]
        for line in (ROOT / "bench/sample_questions.jsonl").read_text().splitlines()
        if line.strip()
    ]

    app = create_app()
    logging.getLogger().setLevel(logging.INFO)  # something on the way set DEBUG
    actor = Actor("customer")
    web_cpu, worker_cpu, web_sql, worker_sql = [], [], [], []
    prof = cProfile.Profile() if args.profile else None
    q = 0

    def new_chat() -> str:
        db = new_session()
        chat = ChatSession(token_hash=uuid.uuid4().hex)
        db.add(chat)
        db.commit()
        db.close()
        return chat.id

    with app.test_request_context("/ws", environ_base={"REMOTE_ADDR": "127.0.0.1"}):
        if args.together > 1:
            from webapp.chat import SocketSend, announce, enqueue_all, store_together

            for g in range(args.sessions // args.together + 1):
                group = [new_chat() for _ in range(args.together)]
                for m in range(args.messages):
                    counted = g > 0 and m > 0
                    sends = []
                    for session_id in group:
                        text = questions[q % len(questions)]
                        q += 1
                        sends.append(
                            SocketSend(session_id, actor, text, f"c{m}", None, "127.0.0.1")
                        )
                    n0, c0 = counts["n"], time.process_time()
                    if prof and counted and args.profile == "web":
                        prof.enable()
                    db = new_session()  # as the socket batcher's leader does
                    try:
                        store_together(db, sends)
                    finally:
                        db.close()
                    stored = [send.accepted for send in sends if send.accepted is not None]
                    assert len(stored) == len(sends), [send.error for send in sends]
                    announce(stored)
                    enqueue_all(stored)  # the batch's reply tasks in one publish, as the leader
                    if prof:
                        prof.disable()
                    n1, c1 = counts["n"], time.process_time()
                    for send in sends:
                        assert send.accepted is not None
                        n2, c2 = counts["n"], time.process_time()
                        if prof and counted and args.profile == "worker":
                            prof.enable()
                        outcome = answer_pending(send.accepted.message.id)
                        if prof:
                            prof.disable()
                        n3, c3 = counts["n"], time.process_time()
                        if outcome != "done":
                            raise SystemExit(f"unexpected outcome {outcome}")
                        if counted:
                            web_cpu.append((c1 - c0) * 1000 / len(sends))
                            web_sql.append((n1 - n0) / len(sends))
                            worker_cpu.append((c3 - c2) * 1000)
                            worker_sql.append(n3 - n2)
        for s in range(args.sessions + 1 if args.together <= 1 else 0):
            session_id = new_chat()
            for m in range(args.messages):
                counted = s > 0 and m > 0
                text = questions[q % len(questions)]
                q += 1
                holder: dict = {}
                n0, c0 = counts["n"], time.process_time()
                if prof and counted and args.profile == "web":
                    prof.enable()
                db = new_session()  # as the socket handler does
                try:
                    chat, duplicate_of = chat_for_message(db, session_id, f"c{m}")
                    assert chat is not None
                    accept_message(
                        db,
                        chat,
                        actor,
                        text,
                        f"c{m}",
                        [],
                        on_stored=lambda msg, _created, h=holder: h.update(id=msg.id),
                        duplicate_of=duplicate_of,
                    )
                finally:
                    db.close()
                if prof:
                    prof.disable()
                n1, c1 = counts["n"], time.process_time()
                if prof and counted and args.profile == "worker":
                    prof.enable()
                outcome = answer_pending(holder["id"])
                if prof:
                    prof.disable()
                n2, c2 = counts["n"], time.process_time()
                if outcome != "done":
                    raise SystemExit(f"unexpected outcome {outcome}")
                if counted:
                    web_cpu.append((c1 - c0) * 1000)
                    worker_cpu.append((c2 - c1) * 1000)
                    web_sql.append(n1 - n0)
                    worker_sql.append(n2 - n1)

    import redis

    r = redis.Redis.from_url(f"{args.redis}/{args.redis_db}")
    for key in r.scan_iter(f"{prefix}*"):
        r.delete(key)
    get_engine().dispose()
    if url.startswith("postgres"):
        _admin(url, create=False)

    def summary(values: list[float]) -> str:
        return f"{statistics.median(values):.2f} (mean {statistics.fmean(values):.2f})"

    print(
        json.dumps(
            {
                "label": args.label,
                "together": args.together,
                "database": url.split(":", 1)[0],
                "answers": len(worker_cpu),
                "web_cpu_ms_p50_mean": summary(web_cpu),
                "worker_cpu_ms_p50_mean": summary(worker_cpu),
                "web_statements": statistics.fmean(web_sql),
                "worker_statements": statistics.fmean(worker_sql),
            }
        )
    )
    if prof:
        pstats.Stats(prof).sort_stats(args.sort).print_stats(45)
    return 0


if __name__ == "__main__":
    sys.exit(main())
