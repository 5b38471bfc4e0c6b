"""A worker process's side of a multi-worker gateway (``workers`` > 1, see gateway.supervisor).

The link (``Cluster``) carries three things besides the supervisor's own messages:

- Ownership: a stream belongs to the worker its publisher reached. Every worker keeps the
  supervisor's table of owners, so a second publisher of a live name is refused on any worker
  at once; the supervisor settles the rare race of two claims (the later one is evicted).
- Copies of every stream's HLS: the owner sends each store write (memory store; a disk
  ``hls_dir`` is shared) and, after every LL-HLS part, the stream's low-latency playlists and
  new parts. Every worker can then answer every playlist, part and segment itself, and a
  blocking playlist reload on any worker is woken by the copy's arrival, never by polling.
- RTMP players on a worker that does not own the stream: that worker subscribes to the owner,
  which sends the stream's hub items (headers and GOP cache first, then every tag) as they are
  published; they are published into the local hub, where players attach as usual (nginx-rtmp's
  auto_push, pulled instead of pushed).
"""

from __future__ import annotations

import array
import contextlib
import itertools
import logging
import math
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio

from gateway import bus
from segmenter.playlist import LivePlaylist
from segmenter.store import Data, Store, joined

log = logging.getLogger("gateway.cluster")

# Bytes read from the link at once.
READ_SIZE = 1 << 16
# RTMP connections handed over by the supervisor that may wait for the worker to take them.
INCOMING_QUEUE = 64
# Seconds a new worker waits for the supervisor's first message.
START_WAIT = 30.0
# Longest protocol name in a handed-over connection's message ("rtmps").
_CONN_NAME_MAX = 16

Handler = Callable[[int, Any], None]


class Outbox:
    """Frames waiting for a link, bounded in bytes (a frame may be a whole segment)."""

    def __init__(self, limit: int) -> None:
        self._send, self._recv = trio.open_memory_channel[bytes](math.inf)
        self.limit = limit
        self.queued = 0  # bytes
        self._room = trio.Event()

    def put(self, data: bytes) -> bool:
        """Queue ``data`` unless that passes the limit (one frame always fits an empty box)."""
        if self.queued and self.queued + len(data) > self.limit:
            return False
        self.queued += len(data)
        self._send.send_nowait(data)
        return True

    async def put_waiting(self, data: bytes) -> None:
        """Queue ``data`` once there is room (for bulk copies, which must not be dropped)."""
        while not self.put(data):
            if self._room.is_set():
                self._room = trio.Event()
            await self._room.wait()

    async def drain(self, write: Callable[[bytes], Awaitable[None]]) -> None:
        """Write every frame queued, in order, until cancelled or ``write`` fails."""
        async for data in self._recv:
            await write(data)
            self.queued -= len(data)
            if self.queued <= self.limit // 2:
                self._room.set()

    def clear(self) -> None:
        """Forget what is queued (it was for a process that died)."""
        while True:
            try:
                self._recv.receive_nowait()
            except trio.WouldBlock:
                break
        self.queued = 0
        self._room.set()


