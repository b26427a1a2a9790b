"""Where accepted attachment bytes live (ATTACHMENT_STORAGE), for the web that writes them and
the `files` worker that reads them.

- `db`: a row of `attachment_blobs`, committed with the attachment's own row, so any process on
  any host reads it (web and worker dynos that share no disk). The default with PostgreSQL.
- `file:///dir`: one file per attachment in a directory web and `files` workers share (one host,
  or a shared volume). The upload is written once, straight from the request body, as
  `<dir>/.<id>.part`; once every byte is written it is renamed to `<dir>/<id>`, and (with
  ATTACHMENT_FSYNC) the file and the directory are flushed, both at once, before the row that
  names it is committed, so a committed row always names a complete, durable file, and a
  failed or aborted upload leaves nothing (or, after a crash, a `.part` or a file no row names,
  which the sweeper removes beside a SQLite database). The default with a SQLite file, in
  `<database file>-attachments` (models/settings.py says why).

The storage key on the row says which store holds the bytes (`db:<id>`, `file:<name>`), so rows
stored before a change of ATTACHMENT_STORAGE stay readable as long as both places exist: `db:`
rows whatever the setting (a SQLite deployment upgraded to the file default keeps reading,
parsing and deleting its old rows), and `file:` rows under `ATTACHMENT_STORAGE=db` from the
directory beside a SQLite database, where the default put them.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import mmap
import os
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import IO, Any

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from models.chat import Attachment, AttachmentBlob
from models.db import checkpoint_soon
from models.settings import Settings, get_settings, sqlite_attachments_dir

log = logging.getLogger(__name__)

PART_SUFFIX = ".part"
# A `.part` older than this belongs to a process that died mid-upload (an upload of the largest
# allowed file takes seconds); the sweeper removes it.
STALE_PART_SECONDS = 3600


class StoredFileMissing(RuntimeError):
    """A row names bytes that are not there (a file removed by hand, a volume not mounted)."""


def _directory(settings: Settings | None = None) -> Path | None:
    url = (settings or get_settings()).attachment_storage
    return Path(url[len("file://") :]) if url.startswith("file://") else None


def _native_pool() -> Any:
    """gevent's pool of real OS threads when gevent patched this process (the web), else None.

    Hashing and writing release the GIL, so in a real thread they run while the request's
    greenlet reads the next piece from the socket; a patched `threading` would only give
    another greenlet on the same core."""
    try:
        from gevent import monkey
    except ImportError:
        return None
    if not monkey.is_module_patched("threading"):
        return None
    import gevent

    return gevent.get_hub().threadpool


class Upload(ABC):
    """The bytes of one upload on their way in: written as they arrive, hashed as they pass.

    Under gevent the hash and the write of one piece run in native threads while the next piece
    is received (one piece in flight: memory stays at two pieces): in two threads at once when
    the write waits for a device (`_write_waits`: the hash is CPU, a direct write mostly waits),
    else in one (a copy into memory holds the GIL: a second thread only adds hand-offs)."""

    _write_waits = True

    def __init__(self, attachment_id: str) -> None:
        self.attachment_id = attachment_id
        self.size = 0
        self._hash = hashlib.sha256()
        self._pool = _native_pool()
        self._pending: tuple[Any, ...] = ()
        self._pending_buffer: object = None  # what the piece in flight is a view of

    @property
    def sha256(self) -> str:
        self.flush()
        return self._hash.hexdigest()

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self._pool is None:
            self._hash.update(chunk)
            self._write(chunk)
            return
        self.flush()
        if self._write_waits:
            self._pending = (
                self._pool.spawn(self._hash.update, chunk),
                self._pool.spawn(self._write, chunk),
            )
        else:
            self._pending = (self._pool.spawn(self._absorb, chunk),)
        self._pending_buffer = chunk.obj if isinstance(chunk, memoryview) else None

    def flush(self) -> None:
        """Wait for the piece in flight (and raise its error, e.g. a full disk). Both of its
        tasks have ended when this returns, failed or not: its buffer is free."""
        pending, self._pending = self._pending, ()
        self._pending_buffer = None
        _wait_all(pending)

    def release(self, buffer: bytearray) -> None:
        """Wait for the piece in flight if it is a view of `buffer`, which the caller is about
        to fill again (a piece whose buffer is unknown is waited for too)."""
        owner = self._pending_buffer
        if self._pending and (owner is None or owner is buffer):
            self.flush()

    def _wait_written(self) -> None:
        """Wait until the piece in flight is written (and raise a failed write's error); its
        sha256 may still be running (its buffer stays taken until `flush`)."""
        if len(self._pending) == 2:  # (hash, write): wait for the write only
            hashing, writing = self._pending
            self._pending = (hashing,)
            try:
                _wait_all((writing,))
            except BaseException:
                self.flush()  # nothing left running, then the write's error
                raise
        else:
            self.flush()

    def _absorb(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self._write(chunk)

    def end(self) -> None:
        """Every byte is in: start making them durable where that takes a while (file storage:
        its flushes, in native threads, once the last piece is written, while that piece may
        still be hashing and the request goes on); `keep` waits for them. Idempotent."""
        self.flush()

    @abstractmethod
    def _write(self, chunk: bytes) -> None:
        """Put one piece where the bytes are kept."""

    @abstractmethod
    def reopen(self) -> IO[bytes]:
        """The bytes received so far, readable and seekable (a ZIP's directory is at its end)."""

    @abstractmethod
    def keep(self, db: Session, att: Attachment) -> None:
        """Make the bytes durable under `att` in this transaction (commit follows)."""

    @abstractmethod
    def discard(self) -> None:
        """Forget the bytes (refused, aborted, or the row's commit failed); never raises."""


class _DatabaseUpload(Upload):
    _write_waits = False  # a bytearray append: CPU under the GIL

    def __init__(self, attachment_id: str) -> None:
        super().__init__(attachment_id)
        self._buf = bytearray()

    def _write(self, chunk: bytes) -> None:
        self._buf += chunk

    def reopen(self) -> IO[bytes]:
        import io

        self.flush()
        return io.BytesIO(self._buf)

    def keep(self, db: Session, att: Attachment) -> None:
        self.flush()
        att.storage_key = f"db:{att.id}"
        # The drivers take the buffer itself (sqlite3 and psycopg accept any bytes-like value).
        db.add(AttachmentBlob(attachment_id=att.id, data=self._buf))
        # On SQLite in the web, these bytes are in the log once committed: have them copied
        # into the database file now, in the background, not by the next request's commit.
        event.listen(db, "after_commit", _checkpoint_soon, once=True)

    def discard(self) -> None:
        try:
            self.flush()
        except Exception:
            pass
        self._buf = bytearray()


def _checkpoint_soon(_session: Session) -> None:
    checkpoint_soon()


# How file storage writes (ATTACHMENT_DIRECT_IO). By default buffered, through the page cache,
# each piece's writeback started as soon as it is written (`start_writeback`): the device writes
# while the next piece arrives, the final `fdatasync` finds about one piece left, and the
# `files` worker reads the upload from memory (then drops its pages, `_read_once`). Measured in
# session 11 on this VM (bench/README.md): lower p50 than direct writes in eight of nine
# alternated pairs (load 3-9), for about 1 ms more web CPU per 5 MB (median; the copy into the
# cache). With ATTACHMENT_DIRECT_IO=1, O_DIRECT: the bytes go from our buffer to the device, not
# through the page cache (session 5 chose it when writing 5 MB into fresh cache pages cost
# 10-15 ms on this VM). Each direct write
# waits for the device, one piece at a time, and the worker then reads the file from the
# device. Direct writes must start, end and sit in memory on block boundaries, so pieces are
# staged in a reused page-aligned buffer; the tail that does not fill a block is written
# buffered at the end. A filesystem that refuses O_DIRECT (at open or at a write) gets buffered
# writes. Either way `fdatasync` is what makes the file durable (the device may hold written
# data in its own volatile cache until it is asked to flush).
_ALIGN = 4096  # covers 512-byte and 4 KiB logical blocks
STAGE_SIZE = 1024 * 1024
_IDLE_STAGES: list[mmap.mmap] = []
MAX_IDLE_STAGES = 8


def _take_stage() -> mmap.mmap:
    try:  # pop() is atomic: safe under threaded workers too
        return _IDLE_STAGES.pop()
    except IndexError:
        return mmap.mmap(-1, STAGE_SIZE)  # page-aligned


def _give_stage(stage: mmap.mmap) -> None:
    if len(_IDLE_STAGES) < MAX_IDLE_STAGES:
        _IDLE_STAGES.append(stage)
    else:
        stage.close()


def _libc_sync_file_range() -> Any:
    """Linux's `sync_file_range` from libc (Python's `os` has no binding), or None elsewhere.

    With SYNC_FILE_RANGE_WRITE it starts writing a range's dirty pages to the device and
    returns without waiting for them: the device works on a piece while the next one is
    received, so the final `fdatasync` (which alone makes the file durable: data, size and the
    device's cache) finds little left to write. ctypes releases the GIL for the call."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        func = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    func.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    func.restype = ctypes.c_int
    return func


_sync_file_range = _libc_sync_file_range()
SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>


def start_writeback(fd: int, offset: int, length: int) -> bool:
    """Ask the kernel to start writing `length` bytes at `offset` of `fd` to the device, without
    waiting; False where that is not available (the final flush then does all of it)."""
    if _sync_file_range is None:
        return False
    return _sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE) == 0


class _FileUpload(Upload):
    def __init__(self, attachment_id: str, directory: Path, fsync: bool, direct: bool) -> None:
        super().__init__(attachment_id)
        directory.mkdir(parents=True, exist_ok=True)
        self._final = directory / attachment_id
        self._part = directory / f".{attachment_id}{PART_SUFFIX}"
        self._fsync = fsync
        # O_EXCL: an id is new, so an existing name is a bug, never something to overwrite.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        o_direct = getattr(os, "O_DIRECT", 0) if direct else 0
        try:
            fd = os.open(self._part, flags | o_direct, 0o640)
        except OSError as exc:
            if not o_direct or exc.errno != errno.EINVAL:
                raise
            # Refused by the filesystem (Linux may have created the name before refusing).
            self._part.unlink(missing_ok=True)
            fd = os.open(self._part, flags, 0o640)
            o_direct = 0
        self._fd: int | None = fd
        self._stage = _take_stage() if o_direct else None
        self._staged = 0  # bytes in the stage not yet written (fewer than a block after a write)
        self._offset = 0  # bytes written to the descriptor so far
        self._writeback = fsync  # start each buffered piece's writeback as it is written
        self._renamed = False  # the name `<dir>/<id>` is given once every byte is written
        self._syncing: tuple[Any, ...] = ()  # the flushes started by `end`

    def _write(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view and self._stage is not None:
            n = min(len(view), STAGE_SIZE - self._staged)
            self._stage[self._staged : self._staged + n] = view[:n]
            self._staged += n
            view = view[n:]
            blocks = self._staged - self._staged % _ALIGN
            if blocks:
                self._write_direct(blocks)
        if view:
            self._write_all(view)

    def _write_direct(self, blocks: int) -> None:
        """Write the stage's first `blocks` bytes (whole blocks) unbuffered and move the rest
        (less than a block) to its front."""
        assert self._stage is not None and self._fd is not None
        stage = memoryview(self._stage)
        done = 0
        try:
            while done < blocks:
                written = os.write(self._fd, stage[done:blocks])
                done += written
                self._offset += written
                if not written or written % _ALIGN:  # short and unaligned: the rest goes buffered
                    break
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
        finally:
            stage.release()
        rest = self._staged - done
        self._stage[:rest] = self._stage[done : self._staged]
        self._staged = rest
        if done < blocks:  # refused (EINVAL) or cut short: buffered from here on
            self._stop_direct()

    def _stop_direct(self) -> None:
        """Write what is staged buffered and write buffered from now on (the tail of a file
        that does not fill a block, or a filesystem that refused a direct write)."""
        if self._stage is None:
            return
        assert self._fd is not None
        stage, self._stage = self._stage, None
        flags = fcntl.fcntl(self._fd, fcntl.F_GETFL)
        fcntl.fcntl(self._fd, fcntl.F_SETFL, flags & ~getattr(os, "O_DIRECT", 0))
        try:
            with memoryview(stage) as view:
                self._write_all(view[: self._staged])
        finally:
            self._staged = 0
            _give_stage(stage)

    def _write_all(self, view: memoryview) -> None:
        assert self._fd is not None
        start, length = self._offset, len(view)
        while view:  # a write may take less than it was given
            view = view[os.write(self._fd, view) :]
        self._offset += length
        if self._writeback and self._stage is None and length:
            self._writeback = start_writeback(self._fd, start, length)

    def reopen(self) -> IO[bytes]:
        self.flush()
        self._stop_direct()  # the staged tail is part of the file the caller reads
        return open(self._final if self._renamed else self._part, "rb")  # noqa: SIM115

    def end(self) -> None:
        """Every byte is written: give the file its name and, with ATTACHMENT_FSYNC, start
        both flushes at once in native threads (the file's data and size, and the directory
        entry), while the request checks the session and quota; `keep` waits for both.

        Renaming before the data is flushed is safe for the promise because no row names
        the file until both flushes have returned: a power cut before the commit can leave a
        file without a row (complete or not), never a row without its bytes, and a file no
        row names is an orphan either way (removed by `sweep_orphans` beside a SQLite
        database, as one left between rename and commit always was). Issued together, the
        two flushes share the filesystem's journal commit instead of paying for one each.
        They wait only for the last piece's write, not for its sha256: the hash is needed by
        the row, the flushes by the promise, and neither needs the other."""
        self._wait_written()
        self._stop_direct()
        if not self._renamed:
            os.rename(self._part, self._final)
            self._renamed = True
        if self._fsync and self._pool is not None and not self._syncing:
            assert self._fd is not None
            self._syncing = (
                self._pool.spawn(os.fdatasync, self._fd),
                self._pool.spawn(_fsync_directory, self._final.parent),
            )

    def _synced(self) -> None:
        """Wait for the flushes started by `end` (and raise the first error)."""
        syncing, self._syncing = self._syncing, ()
        _wait_all(syncing)

    def keep(self, db: Session, att: Attachment) -> None:
        assert self._fd is not None
        try:
            self.end()
            if self._fsync:  # the data (direct or buffered), its size, and its name
                if self._syncing:
                    self._synced()
                else:  # no native threads (a worker, a script): one after the other
                    os.fdatasync(self._fd)
                    _fsync_directory(self._final.parent)
        finally:
            self._close()
        att.storage_key = f"file:{self._final.name}"

    def _close(self) -> None:
        if self._stage is not None:
            _give_stage(self._stage)
            self._stage = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def discard(self) -> None:
        try:
            self.flush()
        except Exception:  # the write that failed is why we are discarding
            pass
        try:
            self._synced()  # the descriptor is closed only once no thread uses it
        except Exception:
            pass
        self._close()
        for path in (self._final if self._renamed else None, self._part):
            if path is not None:
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    log.warning("could not remove an upload's file", extra={"error": str(exc)})


def _wait_all(tasks: tuple[Any, ...]) -> None:
    """Wait for every task (none is left running, so buffers and descriptors are free), then
    raise the first error any of them met."""
    error: BaseException | None = None
    for task in tasks:
        try:
            task.get()
        except BaseException as exc:
            error = error or exc
    if error is not None:
        raise error


def _fsync_directory(directory: Path) -> None:
    """Make the directory's entries (a rename into it) survive a power cut."""
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def begin(attachment_id: str, settings: Settings | None = None) -> Upload:
    """A new upload into the configured store (the web passes its app's settings)."""
    settings = settings or get_settings()
    directory = _directory(settings)
    if directory is None:
        return _DatabaseUpload(attachment_id)
    return _FileUpload(
        attachment_id, directory, settings.attachment_fsync, settings.attachment_direct_io
    )


def store_bytes(
    db: Session, att: Attachment, data: bytes, settings: Settings | None = None
) -> None:
    """Keep bytes that are already in memory (a message's multipart files) under `att`."""
    upload = begin(att.id, settings)
    try:
        upload.write(data)
        upload.keep(db, att)
    except BaseException:
        upload.discard()
        raise


def _file_path(key: str) -> Path:
    settings = get_settings()
    directory = _directory(settings) or sqlite_attachments_dir(settings.database_url)
    if directory is None:
        raise StoredFileMissing(f"{key} is in file storage, but ATTACHMENT_STORAGE is db")
    name = key[len("file:") :]
    if not name or "/" in name or name.startswith("."):
        raise StoredFileMissing(f"malformed storage key {key!r}")
    return directory / name


def _read_once(path: Path) -> bytes:
    """A stored file's bytes, its pages then dropped from the page cache.

    The web writes uploads through the cache (buffered), so the `files` worker reads them from
    memory rather than the device; it reads each one once. Dropping the pages afterwards hands
    them back for the next upload's writes instead of growing the cache with pages the machine
    has never touched, which cost a first touch each on the benchmark VM."""
    with open(path, "rb") as f:
        data = f.read()
        try:
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        except (AttributeError, OSError):  # not on every platform; only a hint
            pass
    return data


def load(db: Session, att: Attachment) -> bytes:
    """The attachment's bytes (the worker parses them)."""
    key = att.storage_key or ""
    if key.startswith("file:"):
        path = _file_path(key)
        try:
            return _read_once(path)
        except FileNotFoundError:
            raise StoredFileMissing(f"the stored file of {att.filename} is missing") from None
    blob = db.get(AttachmentBlob, att.id)
    if blob is None:
        raise StoredFileMissing(f"the stored bytes of {att.filename} are missing")
    return bytes(blob.data)


def remove(keys: list[str]) -> None:
    """Delete stored files after the rows naming them are gone (database rows go with theirs)."""
    for key in keys:
        if not key.startswith("file:"):
            continue
        try:
            _file_path(key).unlink()
        except FileNotFoundError:
            pass
        except (OSError, StoredFileMissing) as exc:
            log.warning("could not remove a stored file", extra={"key": key, "error": str(exc)})


def sweep_parts(now: float | None = None) -> int:
    """Remove `.part` files left by processes that died mid-upload; returns how many."""
    directory = _directory()
    if directory is None or not directory.is_dir():
        return 0
    cutoff = (now or time.time()) - STALE_PART_SECONDS
    removed = 0
    for path in directory.glob(f".*{PART_SUFFIX}"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            pass
    return removed


def sweep_orphans(db: Session, now: float | None = None, batch: int = 500) -> int:
    """Remove files that no row names from the directory beside a SQLite database, once older
    than STALE_PART_SECONDS; returns how many.

    Such a file is left by a process that died between an upload's rename and its row's commit,
    or between a session's delete and the removal of its files. A blob in the database never
    outlives its row (one transaction), so this sweep is what makes the SQLite default lose
    nothing to database storage. Only that directory is swept: it belongs to its database file
    alone (its name says which), whereas a directory named by ATTACHMENT_STORAGE may be shared
    with another deployment, whose rows this database does not hold."""
    directory = sqlite_attachments_dir(get_settings().database_url)
    if directory is None or not directory.is_dir():
        return 0
    cutoff = (now or time.time()) - STALE_PART_SECONDS
    old: list[Path] = []
    for path in directory.iterdir():
        if path.name.startswith("."):
            continue  # a `.part`: sweep_parts' business
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                old.append(path)
        except FileNotFoundError:
            pass
    removed = 0
    for start in range(0, len(old), batch):
        paths = old[start : start + batch]
        # A file is named by its attachment's id (`_FileUpload`): look the ids up by key.
        named = set(
            db.scalars(select(Attachment.id).where(Attachment.id.in_([p.name for p in paths])))
        )
        for path in paths:
            if path.name in named:
                continue
            try:
                path.unlink()
                removed += 1
            except FileNotFoundError:
                pass
    return removed
