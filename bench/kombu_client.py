"""kombu's Redis transport in one process, with and without one client per channel.

    python bench/kombu_client.py [--messages 3000] [--redis redis://127.0.0.1:6379/4]

For each mode, in a fresh interpreter (so the plain one never sees the patch): `plain` is
kombu as installed, `shared` applies `models.redisconn.share_broker_clients` first. Publishes
`--messages` messages to a queue of its own (prefixed keys, as the apps' channels), then takes
each back without auto-ack and acknowledges it (the late-ack bookkeeping a worker does per
task), and prints the CPU (`time.process_time`) per publish and per get + ack. The database is
emptied afterwards. Modes alternate twice: the machine's load moves both.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def one(mode: str, url: str, count: int) -> str:
    """Run in the child interpreter: the figures of one mode."""
    if mode == "shared":
        from models.redisconn import share_broker_clients

        share_broker_clients()
    from kombu import Connection, Exchange, Producer, Queue

    options = {"global_keyprefix": f"kc-{uuid.uuid4().hex[:6]}:", "visibility_timeout": 105}
    with Connection(url, transport_options=options) as conn:
        channel = conn.channel()
        queue = Queue("q", Exchange("q", type="direct"), routing_key="q")(channel)
        queue.declare()
        producer = Producer(channel)
        started = time.process_time()
        for _ in range(count):
            producer.publish("x", exchange=queue.exchange, routing_key="q", retry=False)
        publish = time.process_time() - started
        started = time.process_time()
        for _ in range(count):
            queue.get(no_ack=False).ack()
        take = time.process_time() - started
        queue.delete()
    return f"{mode}: publish {publish / count * 1e6:.0f} us, get + ack {take / count * 1e6:.0f} us"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--messages", type=int, default=3000)
    p.add_argument("--redis", default="redis://127.0.0.1:6379/4", help="emptied afterwards")
    p.add_argument("--mode", choices=("plain", "shared"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.mode:
        print(one(args.mode, args.redis, args.messages), flush=True)
        return 0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for mode in ("shared", "plain", "shared", "plain"):
        subprocess.run(
            [sys.executable, __file__, "--mode", mode, "--redis", args.redis]
            + ["--messages", str(args.messages)],
            check=True,
            env=env,
        )
    import redis

    redis.Redis.from_url(args.redis).flushdb()
    return 0


if __name__ == "__main__":
    sys.exit(main())
