"""Where segments and playlists live: a tiny interface with a memory and a disk implementation.

Names are relative paths of the form ``<app>/<key>/<file>``; only the segmenter writes, readers (the
HTTP side) only read. A writer replaces a playlist in one step, so a reader always sees a complete
segment and a consistent playlist.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import itertools
import logging
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

# What is stored: bytes, or the chunks that make an object up in order (a segment as its parts,
# a TS segment as the muxer's writes). Chunks are written one after the other (DiskStore) or
# joined once something reads them (MemoryStore): the media is not copied just to be stored,
# and a segment nobody fetches (LL-HLS players fetch parts) is never joined at all.
Data = bytes | tuple[bytes, ...]


def size_of(data: Data) -> int:
    return len(data) if isinstance(data, bytes) else sum(len(chunk) for chunk in data)


def joined(data: Data) -> bytes:
    return data if isinstance(data, bytes) else b"".join(data)


def _frozen(data: Data) -> Data:
    return data if isinstance(data, tuple) else bytes(data)


class Store(Protocol):
    """Storage for HLS objects; every method is synchronous and must not block for long."""

    def put(self, name: str, data: Data, *, fresh: bool = False) -> None:
        """Store ``data`` under ``name`` atomically (readers see the old or the new bytes).

        ``fresh``: nothing refers to ``name`` yet (a new segment, put before the playlist that
        lists it), so it may be written in place: a reader guessing the name could see it
        partly written, one following the playlists cannot."""

    def get(self, name: str) -> bytes | None:
        """Return the bytes stored under ``name``, or None."""

    def delete(self, name: str) -> None:
        """Remove ``name``; removing a missing name is not an error."""

    def names(self, prefix: str = "") -> list[str]:
        """Names currently stored that start with ``prefix``."""


class StoreFull(OSError):
    """A put would take a store past its byte cap (nothing was stored)."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.ENOSPC, message)


@dataclass(frozen=True)
class StoreFailure:
    """Why the store is failing: the first failure's cause and when (Unix time) it began."""

    reason: str
    since: float
    failures: int


class StoreHealth:
    """Whether the store's writes succeed now, for /healthz and /metrics.

    Failing from the first failed write until a later write of a new object (a segment: the
    stores call ``succeeded`` for ``fresh`` puts only) succeeds, as a small playlist rewrite may
    succeed while every segment fails (a nearly full disk or memory cap); one log line at each
    change of state, not one per failure (a full disk fails every segment of every stream).
    Thread-safe: the disk writer thread records, the event loop reads."""

    def __init__(self, log: logging.Logger | None = None) -> None:
        self._log = log or logging.getLogger(__name__)
        self._lock = threading.Lock()
        self._failure: StoreFailure | None = None

    def failed(self, reason: str) -> None:
        with self._lock:
            old = self._failure
            if old is None:
                self._failure = StoreFailure(reason, time.time(), 1)
            else:  # the first cause stays: it is the one that started the outage
                self._failure = StoreFailure(old.reason, old.since, old.failures + 1)
        if old is None:
            self._log.error(
                "%s (failing until a write succeeds)",
                reason,
                extra={"event": "store_failed", "cause": reason},
            )

    def succeeded(self) -> None:
        if self._failure is None:  # the common case, without the lock
            return
        with self._lock:
            old, self._failure = self._failure, None
        if old is not None:
            duration = time.time() - old.since
            self._log.info(
                "store: ok again after %d failed operations in %.0f s (first: %s)",
                old.failures,
                duration,
                old.reason,
                extra={
                    "event": "store_recovered",
                    "cause": old.reason,
                    "duration": round(duration, 3),
                    "failures": old.failures,
                },
            )

    @property
    def failure(self) -> StoreFailure | None:
        """None while healthy."""
        return self._failure


class MemoryStore:
    """The embedded default: a dict of immutable bytes, at most ``max_bytes`` of them (0 = no
    cap): memory is the process's own, and a gateway that grows without bound is killed with
    every stream on it, so past the cap a put is refused (StoreFull) and only it is lost."""

    def __init__(self, max_bytes: int = 0, *, health: StoreHealth | None = None) -> None:
        self._objects: dict[str, Data] = {}
        self.max_bytes = max_bytes
        self._bytes = 0
        self.health = health  # None: failures are only raised

    def put(self, name: str, data: Data, *, fresh: bool = False) -> None:
        old = self._objects.get(name)
        size = size_of(data)
        total = self._bytes + size - (size_of(old) if old is not None else 0)
        if self.max_bytes and total > self.max_bytes:
            message = (
                f"memory store full: {name} ({size} bytes) would pass hls_memory_max_bytes "
                f"({self.max_bytes})"
            )
            if self.health is not None:
                self.health.failed(f"store: {message}")
            raise StoreFull(message)
        self._objects[name] = _frozen(data)
        self._bytes = total
        if fresh and self.health is not None:
            self.health.succeeded()

    def get(self, name: str) -> bytes | None:
        data = self._objects.get(name)
        if isinstance(data, tuple):  # joined on the first read, once
            data = self._objects[name] = b"".join(data)
        return data

    def delete(self, name: str) -> None:
        old = self._objects.pop(name, None)
        if old is not None:
            self._bytes -= size_of(old)

    def names(self, prefix: str = "") -> list[str]:
        return [n for n in self._objects if n.startswith(prefix)]

    @property
    def total_bytes(self) -> int:
        return self._bytes


