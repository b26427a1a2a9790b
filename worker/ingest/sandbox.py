"""Parse untrusted bytes in a forked child with a memory cap and a wall-clock limit.

Why a child: a zip bomb or a pathological PDF makes lxml or pypdf allocate gigabytes or loop
for minutes. In the Celery process itself that memory is never given back (CPython and glibc
keep freed arenas), the soft time limit can be swallowed by a parser's `except Exception`, and
a worker killed for its size has its task redelivered again and again. A child forked from the
warm worker starts in ~10 ms with every parser already imported, runs under
RLIMIT_AS, is SIGKILLed by the parent at its deadline, and takes all its memory with it.

The child never touches the parent's database or Redis connections: it runs only the parser,
writes one JSON line to a pipe and leaves with `os._exit` (no atexit, no finalizers, no socket
shutdown). JSON, not pickle, so a parser exploited by its input cannot run code in the worker.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import logging
import math
import os
import resource
import select
import signal
import time
from collections.abc import Callable
from typing import Any, NoReturn

from worker.ingest.convert import ConversionError, extract_text

log = logging.getLogger(__name__)

__all__ = ["ParseLimitExceeded", "run_sandboxed", "sandboxed_extract"]

_MB = 1 << 20
_PR_SET_PDEATHSIG = 1
_CRASH = 70  # exit code of a child that could not even report its failure


class ParseLimitExceeded(ConversionError):
    """The sandbox stopped the parse (memory, time, crash); the message names the limit."""


def _memory_message(memory_mb: int) -> str:
    return f"the file needs more memory than allowed to read (limit {memory_mb} MB)"


def _time_message(seconds: float) -> str:
    return f"the file took too long to read (limit {seconds:g} s)"


def _status_kb(field: str) -> int:
    """A `/proc/self/status` size in KiB (0 where /proc is missing)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _is_memory_failure(exc: BaseException | None, start_vm_kb: int, memory_mb: int) -> bool:
    """MemoryError anywhere in the chain, or any failure once the address space came within a
    quarter of the limit: lxml reports a failed malloc as an `XMLSyntaxError: unknown error`
    (convert.py then calls the file damaged), so the message alone cannot tell."""
    if _status_kb("VmPeak") - start_vm_kb >= memory_mb * 1024 * 3 // 4:
        return True  # VmPeak restarts at the fork, so this is the child's own peak
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, MemoryError) or "memory allocation failed" in str(exc).lower():
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _confine(parent: int, memory_mb: int, seconds: float) -> int:
    """Limits of the child, set before it reads a byte of the file; returns VmSize in KiB."""
    gc.freeze()  # the parent's objects: never scanned here, so never copied on write
    for sig in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)  # Celery's handlers belong to the worker, not here
    with contextlib.suppress(OSError, AttributeError):  # die with the worker (Linux only)
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(_CRASH)  # the worker died before the death signal was armed
    _lower(resource.RLIMIT_CORE, 0)  # a crashing parser leaves no core file
    _lower(resource.RLIMIT_CPU, math.ceil(seconds) + 1)  # if the parent's kill never comes
    # The allowance is on top of what the fork inherited (the warm worker's ~300 MB of mapped
    # libraries and heap), so the limit means the same whatever the parent has loaded.
    start_vm_kb = _status_kb("VmSize")
    _lower(resource.RLIMIT_AS, start_vm_kb * 1024 + memory_mb * _MB)
    # The address-space cap alone leaks: a parent with many threads leaves malloc arenas whose
    # reserved, not yet writable 64 MB regions already count in VmSize, and when the main arena
    # hits the cap glibc retries in those, growing without a new mapping (a dense DOCX reached
    # 859 MB against a 812 MB budget, or crawled on until the time limit). Writable private
    # memory is what the data limit counts, at the moment a region is made writable.
    _lower(resource.RLIMIT_DATA, _status_kb("VmData") * 1024 + memory_mb * _MB)
    return start_vm_kb


def _lower(which: int, value: int) -> None:
    """Set soft and hard limit to `value`, never above a hard limit the host already set."""
    _, hard = resource.getrlimit(which)
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(which, (value, value))


def _child(
    write_fd: int, parent: int, fn: Callable[..., Any], args: tuple, limits: tuple
) -> NoReturn:
    """Run `fn` in the child and report one JSON object; never returns, never raises."""
    code = _CRASH
    try:
        start_vm_kb = _confine(parent, *limits)
        try:
            report: dict[str, Any] = {"ok": fn(*args)}
        except BaseException as exc:  # every failure is reported, whatever its type
            if _is_memory_failure(exc, start_vm_kb, limits[0]):
                report = {"memory": True}
            elif isinstance(exc, ConversionError):
                report = {"refused": str(exc)}
            else:
                report = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            del exc
        try:
            data = json.dumps(report, ensure_ascii=False).encode()
        except MemoryError:
            data = b'{"memory": true}'
        except (TypeError, ValueError) as exc:  # a result JSON cannot carry: our bug
            data = json.dumps({"error": f"unusable result ({exc})"[:500]}).encode()
        del report
        view = memoryview(data)
        while view:
            view = view[os.write(write_fd, view) :]
        code = 0
    finally:
        os._exit(code)


def _collect(read_fd: int, deadline: float, max_bytes: int) -> tuple[bytes, str | None]:
    """Read the child's report until EOF; (bytes, None) or (partial, "timeout"/"too-big")."""
    chunks: list[bytes] = []
    size = 0
    poller = select.poll()
    poller.register(read_fd, select.POLLIN | select.POLLHUP)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return b"", "timeout"
        if not poller.poll(left * 1000):
            continue
        chunk = os.read(read_fd, _MB)
        if not chunk:
            return b"".join(chunks), None
        size += len(chunk)
        if size > max_bytes:
            return b"", "too-big"
        chunks.append(chunk)


