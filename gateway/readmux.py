"""One task that reads every publishing connection, once per tick, instead of one wake-up per
TCP arrival per connection.

A 720p30 publisher's bytes arrive in ~120 pieces a second. Woken per piece, each connection
task paid trio's whole wait path (a one-shot epoll registration, a scheduler round, a task
switch) per piece: more CPU than parsing and segmenting the data. Here the publishing sockets
are registered once in a private, level-triggered epoll set; one task sleeps ``interval``, asks
that set which sockets are readable (one ``epoll_wait(0)``), and calls each one's reader
synchronously. The cost per tick is shared by every publisher, and a reader takes everything
that arrived during the tick in one go. The price is up to ``interval`` of added delay per
message (the setting ``rtmp_read_interval``; 0 turns this off), paid only while data comes
more often than that (see :meth:`ReadMux.run`).

Only the I/O layer uses this; readers are :class:`gateway.server.Session` callbacks that must
not raise (they hand failures to their own task).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import time
from collections.abc import Callable

import trio

# A batch that has run this long yields to other tasks (HTTP, players) before going on.
BATCH_SLICE = 0.005
# Bytes per read. Readers run one at a time, so they share one buffer (and each connection's
# decoder copies what it is given).
READ_SIZE = 64 * 1024


def available() -> bool:
    """epoll is Linux-only; elsewhere every connection waits for its own readiness."""
    return hasattr(select, "epoll")


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def periodic_timerfd(interval: float) -> int | None:
    """A non-blocking Linux timerfd that becomes readable every ``interval`` seconds (None where
    there is none). Waiting on it costs one readiness wait per tick; trio.sleep costs a cancel
    scope expiring, which measured several times more per tick."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        create, settime = libc.timerfd_create, libc.timerfd_settime
    except (OSError, AttributeError):
        return None
    # timerfd_create(2): CLOCK_MONOTONIC = 1; TFD_NONBLOCK/TFD_CLOEXEC equal O_NONBLOCK/O_CLOEXEC.
    fd: int = create(1, os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        return None
    seconds, nanoseconds = divmod(max(1, round(interval * 1e9)), 10**9)
    period = _Timespec(seconds, nanoseconds)
    spec = _Itimerspec(period, _Timespec(seconds, nanoseconds))
    if settime(fd, 0, ctypes.byref(spec), None) != 0:
        os.close(fd)
        return None
    return fd


class ReadMux:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._epoll = select.epoll()
        self._readers: dict[int, Callable[[], None]] = {}
        self._added = trio.Event()
        self.buffer = bytearray(READ_SIZE)
        self.buffers = [self.buffer]  # for os.readv
        self.view = memoryview(self.buffer)

    def add(self, fd: int, reader: Callable[[], None]) -> None:
        """Call ``reader`` on every tick in which ``fd`` is readable, until :meth:`remove`."""
        self._epoll.register(fd, select.EPOLLIN)
        self._readers[fd] = reader
        self._added.set()

    def remove(self, fd: int) -> None:
        if self._readers.pop(fd, None) is not None:
            # Already closed: the kernel dropped it from the set.
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(fd)

    async def run(self) -> None:
        """Until cancelled. Sleeps on an event (no ticks) while no connection is registered.

        Ticks pay off only when data arrives more often than they come. So the task starts by
        waiting for any registered socket to be readable (the private epoll set's own fd), which
        adds no delay; once such wake-ups come less than ``interval`` apart it switches to
        ticking, and a tick that finds nothing to read switches it back.
        """
        perf_counter = time.perf_counter
        timer = periodic_timerfd(self.interval)
        epoll_fd = self._epoll.fileno()
        ticking = False
        last_wake = 0.0
        try:
            while True:
                if not self._readers:
                    self._added = trio.Event()
                    await self._added.wait()
                if not ticking:
                    await trio.lowlevel.wait_readable(epoll_fd)
                elif timer is None:
                    await trio.sleep(self.interval)
                else:
                    await trio.lowlevel.wait_readable(timer)
                    with contextlib.suppress(BlockingIOError):
                        os.read(timer, 8)  # the expiration count: any number is one tick
                started = perf_counter()
                ready = self._epoll.poll(0)
                if ticking and not ready:
                    ticking = False
                elif not ticking and started - last_wake < self.interval:
                    ticking = True
                    if timer is not None:
                        with contextlib.suppress(BlockingIOError):
                            os.read(timer, 8)  # forget expirations from before: tick from now
                last_wake = started
                for fd, _ in ready:
                    reader = self._readers.get(fd)
                    if reader is not None:
                        reader()
                        if perf_counter() - started > BATCH_SLICE:
                            await trio.lowlevel.checkpoint()
                            started = perf_counter()
        finally:
            self._epoll.close()
            if timer is not None:
                os.close(timer)