# A name is '/'-separated components of these characters only: nothing a shell, URL or
# filesystem treats specially, so a valid name can never reach outside the store's root.
_NAME_COMPONENT = re.compile(r"[A-Za-z0-9._-]+")
# Temp files carry '~', which no valid name contains, so they can never collide with or be
# listed as stored objects, and leftovers from a crash are recognisable.
_TEMP_MARK = ".tmp~"
_TEMP_NAME = re.compile(r".*\.tmp~[0-9a-f]{16}")
# Chunks per writev(2) call (POSIX guarantees at least 16; Linux allows 1024).
_IOV_MAX = max(16, min(1024, os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 16))
# Longest accepted name (a safe bound well below PATH_MAX on every platform we run on).
MAX_NAME_LENGTH = 1024
# Longest component: NAME_MAX is 255 bytes and the temp file adds 21 characters to it.
MAX_COMPONENT_LENGTH = 200


def validate_name(name: str) -> str:
    """Return ``name`` if it is a safe relative store name, else raise ValueError."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"invalid store name {name!r}")
    for part in name.split("/"):
        bad = part in (".", "..") or len(part) > MAX_COMPONENT_LENGTH
        if bad or not _NAME_COMPONENT.fullmatch(part):
            raise ValueError(f"invalid store name {name!r}")
    return name


class DiskStore:
    """Objects as files under ``root``; ``put`` is write-to-temp then ``os.replace`` (atomic).

    A reader opening a name sees either the previous complete file or the new complete file,
    never a partial one. ``fsync=True`` also makes a put durable across power loss (slower).
    """

    def __init__(
        self, root: Path, *, fsync: bool = False, health: StoreHealth | None = None
    ) -> None:
        # None: failures are only raised (a WriteBehindStore around this one records its own).
        self.health = health
        if root.exists() and not root.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "store path is not a directory", str(root))
        root.mkdir(parents=True, exist_ok=True)
        self._root = root.resolve()
        self._fsync = fsync
        # Directories this store made or checked (plain, inside root): a put into one skips the
        # mkdir and stat calls, ~10 syscalls of a segment's put. One that disappears (removed by
        # hand) is checked and made again; one swapped for a symlink later is not noticed.
        self._dirs: set[Path] = set()
        # Temp names: a random per-store prefix and a counter, unique without a getrandom call
        # per put, also between processes sharing the directory.
        self._temp_prefix = secrets.token_hex(4)
        self._temp_count = itertools.count()
        self._remove_leftover_temps()

    @property
    def root(self) -> Path:
        return self._root

    def _path(self, name: str) -> Path:
        return self._root.joinpath(*validate_name(name).split("/"))

    def _inside_root(self, directory: Path) -> bool:
        # A symlinked directory planted under root must not lead us outside it.
        return directory.resolve().is_relative_to(self._root)

    def _make_parents(self, path: Path) -> None:
        # One level at a time, refusing symlinks, so mkdir never creates anything outside root.
        current = self._root
        for part in path.relative_to(self._root).parts[:-1]:
            current = current / part
            with contextlib.suppress(FileExistsError):
                os.mkdir(current)
            if current.is_symlink() or not current.is_dir():
                raise ValueError(f"store path {current} is not a plain directory")

    def put(self, name: str, data: Data, *, fresh: bool = False) -> None:
        try:
            self._put(name, data, fresh)
        except (OSError, ValueError) as exc:
            if self.health is not None:
                self.health.failed(f"store: cannot write {name}: {exc}")
            raise
        if fresh and self.health is not None:
            self.health.succeeded()

    def _put(self, name: str, data: Data, fresh: bool) -> None:
        path = self._path(name)
        if path.parent not in self._dirs:
            self._make_parents(path)
            self._dirs.add(path.parent)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        if fresh and self._put_in_place(path, data, flags):
            return
        temp = f"{path}{_TEMP_MARK}{self._temp_prefix}{next(self._temp_count) & 0xFFFFFFFF:08x}"
        try:
            fd = os.open(temp, flags, 0o644)
        except FileNotFoundError:  # the directory went away since we made it
            self._dirs.discard(path.parent)
            self._make_parents(path)
            self._dirs.add(path.parent)
            fd = os.open(temp, flags, 0o644)
        try:
            self._write_and_close(fd, data)
            # rename(2) replaces the directory entry in one step (and never follows a symlink
            # at the destination), so readers see old or new bytes.
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise

    def _put_in_place(self, path: Path, data: Data, flags: int) -> bool:
        """Write a new file under its own name: a temp file and rename(2) per segment cost
        ~30 % of a busy gateway's CPU (py-spy, 30 streams in both formats). False when the
        name exists already (then it is replaced atomically, as usual)."""
        try:
            fd = os.open(path, flags, 0o644)
        except (FileExistsError, FileNotFoundError):
            return False
        try:
            self._write_and_close(fd, data)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(path)  # never leave a partial file under the real name
            raise
        return True

    def _write_and_close(self, fd: int, data: Data) -> None:
        """Write every chunk of ``data`` (fsync'd when asked for), then close ``fd``."""
        try:
            # writev(2): a CMAF segment is a few hundred chunks (parts are a moof and the
            # samples' own bytes), one system call per IOV_MAX of them.
            chunks: list[bytes | memoryview] = [data] if isinstance(data, bytes) else list(data)
            chunks = [chunk for chunk in chunks if chunk]
            done = 0
            while done < len(chunks):
                written = os.writev(fd, chunks[done : done + _IOV_MAX])
                while written:  # skip what was written; a chunk written in part is cut
                    size = len(chunks[done])
                    if written < size:
                        chunks[done] = memoryview(chunks[done])[written:]
                        break
                    written -= size
                    done += 1
            if self._fsync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def get(self, name: str) -> bytes | None:
        path = self._path(name)
        try:
            if not self._inside_root(path.parent):
                return None
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # the name is a symlink: not one of ours
                return None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        with os.fdopen(fd, "rb") as f:
            return f.read()

    def delete(self, name: str) -> None:
        path = self._path(name)
        if not self._inside_root(path.parent):
            return
        try:
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            pass
        except OSError as exc:
            if self.health is not None:
                self.health.failed(f"store: cannot delete {name}: {exc}")
            raise

    def names(self, prefix: str = "") -> list[str]:
        return sorted(n for n, _ in self._walk() if n.startswith(prefix))

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self._walk())

    def _walk(self) -> Iterator[tuple[str, int]]:
        """(name, size) of every stored regular file; temps and symlinks are skipped."""
        stack = [(self._root, "")]
        while stack:
            directory, rel = stack.pop()
            try:
                entries = list(os.scandir(directory))
            except (FileNotFoundError, NotADirectoryError):
                continue  # removed while we walked
            for entry in entries:
                name = f"{rel}{entry.name}"
                if entry.is_dir(follow_symlinks=False):
                    stack.append((Path(entry.path), f"{name}/"))
                elif entry.is_file(follow_symlinks=False) and _is_valid_name(name):
                    with contextlib.suppress(FileNotFoundError):
                        yield name, entry.stat(follow_symlinks=False).st_size

    def _remove_leftover_temps(self) -> None:
        """Delete temp files a crashed writer left behind (ours by their ``.tmp~`` mark)."""
        for dirpath, _dirnames, filenames in os.walk(self._root):
            for filename in filenames:
                if _TEMP_NAME.fullmatch(filename):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(dirpath, filename))


