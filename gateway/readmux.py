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

Only the I/O layer uses this: :class:`MuxedPublisher` is how a :class:`gateway.server.Session`
hands its socket over while it only publishes. It also holds the read-path tuning both use.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import socket
import time
from collections.abc import Callable, Sized
from typing import Protocol

import trio

from gateway.config import Settings
from gateway.hub import Hub
from gateway.metrics import Metrics
from gateway.rtmp.connection import Connection


class PublishingSession(Protocol):
    """What a :class:`MuxedPublisher` uses of its connection's session (``gateway.server``
    implements it; this module does not import the server, which imports this one)."""

    last_read: float  # trio time of the last read, for the idle timeout

    @property
    def sock(self) -> trio.abc.Stream: ...
    @property
    def settings(self) -> Settings: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def hub(self) -> Hub: ...
    @property
    def published(self) -> Sized: ...
    @property
    def playing(self) -> Sized: ...

    async def flush(self) -> None:
        """Write what the connection has to send."""

    def handle_events(self, conn: Connection) -> None:
        """Act on the events the last bytes produced (publish tags, answer commands)."""


# While publishing, the kernel is asked (SO_RCVLOWAT) to wake the reader only once the rest of the
# message in progress is queued, not for every TCP segment of it. Between messages it stays 1: a
# publisher without TCP_NODELAY (FFmpeg's default) holds a message body back (Nagle) until the
# header is acknowledged, and an unread header below the mark is only acknowledged after the
# delayed-ACK timer (~40 ms), so waiting for "header + body" would delay every small message.
SO_RCVLOWAT: int | None = getattr(socket, "SO_RCVLOWAT", None)
# A smaller rest saves at most one wake-up (it comes in one or two TCP segments) and costs two
# setsockopt calls (set, then back to 1), so the mark is only used for larger rests.
LOWAT_MIN = 8 * 1024
# Fraction of idle_timeout by which the idle deadline may lag the last read (so it is
# re-registered at most a few times per timeout, not per read).
DEADLINE_SLACK = 0.05
# Bytes read before the shared bytes-received counter is updated.
METRIC_BATCH = 256 * 1024
# Reads of one publisher per tick of the shared reader (each up to the mux's 64 KiB buffer):
# a keyframe is taken whole, a flood cannot hold the tick.
READS_PER_TICK = 8
# A batch that has run this long yields to other tasks (HTTP, players) before going on.
BATCH_SLICE = 0.005
# Bytes per read. Readers run one at a time, so they share one buffer (and each connection's
# decoder copies what it is given).
READ_SIZE = 64 * 1024


# Seconds a muxed publisher may go without a read while its mark is above 1 before the mark
# drops to 1: a last message smaller than rtmp_publish_lowat, with nothing after it, is then
# read within about this long instead of waiting for more bytes.
LOWAT_RESCUE = 1.0


def lowat_for(conn: Connection, between: int = 1) -> int:
    """The SO_RCVLOWAT a publisher's socket should have now: the rest of the message in
    progress when that is large enough to be worth it, else ``between`` (the setting
    rtmp_publish_lowat for muxed publishers), never past the byte our Acknowledgement is due at."""
    rest = conn.wanted_bytes()
    if rest >= LOWAT_MIN:
        return min(rest, READ_SIZE)
    return min(conn.wanted_bytes(between), READ_SIZE) if between > 1 else 1


def set_lowat(sock: trio.socket.SocketType, value: int) -> bool:
    """Set SO_RCVLOWAT; False (stop trying) where the platform refuses it."""
    if SO_RCVLOWAT is None:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVLOWAT, value)
    except OSError:
        return False
    return True


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


# The reader ticks while readiness wake-ups come more than TICK_ENTER times per interval, and goes
# back to waking on readiness once ticks find fewer than TICK_LEAVE readable sockets on average:
# then a tick costs as much as the wake-ups it replaces (one 720p30 publisher: ~120 arrivals a
# second, mostly one per frame, against 200 ticks a second at 5 ms). Averages are exponential
# with weight TICK_WEIGHT per wake, so the parts of one frame arriving together do not flip it.
TICK_ENTER = 2.0
TICK_LEAVE = 1.0
TICK_WEIGHT = 0.1


