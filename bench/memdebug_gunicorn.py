"""gunicorn settings for `bench/sockets.py --memdebug`: the project's own, plus a memory probe.

The probe lives only here (never in a deployment): the worker starts tracemalloc, and a thread
(a greenlet under gevent) watches MEMDEBUG_DIR for `<tag>.want` files. For each it writes
`<tag>.json` (RSS, malloc's in-use bytes, live objects by type, greenlets) and `<tag>.tm` (a
tracemalloc snapshot), so the benchmark can say what each idle socket holds.
"""

from __future__ import annotations

import os
import runpy
from pathlib import Path

_project = runpy.run_path(str(Path(__file__).resolve().parent.parent / "gunicorn.conf.py"))
globals().update({k: v for k, v in _project.items() if not k.startswith("__")})
_project_post_worker_init = _project["post_worker_init"]


def post_worker_init(worker) -> None:  # type: ignore[no-untyped-def]
    """The project's hook, then the probe."""
    import threading
    import tracemalloc

    _project_post_worker_init(worker)
    tracemalloc.start(int(os.environ.get("MEMDEBUG_FRAMES", "12")))
    folder = Path(os.environ["MEMDEBUG_DIR"])
    threading.Thread(target=_watch, args=(folder,), name="memdebug", daemon=True).start()


def _mallinfo_in_use() -> int | None:
    """Bytes malloc has handed out (glibc's mallinfo2), Python's and C libraries' alike."""
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [
            (n, ctypes.c_size_t)
            for n in (
                "arena",
                "ordblks",
                "smblks",
                "hblks",
                "hblkhd",
                "usmblks",
                "fsmblks",
                "uordblks",
                "fordblks",
                "keepcost",
            )
        ]

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = MallInfo2
        info = libc.mallinfo2()
    except (OSError, AttributeError):
        return None
    return int(info.uordblks + info.hblkhd)


def _snapshot(folder: Path, tag: str) -> None:
    import gc
    import json
    import tracemalloc
    from collections import Counter

    gc.collect()
    objects = gc.get_objects()
    types = Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in objects)
    del objects
    rss = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    traced, _peak = tracemalloc.get_traced_memory()
    tracemalloc.take_snapshot().dump(str(folder / f"{tag}.tm"))
    fds = len(os.listdir("/proc/self/fd"))
    info = {
        "rss_kb": rss,
        "malloc_in_use": _mallinfo_in_use(),
        "traced": traced,
        "fds": fds,
        "types": dict(types),
    }
    (folder / f"{tag}.json").write_text(json.dumps(info))


def _watch(folder: Path) -> None:
    import time

    while True:
        time.sleep(0.3)
        for want in folder.glob("*.want"):
            try:
                _snapshot(folder, want.stem)
            finally:
                want.unlink(missing_ok=True)
