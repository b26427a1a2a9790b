"""Bench only: `bench/costs.py` puts this folder on the PYTHONPATH of the processes it starts,
so each counts the SQL statements it sends (by first keyword) into `$SQLCOUNT_DIR/<pid>.json`.

No thread (forks and gevent would complicate one): the counts are written from the listener
itself at most twice a second; the bench triggers a last write by letting the sweeper and a
readiness probe run after the load.
"""

import os

_DIR = os.environ.get("SQLCOUNT_DIR")

if _DIR:
    import json
    import time
    from collections import Counter

    _counts: Counter = Counter()
    _state = {"written": 0.0, "pid": os.getpid()}

    def _flush() -> None:
        path = os.path.join(_DIR, f"{os.getpid()}.json")
        with open(path + ".tmp", "w") as out:
            json.dump(_counts, out)
        os.replace(path + ".tmp", path)
        _state["written"] = time.monotonic()

    def _count(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        if _state["pid"] != os.getpid():  # a forked child starts from zero
            _counts.clear()
            _state["pid"] = os.getpid()
        _counts[statement.lstrip().split(None, 1)[0].upper()] += 1
        if time.monotonic() - _state["written"] > 0.5:
            _flush()

    try:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        event.listen(Engine, "before_cursor_execute", _count)
    except ImportError:  # a process without SQLAlchemy has nothing to count
        pass