def _is_valid_name(name: str) -> bool:
    try:
        validate_name(name)
    except ValueError:
        return False
    return True


class WriteBehindStore:
    """An inner store whose puts and deletes one thread carries out, in the order they were made.

    A disk put of a segment holds its caller for milliseconds (~1.5 ms for 650 kB here). The
    segmenter runs in the event loop that also reads every publisher, so with many streams cutting
    on the same keyframe those milliseconds add up to late segments. Here a put only queues the
    bytes. Order is kept, so a segment reaches the disk before the playlist naming it, and an
    outside reader (nginx serving ``hls_dir``) never sees a playlist ahead of its segments. Readers
    in this process see pending writes at once (``get``/``names`` look at the queue first), as if
    the write were synchronous.

    ``put`` never blocks: it is called in the event loop, which also answers HTTP and runs every
    other stream. Once ``max_pending_bytes`` or more wait, the store is ``congested``: the writers
    (publishers' readers, gateway.backpressure) stop reading their sockets until
    :meth:`when_writable` calls back, so a disk slower than the streams slows the publishers over
    TCP instead of growing memory or freezing the loop. What a paused publisher had read already
    is still segmented, so the queue may pass the bound by about one segment per publisher.
    A failed write is recorded in ``health`` (logged there when the store starts failing, and
    at debug level each time, with its name and cause); later writes go on. ``on_write`` (if
    set) is called in the writer thread after each operation with its duration in seconds and
    whether it succeeded (for /metrics).
    """

    def __init__(
        self,
        inner: Store,
        *,
        max_pending_bytes: int,
        log: logging.Logger | None = None,
        health: StoreHealth | None = None,
    ) -> None:
        self._inner = inner
        self.health = health or StoreHealth(log)
        self._max_pending = max(1, max_pending_bytes)
        self._log = log or logging.getLogger(__name__)
        self._cond = threading.Condition()
        self._queue: collections.deque[tuple[str, Data | None, bool]] = collections.deque()
        # name -> (newest pending data, None for a delete; count of its queued operations)
        self._pending: dict[str, tuple[Data | None, int]] = {}
        self._pending_bytes = 0
        self._closed = False
        self.failures = 0
        self.on_write: Callable[[float, bool], None] | None = None
        self._drained: list[Callable[[], None]] = []  # when_writable callbacks (under _cond)
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    @property
    def inner(self) -> Store:
        return self._inner

    # --- writers (the event loop) --------------------------------------------------------------
    def put(self, name: str, data: Data, *, fresh: bool = False) -> None:
        validate_name(name)  # a bad name fails here, in the caller, not later in the thread
        data = _frozen(data)
        with self._cond:
            if self._closed:
                self._inner.put(name, data, fresh=fresh)
                return
            self._enqueue(name, data, fresh)
            self._pending_bytes += size_of(data)

    def delete(self, name: str) -> None:
        validate_name(name)
        with self._cond:
            if self._closed:
                self._inner.delete(name)
                return
            self._enqueue(name, None)

    def _enqueue(self, name: str, data: Data | None, fresh: bool = False) -> None:
        _, count = self._pending.get(name, (None, 0))
        self._pending[name] = (data, count + 1)
        self._queue.append((name, data, fresh))
        self._cond.notify_all()

    # --- readers (any thread) ------------------------------------------------------------------
    def get(self, name: str) -> bytes | None:
        with self._cond:
            entry = self._pending.get(name)
        if entry is None:
            return self._inner.get(name)
        return None if entry[0] is None else joined(entry[0])

    def names(self, prefix: str = "") -> list[str]:
        with self._cond:
            pending = {n: v for n, (v, _) in self._pending.items() if n.startswith(prefix)}
        names = set(self._inner.names(prefix))
        names |= {n for n, v in pending.items() if v is not None}
        names -= {n for n, v in pending.items() if v is None}
        return sorted(names)

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    @property
    def pending_items(self) -> int:
        """Puts and deletes queued (the one being carried out included)."""
        return len(self._queue)

    @property
    def max_pending_bytes(self) -> int:
        return self._max_pending

    @property
    def congested(self) -> bool:
        """At least ``max_pending_bytes`` wait for the disk: writers should pause."""
        return self._pending_bytes >= self._max_pending and not self._closed

    def when_writable(self, callback: Callable[[], None]) -> bool:
        """Have the writer thread call ``callback`` once the queue is below its bound; False
        (and no call) when it is already. The caller's event loop stays free: it only learns
        when to go on (gateway.backpressure wakes trio from the callback)."""
        with self._cond:
            if not self.congested:
                return False
            self._drained.append(callback)
            return True

    def _wake_writers(self) -> None:
        """Holding _cond: run the ``when_writable`` callbacks once below the bound."""
        if self._drained and not self.congested:
            callbacks, self._drained = self._drained, []
            for callback in callbacks:
                with contextlib.suppress(Exception):  # a waiter's failure stops no writes
                    callback()

    # --- the writer thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return  # closed and drained
                name, data, fresh = self._queue[0]
            started = time.perf_counter()
            ok = False
            try:
                if data is None:
                    self._inner.delete(name)
                else:
                    self._inner.put(name, data, fresh=fresh)
                    if fresh:
                        self.health.succeeded()
                ok = True
            except Exception as exc:  # one failed write (disk full, permissions) stops no other
                self.failures += 1
                reason = f"store: cannot {'delete' if data is None else 'write'} {name}: {exc}"
                self._log.debug("%s", reason)
                self.health.failed(reason)
            if self.on_write is not None:
                with contextlib.suppress(Exception):  # metrics never stop the writer
                    self.on_write(time.perf_counter() - started, ok)
            with self._cond:
                self._queue.popleft()
                value, count = self._pending[name]
                if count == 1:
                    del self._pending[name]
                else:
                    self._pending[name] = (value, count - 1)
                if data is not None:
                    self._pending_bytes -= size_of(data)
                self._wake_writers()
                self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued write is done; False if ``timeout`` passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue, timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Finish the queued writes (up to ``timeout`` seconds) and stop the thread; later puts
        and deletes go straight to the inner store. False if writes were still queued."""
        with self._cond:
            self._closed = True
            self._wake_writers()  # closed: never congested again
            self._cond.notify_all()
        self._thread.join(timeout)
        return not self._thread.is_alive()