def _reap(pid: int, kill: bool) -> tuple[int, int]:
    """(wait status, peak RSS in KiB) of the child; SIGKILL first when it must not linger.

    (0, 0) if something else reaped it (a SIGCHLD handler): the report alone then decides."""
    try:
        if not kill:  # it closed the pipe, so it is exiting: give it a moment, then make sure
            for _ in range(500):
                got, status, usage = os.wait4(pid, os.WNOHANG)
                if got:
                    return status, usage.ru_maxrss
                time.sleep(0.001)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _, status, usage = os.wait4(pid, 0)
    except ChildProcessError:
        return 0, 0
    return status, usage.ru_maxrss


def _verdict(report: bytes, status: int, peak_kb: int, start_kb: int, limits: tuple) -> Any:
    """The child's result, or a ConversionError that says which limit stopped it."""
    memory_mb, seconds = limits
    try:
        got = json.loads(report) if report else {}
    except ValueError:
        got = {}
    if "ok" in got:
        return got["ok"]
    if got.get("memory"):
        raise ParseLimitExceeded(_memory_message(memory_mb))
    if "refused" in got:
        raise ConversionError(got["refused"])
    if "error" in got:
        raise ConversionError(f"the file could not be read ({got['error']})")
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        grew_mb = (peak_kb - start_kb) / 1024
        if sig == signal.SIGXCPU:
            raise ParseLimitExceeded(_time_message(seconds))
        if sig == signal.SIGKILL or grew_mb >= memory_mb * 0.8:  # the kernel's OOM killer
            raise ParseLimitExceeded(_memory_message(memory_mb))
        raise ParseLimitExceeded(f"the file crashed the reader ({signal.Signals(sig).name})")
    raise ParseLimitExceeded(
        f"the reader stopped unexpectedly (exit {os.waitstatus_to_exitcode(status)})"
    )


def run_sandboxed(
    fn: Callable[..., Any],
    *args: Any,
    memory_mb: int,
    seconds: float,
    max_result_mb: int = 64,
) -> Any:
    """`fn(*args)` in a forked child: its JSON-serialisable result, or ConversionError.

    ParseLimitExceeded (a ConversionError) when the child ran out of memory, time or crashed;
    ConversionError with the child's own message when `fn` raised one. A SoftTimeLimitExceeded
    (or any exception) raised in the caller while waiting kills the child and propagates."""
    start_kb, parent = _status_kb("VmRSS"), os.getpid()
    read_fd, write_fd = os.pipe()
    started = time.monotonic()
    try:
        pid = os.fork()
    except OSError:  # out of processes or memory: the row stays open, the sweeper retries
        os.close(read_fd)
        os.close(write_fd)
        raise
    if pid == 0:
        os.close(read_fd)
        _child(write_fd, parent, fn, args, (memory_mb, seconds))
    os.close(write_fd)
    report, stopped, status, peak_kb = b"", "interrupted", 0, 0
    try:
        report, stopped = _collect(read_fd, started + seconds, max_result_mb * _MB)
    finally:
        os.close(read_fd)
        status, peak_kb = _reap(pid, kill=stopped is not None)
        log.info(
            "sandboxed parse",
            extra={
                "parse_ms": round((time.monotonic() - started) * 1000, 1),
                "child_peak_mb": round(peak_kb / 1024, 1),
                "stopped": stopped,
            },
        )
    if stopped == "timeout":
        # A child that reached its memory ceiling and then crawled on (allocations failing and
        # retried at the limit) until the clock ran out was stopped by memory, not by the file's
        # length: say so, as the child itself would have (`_is_memory_failure`'s three quarters).
        if (peak_kb - start_kb) / 1024 >= memory_mb * 3 / 4:
            raise ParseLimitExceeded(_memory_message(memory_mb))
        raise ParseLimitExceeded(_time_message(seconds))
    if stopped == "too-big":
        raise ParseLimitExceeded(f"the file's text is too long to keep (limit {max_result_mb} MB)")
    return _verdict(report, status, peak_kb, start_kb, (memory_mb, seconds))


def _extract_in_child(data: bytes, content_type: str, filename: str, limits: tuple) -> str:
    """What the child runs: the checks and the parse, truncated before it crosses the pipe."""
    max_uncompressed_mb, max_chars = limits
    text = extract_text(data, content_type, filename, max_uncompressed_mb=max_uncompressed_mb)
    return text if max_chars is None else text[:max_chars]


def sandboxed_extract(
    data: bytes, content_type: str, filename: str, max_chars: int | None = None
) -> str:
    """`extract_text` under PARSE_MEMORY_MB / PARSE_TIME_LIMIT / MAX_UNCOMPRESSED_MB; every
    failure is a ConversionError whose message starts with the file's name."""
    from models.settings import get_settings

    s, label = get_settings(), filename or "file"
    try:
        return run_sandboxed(
            _extract_in_child,
            data,
            content_type,
            filename,
            (s.max_uncompressed_mb, max_chars),
            memory_mb=s.parse_memory_mb,
            seconds=s.parse_time_limit,
        )
    except ConversionError as exc:
        if str(exc).startswith(f"{label}: "):  # extract_text's own, already named
            raise
        raise type(exc)(f"{label}: {exc}") from None