class TickPolicy:
    """Whether the shared reader should tick, from what its recent wake-ups found (pure)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.ticking = False
        self._gap = interval  # average time between readiness wake-ups
        self._ready = TICK_ENTER  # average readable sockets per tick
        self._last: float | None = None

    def woke(self, now: float, ready: int) -> bool:
        """Record a wake-up at ``now`` that found ``ready`` readable sockets; True to tick next."""
        if self.ticking:
            self._ready += (ready - self._ready) * TICK_WEIGHT
            if self._ready < TICK_LEAVE:
                self.ticking, self._gap, self._last = False, self.interval, now
        else:
            if self._last is not None:
                self._gap += (now - self._last - self._gap) * TICK_WEIGHT
            self._last = now
            if self._gap * TICK_ENTER < self.interval:
                self.ticking, self._ready = True, TICK_ENTER
        return self.ticking


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
        adds no delay, and ticks only while :class:`TickPolicy` finds that cheaper.
        """
        perf_counter = time.perf_counter
        timer = periodic_timerfd(self.interval)
        epoll_fd = self._epoll.fileno()
        policy = TickPolicy(self.interval)
        try:
            while True:
                if not self._readers:
                    self._added = trio.Event()
                    await self._added.wait()
                if not policy.ticking:
                    await trio.lowlevel.wait_readable(epoll_fd)
                elif timer is None:
                    await trio.sleep(self.interval)
                else:
                    await trio.lowlevel.wait_readable(timer)
                    with contextlib.suppress(BlockingIOError):
                        os.read(timer, 8)  # the expiration count: any number is one tick
                started = perf_counter()
                ready = self._epoll.poll(0)
                was_ticking = policy.ticking
                if policy.woke(started, len(ready)) and not was_ticking and timer is not None:
                    with contextlib.suppress(BlockingIOError):
                        os.read(timer, 8)  # forget expirations from before: tick from now
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


class MuxedPublisher:
    """A publishing connection read by the shared :class:`ReadMux` task.

    The mux calls :meth:`on_readable` (synchronously, in its task) when the socket has data;
    it reads, parses and publishes like the connection's own loop would, and sets
    ``attention`` for what only the connection's task can do: write (acks, answers), end on
    EOF or a failure, or go back to its own loop when it stops being a pure publisher. The
    connection's task sleeps on ``attention`` and checks the idle timeout now and then.
    """

    def __init__(
        self, session: PublishingSession, conn: Connection, mux: ReadMux, lowat: int
    ) -> None:
        assert isinstance(session.sock, trio.SocketStream)
        self.session, self.conn, self.mux = session, conn, mux
        self.sock = session.sock.socket
        self.fd = self.sock.fileno()
        self.attention = trio.Event()
        self.failure: Exception | None = None
        self.eof = False
        session.last_read = trio.current_time()
        self.lowat = lowat
        self.between = session.settings.rtmp_publish_lowat
        self.counted = 0

    async def run(self) -> str | None:
        """A cause to end the connection, or None once it is no longer only publishing."""
        session, conn = self.session, self.conn
        idle_timeout = session.settings.idle_timeout
        period = min(idle_timeout * DEADLINE_SLACK, LOWAT_RESCUE)
        self.mux.add(self.fd, self.on_readable)
        try:
            while True:
                with trio.move_on_after(period):
                    await self.attention.wait()
                self.attention = trio.Event()  # before any await: a later signal is not lost
                if self.failure is not None:
                    raise self.failure
                if conn.has_data_to_send:
                    await session.flush()
                if self.eof:
                    return "closed by peer"
                if not session.published or session.playing:
                    return None
                gate = session.hub.write_gate
                if gate is not None and gate.closed:
                    return None  # the session's own loop pauses, out of the shared reader
                quiet = trio.current_time() - session.last_read
                if quiet > idle_timeout:
                    session.metrics.protocol_errors.labels("idle-timeout").inc()
                    return "idle timeout"
                if quiet > LOWAT_RESCUE and self.lowat > 1:
                    self.lowat = 1  # whatever is queued wakes the reader now
                    set_lowat(self.sock, 1)
        finally:
            self.mux.remove(self.fd)
            session.metrics.bytes_in.inc(self.counted)
            if self.lowat != 1 and self.failure is None and not self.eof:
                set_lowat(self.sock, 1)

    def on_readable(self) -> None:
        """Called by the mux; never raises (failures are handed to the connection's task)."""
        if self.failure is not None or self.eof:
            return
        conn, session, mux = self.conn, self.session, self.mux
        gate = session.hub.write_gate
        if gate is not None and gate.closed:  # paused: the session's task takes the socket back
            self.attention.set()
            return
        try:
            for _ in range(READS_PER_TICK):
                try:
                    n = os.readv(self.fd, mux.buffers)
                except BlockingIOError:
                    break
                self.counted += n
                conn.receive_data(mux.view[:n])
                session.handle_events(conn)
                if n == 0:
                    self.eof = True
                    break
                if n < len(mux.buffer):
                    break  # drained
            session.last_read = trio.current_time()
            if self.counted >= METRIC_BATCH:
                session.metrics.bytes_in.inc(self.counted)
                self.counted = 0
            # Mid-message, the epoll set reports the socket again only once the rest is there;
            # between messages, once more than a lone chunk header is there.
            want = lowat_for(conn, self.between)
            if want != self.lowat and not self.eof:
                self.lowat = want
                set_lowat(self.sock, want)
        except Exception as exc:  # a protocol error or a broken socket ends this connection only
            self.failure = exc
        done = self.failure is not None or self.eof
        paused = gate is not None and gate.closed
        if done or paused or conn.has_data_to_send or not session.published or session.playing:
            self.attention.set()