async def send_all(sock: trio.socket.SocketType, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[await sock.send(view) :]


@dataclass
class _Ask:
    expected: int
    answers: list[Any] = field(default_factory=list)
    done: trio.Event = field(default_factory=trio.Event)


class Cluster:
    """The link to the supervisor: messages both ways, RTMP connections in, owners known."""

    def __init__(
        self,
        bus_sock: socket.socket,
        conn_sock: socket.socket,
        *,
        link_bytes: int = 64 << 20,
        request_timeout: float = 2.0,
    ) -> None:
        bus_sock.setblocking(False)
        conn_sock.setblocking(False)
        self._bus = trio.socket.from_stdlib_socket(bus_sock)
        self._conns = trio.socket.from_stdlib_socket(conn_sock)
        self._deframer = bus.Deframer()
        self.configure(link_bytes=link_bytes, request_timeout=request_timeout)
        self._in_send, self.incoming = trio.open_memory_channel[tuple[str, trio.SocketStream]](
            INCOMING_QUEUE
        )
        self._handlers: dict[type, Handler] = {}
        self.index = -1
        self.count = 1
        self.alive: set[int] = set()
        self.owners: dict[str, bus.Owner] = {}
        self._asks: dict[int, _Ask] = {}
        self._ask_ids = itertools.count(1)
        self.dropped = 0  # messages the link could not take (queue full)
        self.closed = trio.Event()  # the supervisor went away
        self._pending: list[bus.Frame] = []

    def configure(self, *, link_bytes: int, request_timeout: float) -> None:
        """The limits from the settings (which arrive in Start); before :meth:`run`."""
        self._outbox = Outbox(link_bytes)
        self.request_timeout = request_timeout

    # --- start -----------------------------------------------------------------------------
    async def read_start(self) -> bus.Start:
        """Wait for the supervisor's Start (the first message); the frames after it are
        kept for :meth:`run`."""
        with trio.fail_after(START_WAIT):
            while True:
                chunk = await self._bus.recv(READ_SIZE)
                if not chunk:
                    raise ConnectionError("the supervisor closed the link before Start")
                frames = self._deframer.feed(chunk)
                if frames:
                    break
        start = bus.decode(frames[0].body)
        if not isinstance(start, bus.Start):
            raise ConnectionError(f"expected Start, got {type(start).__name__}")
        self._pending = frames[1:]
        self.index, self.count = start.index, start.count
        self.alive = set(range(start.count))
        self.owners = {p: bus.Owner(p, w, True) for p, w in start.owners.items()}
        return start

    # --- sending ---------------------------------------------------------------------------
    def send(self, to: int, message: object) -> bool:
        """Queue ``message`` for worker ``to`` (or bus.OTHERS / bus.SUPERVISOR); never blocks.
        False when the link's queue is full (counted and logged once a second)."""
        if self.count <= 1 and to == bus.OTHERS:
            return True
        if not self._outbox.put(bus.encode(to, self.index, message)):
            self.dropped += 1
            if self.dropped == 1 or math.log2(self.dropped).is_integer():
                log.error(
                    "worker %d: link to the supervisor is full (%d messages dropped): copies "
                    "of this worker's streams on the other workers miss updates",
                    self.index,
                    self.dropped,
                )
            return False
        return True

    async def send_waiting(self, to: int, message: object) -> None:
        """:meth:`send` for bulk copies: waits for room instead of dropping."""
        with trio.move_on_after(self.request_timeout * 10):
            await self._outbox.put_waiting(bus.encode(to, self.index, message))

    def on(self, kind: type, handler: Handler) -> None:
        """Call ``handler(sender, message)`` for every message of type ``kind``."""
        self._handlers[kind] = handler

    # --- owners ----------------------------------------------------------------------------
    def owner_elsewhere(self, path: str) -> int | None:
        """The other worker whose publisher is live on ``path``, or None."""
        owner = self.owners.get(path)
        if owner is None or owner.worker == self.index or not owner.live:
            return None
        return owner.worker

    def owner_of(self, path: str) -> int | None:
        owner = self.owners.get(path)
        return None if owner is None else owner.worker

    def claim(self, path: str, live: bool) -> None:
        self.owners[path] = bus.Owner(path, self.index, live)
        self.send(bus.SUPERVISOR, bus.Owner(path, self.index, live))

    def release(self, path: str) -> None:
        owner = self.owners.get(path)
        if owner is not None and owner.worker == self.index:
            del self.owners[path]
            self.send(bus.SUPERVISOR, bus.Owner(path, -1))

    # --- whole-gateway questions -----------------------------------------------------------
    async def ask_others(self, what: str, path: str = "") -> list[Any]:
        """Ask every other live worker (``what``: "streams", "metrics", or "stream" with its
        ``path``); the answers that arrive within ``request_timeout`` (a worker that does not
        answer is logged)."""
        others = len(self.alive - {self.index})
        if others == 0:
            return []
        request = next(self._ask_ids)
        pending = self._asks[request] = _Ask(others)
        try:
            if not self.send(bus.OTHERS, bus.Ask(request, what, path)):
                return []
            with trio.move_on_after(self.request_timeout):
                await pending.done.wait()
            if len(pending.answers) < others:
                log.warning(
                    "worker %d: %d of %d workers answered %r within %g s",
                    self.index,
                    len(pending.answers),
                    others,
                    what,
                    self.request_timeout,
                )
            return list(pending.answers)
        finally:
            del self._asks[request]

    def _on_answer(self, sender: int, answer: bus.Answer) -> None:
        pending = self._asks.get(answer.request)
        if pending is None:
            return  # too late
        pending.answers.append(answer.value)
        if len(pending.answers) >= pending.expected:
            pending.done.set()

    # --- running ---------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read and write the link and take RTMP connections until cancelled or the
        supervisor closes the link (then ``closed`` is set)."""
        self.on(bus.Answer, self._on_answer)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._write)
            nursery.start_soon(self._take_connections)
            for frame in self._pending:
                self._dispatch(frame)
            self._pending = []
            task_status.started()
            await self._read()
            self.closed.set()
            nursery.cancel_scope.cancel()

    async def _read(self) -> None:
        while True:
            try:
                chunk = await self._bus.recv(READ_SIZE)
            except OSError as exc:
                log.error("worker %d: link to the supervisor failed: %s", self.index, exc)
                return
            if not chunk:
                log.info("worker %d: the supervisor closed the link", self.index)
                return
            try:
                frames = self._deframer.feed(chunk)
            except bus.BusError as exc:
                log.error("worker %d: link to the supervisor broken: %s", self.index, exc)
                return
            for frame in frames:
                self._dispatch(frame)

    def _dispatch(self, frame: bus.Frame) -> None:
        message = bus.decode(frame.body)
        if message == bus.PING:
            self.send(bus.SUPERVISOR, bus.PONG)
            return
        if isinstance(message, bus.Owner):
            self._on_owner(message)
        elif isinstance(message, bus.Joined):
            self.alive.add(message.index)
        elif isinstance(message, bus.Died):
            self.alive.discard(message.index)
            for path in message.paths:
                owner = self.owners.get(path)
                if owner is not None and owner.worker == message.index:
                    del self.owners[path]
        handler = self._handlers.get(type(message))
        if handler is None:
            return
        try:
            handler(frame.sender, message)
        except Exception:
            # A bug handling one message must not cut the link (and with it every copy).
            log.exception("worker %d: failed on %s", self.index, type(message).__name__)

    def _on_owner(self, owner: bus.Owner) -> None:
        if owner.worker < 0:
            self.owners.pop(owner.path, None)
        else:
            self.owners[owner.path] = owner

    async def _write(self) -> None:
        with contextlib.suppress(OSError):
            await self._outbox.drain(partial(send_all, self._bus))

    async def _take_connections(self) -> None:
        """RTMP connections the supervisor accepted, one per datagram with its descriptor."""
        space = socket.CMSG_SPACE(array.array("i", [0]).itemsize)
        while True:
            try:
                data, ancillary, _flags, _addr = await self._conns.recvmsg(_CONN_NAME_MAX, space)
            except OSError as exc:
                log.error("worker %d: connection hand-over failed: %s", self.index, exc)
                return
            if not data and not ancillary:
                return  # the supervisor closed it
            fds = array.array("i")
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
            for fd in fds:
                sock = trio.socket.from_stdlib_socket(socket.socket(fileno=fd))
                stream = trio.SocketStream(sock)
                try:
                    self._in_send.send_nowait((data.decode("ascii", "replace"), stream))
                except trio.WouldBlock:
                    log.warning("worker %d: too many connections waiting; one closed", self.index)
                    sock.close()


# --- copies of HLS ------------------------------------------------------------------------
class ReplicatingStore:
    """A memory store whose writes are also sent to every other worker (they apply them to
    their own store with :func:`apply_copy`). Reads are local."""

    def __init__(self, inner: Store, cluster: Cluster, *, copies: Store | None = None) -> None:
        self.inner = inner
        self.copies = inner if copies is None else copies  # where other workers' writes go
        self._cluster = cluster

    def put(self, name: str, data: Data, *, fresh: bool = False) -> None:
        self.inner.put(name, data, fresh=fresh)
        self._cluster.send(bus.OTHERS, bus.Put(name, joined(data)))

    def get(self, name: str) -> bytes | None:
        return self.inner.get(name)

    def delete(self, name: str) -> None:
        self.inner.delete(name)
        self._cluster.send(bus.OTHERS, bus.Delete(name))

    def names(self, prefix: str = "") -> list[str]:
        return self.inner.names(prefix)

    def total_bytes(self) -> int:
        total = getattr(self.inner, "total_bytes", None)
        return int(total()) if callable(total) else 0


def apply_copy(store: Store, message: bus.Put | bus.Delete) -> None:
    """Another worker's store write, applied to this worker's (local) store."""
    if isinstance(message, bus.Put):
        store.put(message.name, message.data)
    else:
        store.delete(message.name)


@dataclass
class _Copy:
    playlists: dict[str, LivePlaylist]
    parts: dict[str, bytes]
    missing: dict[str, str]


class Mirror:
    """The LL-HLS state of the streams other workers make, as their owners last sent it."""

    def __init__(self, notify: Callable[[str], None]) -> None:
        self._copies: dict[str, _Copy] = {}
        self._notify = notify

    def apply(self, state: bus.LiveState) -> None:
        copy = self._copies.get(state.path)
        if copy is None:
            copy = self._copies[state.path] = _Copy({}, {}, {})
        copy.playlists = state.playlists
        copy.missing = state.missing
        copy.parts.update(state.new_parts)
        for uri in [u for u in copy.parts if u not in state.parts]:
            del copy.parts[uri]
        self._notify(state.path)

    def drop(self, path: str) -> None:
        if self._copies.pop(path, None) is not None:
            self._notify(path)

    def paths(self) -> list[str]:
        return list(self._copies)

    def has(self, path: str) -> bool:
        return path in self._copies

    def live_playlist(self, path: str, file: str) -> LivePlaylist | None:
        copy = self._copies.get(path)
        if copy is None:
            return None
        found = copy.playlists.get(file)
        if found is not None or not file.endswith(".m4s"):
            return found
        # A part: the playlist whose parts (or preload hint) share its name prefix.
        prefix = file.rsplit("-", 1)[0]
        for playlist in copy.playlists.values():
            hint = playlist.preload_hint
            if file in copy.parts or (hint is not None and hint.rsplit("-", 1)[0] == prefix):
                return playlist
        return None

    def part(self, path: str, file: str) -> bytes | None:
        copy = self._copies.get(path)
        return None if copy is None else copy.parts.get(file)

    def missing_reason(self, path: str, file: str) -> str | None:
        copy = self._copies.get(path)
        return None if copy is None else copy.missing.get(file)


class LiveSender:
    """Sends a stream's LL-HLS state to one worker that asked for it, after each update
    (the owner's side of :class:`Mirror`), each part's bytes once."""

    def __init__(self, cluster: Cluster, path: str, to: int) -> None:
        self._cluster = cluster
        self.path = path
        self.to = to
        self._sent: set[str] = set()

    def update(
        self, playlists: dict[str, LivePlaylist], parts: dict[str, bytes], missing: dict[str, str]
    ) -> None:
        new = {u: b for u, b in parts.items() if u not in self._sent}
        state = bus.LiveState(self.path, playlists, new, frozenset(parts), missing)
        if self._cluster.send(self.to, state):
            # Kept: what is still listed and went. A lost update's parts go with the next one.
            self._sent = (self._sent & parts.keys()) | new.keys()

    def gone(self) -> None:
        self._cluster.send(self.to, bus.Gone(self.path))
