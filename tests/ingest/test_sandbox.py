"""The parse sandbox: a forked child with a memory cap and a wall clock, and what it reports.

Also the checks that make a hostile file fail before (or instead of) a second parse: the
archive's declared sizes, the PDF page cap, and out-of-memory / time limits that propagate.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from models.filetypes import DOCX, ArchiveRefused, check_archive
from tests.files import build_dense_docx, build_docx_bomb, build_pdf, build_zip
from worker.ingest import convert
from worker.ingest.convert import ConversionError, extract_text
from worker.ingest.sandbox import ParseLimitExceeded, run_sandboxed, sandboxed_extract


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:")) / 1024


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _hog() -> None:
    """Allocate (and touch) memory 16 MB at a time until something stops us."""
    chunks = []
    while True:
        chunks.append(b"x" * (16 << 20))


def _sleep_forever(pidfile: str) -> None:
    Path(pidfile).write_text(str(os.getpid()))
    while True:
        time.sleep(1)


def _spin(pidfile: str) -> None:
    Path(pidfile).write_text(str(os.getpid()))
    while True:
        pass


def test_result_comes_back() -> None:
    assert run_sandboxed(str.upper, "grüße", memory_mb=128, seconds=5) == "GRÜSSE"
    assert run_sandboxed(lambda: {"n": [1, 2]}, memory_mb=128, seconds=5) == {"n": [1, 2]}


def test_memory_limit_gives_a_readable_error_and_the_parent_stays_small() -> None:
    before = _rss_mb()
    with pytest.raises(ParseLimitExceeded) as info:
        run_sandboxed(_hog, memory_mb=128, seconds=10)
    assert str(info.value) == "the file needs more memory than allowed to read (limit 128 MB)"
    assert _rss_mb() - before < 20


def test_timeout_kills_a_sleeping_child(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    started = time.monotonic()
    with pytest.raises(ParseLimitExceeded, match=r"took too long to read \(limit 0.5 s\)"):
        run_sandboxed(_sleep_forever, str(pidfile), memory_mb=128, seconds=0.5)
    assert time.monotonic() - started < 3
    assert not _alive(int(pidfile.read_text()))  # killed and reaped, not left running


def test_timeout_kills_a_busy_child(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    with pytest.raises(ParseLimitExceeded, match="took too long"):
        run_sandboxed(_spin, str(pidfile), memory_mb=128, seconds=0.5)
    assert not _alive(int(pidfile.read_text()))


def _raise(exc: BaseException) -> None:
    raise exc


def test_exceptions_in_the_child_become_conversion_errors() -> None:
    with pytest.raises(ConversionError, match=r"could not be read \(ValueError: boom\)"):
        run_sandboxed(_raise, ValueError("boom"), memory_mb=128, seconds=5)
    with pytest.raises(ConversionError) as info:
        run_sandboxed(
            _raise, ConversionError("a.pdf: the PDF is damaged"), memory_mb=128, seconds=5
        )
    assert str(info.value) == "a.pdf: the PDF is damaged"
    assert not isinstance(info.value, ParseLimitExceeded)


def _segfault() -> None:
    """What a parser's C bug does (without pytest's faulthandler printing a stack for it)."""
    import faulthandler

    faulthandler.disable()
    os.kill(os.getpid(), signal.SIGSEGV)


def test_a_crash_or_an_exit_is_reported() -> None:
    with pytest.raises(ParseLimitExceeded, match=r"crashed the reader \(SIGSEGV\)"):
        run_sandboxed(_segfault, memory_mb=128, seconds=5)
    with pytest.raises(ParseLimitExceeded, match=r"stopped unexpectedly \(exit 3\)"):
        run_sandboxed(os._exit, 3, memory_mb=128, seconds=5)


def test_a_huge_result_is_refused() -> None:
    with pytest.raises(ParseLimitExceeded, match=r"too long to keep \(limit 1 MB\)"):
        run_sandboxed(lambda: "x" * (2 << 20), memory_mb=128, seconds=5, max_result_mb=1)


@pytest.fixture
def alarm() -> Iterator[None]:
    """Raise SoftTimeLimitExceeded in this process after 0.3 s, as Celery's signal would."""

    def fire(*_: object) -> None:
        raise SoftTimeLimitExceeded()

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def test_the_tasks_soft_limit_propagates_and_kills_the_child(alarm: None, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    with pytest.raises(SoftTimeLimitExceeded):
        run_sandboxed(_sleep_forever, str(pidfile), memory_mb=128, seconds=30)
    assert not _alive(int(pidfile.read_text()))


def test_fork_overhead_is_small() -> None:
    run_sandboxed(len, "warm", memory_mb=128, seconds=5)
    started = time.monotonic()
    for _ in range(10):
        run_sandboxed(len, "abc", memory_mb=128, seconds=5)
    assert (time.monotonic() - started) / 10 < 0.25  # ~20 ms measured; generous for CI


# -- the checks in front of (and instead of a second) parse ----------------------------------


def test_archive_checks() -> None:
    check_archive(build_zip({"word/document.xml": b"<w:document/>"}), 50 << 20)
    bomb = build_docx_bomb(60)
    with pytest.raises(ArchiveRefused, match=r"would unpack to 6\d MB \(limit 50 MB\)"):
        check_archive(bomb, 50 << 20)
    with pytest.raises(ArchiveRefused, match=r"compressed \d+ to 1 \(limit 100\): a zip bomb"):
        check_archive(bomb, 500 << 20)
    many = build_zip({f"word/media/{i}.xml": b"" for i in range(5001)})
    with pytest.raises(ArchiveRefused, match=r"has 5001 parts \(limit 5000\)"):
        check_archive(many, 50 << 20)


def test_zip_bomb_is_refused_before_any_xml_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    import docx

    bomb = build_docx_bomb(200)
    monkeypatch.setattr(docx, "Document", lambda *_: pytest.fail("the bomb reached python-docx"))
    with pytest.raises(ConversionError, match=r"bomb.docx: the file would unpack to 201 MB"):
        extract_text(bomb, DOCX, "bomb.docx", max_uncompressed_mb=50)


def test_pdf_page_cap() -> None:
    pdf = build_pdf([[f"Page {i}"] for i in range(convert.MAX_PDF_PAGES + 1)])
    with pytest.raises(ConversionError, match=r"has 2001 pages \(limit 2000\)"):
        extract_text(pdf, "application/pdf", "manual.pdf")


@pytest.mark.parametrize("failure", [MemoryError(), SoftTimeLimitExceeded()])
def test_out_of_memory_or_time_is_final_not_reparsed(
    monkeypatch: pytest.MonkeyPatch, help_docx: bytes, help_pdf: bytes, failure: BaseException
) -> None:
    import docx
    import pypdf

    calls = []

    def failing(*_: object) -> None:
        calls.append(1)
        raise failure

    monkeypatch.setattr(docx, "Document", failing)
    monkeypatch.setattr(pypdf, "PdfReader", failing)
    for data, ctype in ((help_docx, DOCX), (help_pdf, "application/pdf")):
        with pytest.raises(type(failure)):
            extract_text(data, ctype, "f")
    assert len(calls) == 2  # one attempt per file: no fallback parse to explain the failure


def test_dense_docx_stops_at_the_memory_limit() -> None:
    with pytest.raises(ParseLimitExceeded) as info:
        sandboxed_extract(build_dense_docx(), DOCX, "dense.docx")
    assert str(info.value) == (
        "dense.docx: the file needs more memory than allowed to read (limit 512 MB)"
    )


def test_sandboxed_extract_returns_the_text(help_docx: bytes) -> None:
    text = sandboxed_extract(help_docx, DOCX, "help.docx", max_chars=20)
    assert text == "# Account help\nReset"  # cut to max_chars in the child


def test_parse_limits_come_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from models.settings import ConfigError, Settings

    for name in ("PARSE_MEMORY_MB", "PARSE_TIME_LIMIT", "MAX_UNCOMPRESSED_MB", "LLM_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("TASK_SOFT_TIME_LIMIT", raising=False)
    s = Settings.from_env()
    assert (s.parse_memory_mb, s.parse_time_limit, s.max_uncompressed_mb) == (512, 20.0, 50)
    monkeypatch.setenv("PARSE_TIME_LIMIT", "60")  # not under the task's soft limit (60 s)
    with pytest.raises(ConfigError, match="PARSE_TIME_LIMIT"):
        Settings.from_env()
    monkeypatch.setenv("PARSE_TIME_LIMIT", "")
    monkeypatch.setenv("LLM_TIMEOUT", "5")
    monkeypatch.setenv("TASK_SOFT_TIME_LIMIT", "12")
    assert Settings.from_env().parse_time_limit == 6.0  # unset: min(20 s, half the soft limit)
    monkeypatch.setenv("PARSE_MEMORY_MB", "10")
    with pytest.raises(ConfigError, match="PARSE_MEMORY_MB must be at least 64"):
        Settings.from_env()
