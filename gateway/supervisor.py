"""``workers`` > 1: a supervisor process and its workers.

The supervisor serves nothing itself. It
- listens for RTMP (and RTMPS) and hands each accepted connection to the next worker in turn
  (the descriptor goes over a Unix datagram socket, SCM_RIGHTS), so streams spread evenly and a
  worker that is restarting gets none;
- reserves the HTTP port with an SO_REUSEPORT socket that never listens: each worker binds the
  same port with SO_REUSEPORT and the kernel spreads HTTP connections over them;
- routes the workers' messages (gateway.bus) without reading them, and keeps the table of which
  worker owns which stream;
- starts a worker again when it dies (its publishers reconnect to the others, as encoders do),
  tells the others, and has one of them end the dead worker's playlists;
- forwards SIGHUP as the reloaded settings and ends every worker gracefully on SIGTERM/SIGINT.

Task tree: run_supervisor -> signal watcher, RTMP acceptors, one keeper per worker slot (which
owns that worker's process and its link tasks), and for a disk hls_dir the start-up sweep's
retirement task (workers do not sweep a directory they share).
"""

from __future__ import annotations

import array
import contextlib
import logging
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import trio

from gateway import bus
from gateway.cluster import Outbox, send_all
from gateway.config import ConfigError, Settings
from gateway.janitor import retire_ended, sweep_store
from gateway.server import listen_tcp
from gateway.signals import watch_signals
from gateway.tls import server_context
from segmenter.keeper import end_stale_playlists
from segmenter.store import DiskStore
from web.tcp import reuseport_socket

log = logging.getLogger("gateway.supervisor")

# Deaths within this many seconds double the restart delay.
DEATH_WINDOW = 60.0
MAX_RESTART_DELAY = 30.0
# A worker that has not sent its Ready this long after start is killed and started again.
START_TIMEOUT = 60.0


@dataclass(eq=False)
class Slot:
    index: int
    outbox: Outbox
    process: trio.Process | None = None
    conns: trio.socket.SocketType | None = None
    ready: bool = False
    deaths: list[float] = field(default_factory=list)
    dropped: int = 0
    exited: trio.Event = field(default_factory=trio.Event)  # this life's process ended
    answered: float = 0.0  # trio clock of the last heartbeat answer
    started: trio.Event = field(default_factory=trio.Event)  # this life sent its "ready"


class Supervisor:
    def __init__(self, settings: Settings, count: int, reloader: Callable[[], Settings] | None):
        self.settings = settings
        self.count = count
        self.reloader = reloader
        self.slots = [Slot(i, Outbox(settings.worker_link_bytes)) for i in range(count)]
        self.owners: dict[str, bus.Owner] = {}
        self.stopping = False
        self._turn = 0
        self.orphans: dict[int, tuple[str, ...]] = {}  # paths of a dead worker nobody adopted
        self.all_ready = trio.Event()  # every worker has started once

    # --- routing ---------------------------------------------------------------------------
    def _put(self, slot: Slot, data: bytes) -> None:
        if slot.process is None:
            return
        if not slot.outbox.put(data):
            slot.dropped += 1
            if slot.dropped == 1 or (slot.dropped & (slot.dropped - 1)) == 0:
                log.error(
                    "worker %d takes its messages too slowly: %d dropped (its copies of other "
                    "workers' streams miss updates)",
                    slot.index,
                    slot.dropped,
                )

    def tell(self, index: int, message: object) -> None:
        self._put(self.slots[index], bus.encode(index, bus.SUPERVISOR, message))

    def tell_all(self, message: object, *, but: int | None = None) -> None:
        data = bus.encode(bus.OTHERS, bus.SUPERVISOR, message)
        for slot in self.slots:
            if slot.index != but and slot.ready:
                self._put(slot, data)

    def route(self, sender: Slot, frame: bus.Frame) -> None:
        if frame.to == bus.SUPERVISOR:
            self._handle(sender, bus.decode(frame.body))
            return
        data = frame.readdressed(sender.index)
        if frame.to == bus.OTHERS:
            for slot in self.slots:
                if slot is not sender and slot.ready:
                    self._put(slot, data)
        elif 0 <= frame.to < self.count:
            self._put(self.slots[frame.to], data)

    def _handle(self, sender: Slot, message: object) -> None:
        if message == bus.PONG:
            sender.answered = trio.current_time()
        elif isinstance(message, bus.Owner):
            self._claim(sender.index, message)
        elif message == "ready":
            sender.ready = True
            sender.started.set()
            # Owners that changed while it started (messages to a starting worker are dropped).
            for owner in self.owners.values():
                self.tell(sender.index, owner)
            if all(s.ready for s in self.slots):
                self.all_ready.set()
            log.info(
                "worker %d ready (pid %s)", sender.index, sender.process and sender.process.pid
            )
            self.tell_all(bus.Joined(sender.index), but=sender.index)
            orphans = self.orphans.pop(sender.index, ())
            if orphans:
                self.tell(sender.index, bus.Died(sender.index, orphans, sender.index))

    def _claim(self, worker: int, claim: bus.Owner) -> None:
        current = self.owners.get(claim.path)
        if claim.worker < 0:  # a release
            if current is not None and current.worker == worker:
                del self.owners[claim.path]
                self.tell_all(bus.Owner(claim.path, -1), but=worker)
            return
        if current is not None and current.worker != worker and current.live and claim.live:
            # Two publishers reached two workers at once: the first keeps the name.
            self.tell(worker, bus.Evict(claim.path, current.worker))
            return
        self.owners[claim.path] = bus.Owner(claim.path, worker, claim.live)
        self.tell_all(self.owners[claim.path], but=worker)

    # --- workers ---------------------------------------------------------------------------
    async def keep(self, slot: Slot, settings: Settings) -> None:
        """Run worker ``slot.index``, again after each death, until stopping."""
        while not self.stopping:
            started = time.monotonic()
            code = await self._run_once(slot)
            if self.stopping:
                return
            now = time.monotonic()
            slot.deaths = [t for t in slot.deaths if now - t < DEATH_WINDOW] + [now]
            delay = min(
                MAX_RESTART_DELAY,
                self.settings.worker_restart_delay * 2 ** (len(slot.deaths) - 1),
            )
            log.error(
                "worker %d died (exit %s after %.0f s); starting it again in %g s",
                slot.index,
                code,
                now - started,
                delay,
                extra={"event": "worker_died", "worker": slot.index, "cause": f"exit {code}"},
            )
            self._bury(slot)
            await trio.sleep(delay)

    def _bury(self, slot: Slot) -> None:
        """Forget what the dead worker owned; one live worker ends its playlists."""
        paths = tuple(p for p, o in self.owners.items() if o.worker == slot.index)
        for path in paths:
            del self.owners[path]
        others = [s.index for s in self.slots if s.ready and s is not slot]
        adopter = others[0] if others else -1
        self.tell_all(bus.Died(slot.index, paths, adopter), but=slot.index)
        if adopter < 0 and paths:
            self.orphans[slot.index] = paths  # the worker's own successor adopts them

    async def _run_once(self, slot: Slot) -> int | None:
        parent_bus, child_bus = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        parent_conns, child_conns = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        slot.outbox.clear()  # what an earlier life of this slot left queued was for a dead one
        try:
            process = await trio.lowlevel.open_process(
                [
                    sys.executable,
                    "-m",
                    "gateway.worker",
                    str(child_bus.fileno()),
                    str(child_conns.fileno()),
                ],
                pass_fds=(child_bus.fileno(), child_conns.fileno()),
                # Terminal signals go to the supervisor only; it tells the workers.
                start_new_session=True,
            )
        finally:
            child_bus.close()
            child_conns.close()
        parent_bus.setblocking(False)
        parent_conns.setblocking(False)
        link = trio.socket.from_stdlib_socket(parent_bus)
        slot.process = process
        slot.exited = trio.Event()
        slot.started = trio.Event()
        slot.conns = trio.socket.from_stdlib_socket(parent_conns)
        owners = {p: o.worker for p, o in self.owners.items() if o.live}
        self.tell(slot.index, bus.Start(slot.index, self.count, self.settings, owners))
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write, slot, link)
                nursery.start_soon(self._read, slot, link)
                nursery.start_soon(self._watch, slot)
                code = await process.wait()
                nursery.cancel_scope.cancel()
        finally:
            slot.ready = False
            slot.process = None
            slot.exited.set()
            slot.conns.close()
            slot.conns = None
            link.close()
            with trio.CancelScope(shield=True):
                if process.returncode is None:
                    process.kill()
                    await process.wait()
        return code

    async def _watch(self, slot: Slot) -> None:
        """Kill a worker that does not start, or later stops answering."""
        with trio.move_on_after(START_TIMEOUT):
            await slot.started.wait()
        if not slot.ready and slot.process is not None:
            log.error("worker %d did not start within %g s: killed", slot.index, START_TIMEOUT)
            slot.process.kill()
            return
        timeout = self.settings.worker_heartbeat_timeout
        if timeout <= 0:
            return
        # Heartbeat: a worker whose event loop is stuck serves no one; start it again.
        slot.answered = trio.current_time()
        while slot.process is not None:
            await trio.sleep(timeout / 4)
            if trio.current_time() - slot.answered > timeout:
                log.error(
                    "worker %d did not answer for %g s: killed",
                    slot.index,
                    timeout,
                    extra={"event": "worker_stuck", "worker": slot.index},
                )
                slot.process.kill()
                return
            self.tell(slot.index, bus.PING)

    async def _write(self, slot: Slot, link: trio.socket.SocketType) -> None:
        with contextlib.suppress(OSError):
            await slot.outbox.drain(partial(send_all, link))

    async def _read(self, slot: Slot, link: trio.socket.SocketType) -> None:
        deframer = bus.Deframer()
        while True:
            try:
                chunk = await link.recv(1 << 16)
            except OSError:
                return
            if not chunk:
                return
            try:
                frames = deframer.feed(chunk)
            except bus.BusError as exc:
                log.error("worker %d: link broken (%s): killed", slot.index, exc)
                if slot.process is not None:
                    slot.process.kill()
                return
            for frame in frames:
                self.route(slot, frame)

    # --- RTMP hand-over --------------------------------------------------------------------
    async def hand_over(self, protocol: str, listener: trio.SocketListener) -> None:
        name = protocol.encode("ascii")
        async with listener:
            while True:
                stream = await listener.accept()
                ready = [s for s in self.slots if s.ready and s.conns is not None]
                if not ready or self.stopping:
                    await trio.aclose_forcefully(stream)
                    continue
                slot = ready[self._turn % len(ready)]
                self._turn += 1
                fd = stream.socket.fileno()
                assert slot.conns is not None
                try:
                    with trio.move_on_after(5):
                        await slot.conns.sendmsg(
                            [name],
                            [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))],
                        )
                except OSError as exc:
                    log.warning("worker %d: cannot hand over a connection: %s", slot.index, exc)
                await trio.aclose_forcefully(stream)  # the worker has its own descriptor

    # --- signals ---------------------------------------------------------------------------
    def reload(self) -> None:
        if self.reloader is None:
            log.warning("received SIGHUP: no configuration source to reload, nothing changed")
            return
        try:
            loaded = self.reloader()
        except ConfigError as exc:
            log.error(
                "configuration reload refused, the running settings stay: %s",
                exc,
                extra={"event": "reload_refused", "cause": str(exc)},
            )
            return
        for slot in self.slots:
            if slot.ready:
                self.tell(slot.index, bus.Reload(loaded))

    async def stop_workers(self) -> None:
        """SIGTERM every worker (each shuts down gracefully), then wait; kill what is left."""
        self.stopping = True
        for slot in self.slots:
            if slot.process is not None and slot.process.returncode is None:
                slot.process.send_signal(signal.SIGTERM)
        wait = self.settings.shutdown_timeout + self.settings.reconnect_request_wait + 5
        with trio.move_on_after(wait):
            for slot in self.slots:
                if slot.process is not None:
                    await slot.exited.wait()
        for slot in self.slots:
            if slot.process is not None and slot.process.returncode is None:
                log.error("worker %d did not stop within %g s: killed", slot.index, wait)
                slot.process.kill()


def reserve_http_port(settings: Settings) -> socket.socket:
    """A socket bound to the HTTP address with SO_REUSEPORT that never listens: it holds the port
    (and picks it for port 0) while the workers bind beside it."""
    try:
        return reuseport_socket(settings.host, settings.http_port)
    except OSError as exc:
        where = f"{settings.host}:{settings.http_port}"
        raise OSError(exc.errno, f"cannot listen for HTTP on {where}: {exc.strerror}") from None


async def run_supervisor(
    settings: Settings,
    count: int,
    *,
    reloader: Callable[[], Settings] | None = None,
    stop: trio.Event | None = None,
    task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED,
) -> None:
    stop = stop if stop is not None else trio.Event()
    http = reserve_http_port(settings)
    try:
        rtmp: list[tuple[str, trio.SocketListener]] = []
        if settings.rtmp_port >= 0:
            found = await listen_tcp(settings, settings.rtmp_port, "rtmp")
            rtmp += [("rtmp", lst) for lst in found]
        if settings.tls_cert:
            server_context(settings)  # a bad certificate fails here, not in every worker
            found = await listen_tcp(settings, settings.rtmps_port, "rtmps")
            rtmp += [("rtmps", lst) for lst in found]
        ports = {p: lst.socket.getsockname()[1] for p, lst in rtmp}
        # The workers run with the ports as bound (port 0 was picked here).
        settings = replace(
            settings,
            http_port=http.getsockname()[1],
            rtmp_port=ports.get("rtmp", settings.rtmp_port),
            rtmps_port=ports.get("rtmps", settings.rtmps_port),
        )
        supervisor = Supervisor(settings, count, reloader)
        ended = []
        if settings.hls_dir:
            # The workers share the directory: it is swept once, here, before any of them runs.
            store = DiskStore(Path(settings.hls_dir))
            ended = await sweep_store(store)
            for name in end_stale_playlists(store):
                log.info("%s: ended a live playlist left by a previous run", name)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                partial(watch_signals, whom=" of every worker"), stop, supervisor.reload, log
            )
            for slot in supervisor.slots:
                nursery.start_soon(supervisor.keep, slot, settings)
            with trio.fail_after(START_TIMEOUT):
                await supervisor.all_ready.wait()
            if settings.hls_dir and ended:
                nursery.start_soon(
                    retire_ended,
                    store,
                    ended,
                    settings.hls_retention,
                    lambda path: path in supervisor.owners,
                )
            addresses = ", ".join(
                f"{p} {settings.host}:{lst.socket.getsockname()[1]}" for p, lst in rtmp
            )
            async with trio.open_nursery() as acceptors:  # stopped first: no new connections
                for protocol, lst in rtmp:
                    acceptors.start_soon(supervisor.hand_over, protocol, lst)
                log.info(
                    "gateway listening: %s, http http://%s:%d, store %s, %d workers",
                    addresses,
                    settings.host,
                    settings.http_port,
                    settings.hls_dir or "memory",
                    count,
                )
                task_status.started(supervisor)
                await stop.wait()
                acceptors.cancel_scope.cancel()
            await supervisor.stop_workers()
            nursery.cancel_scope.cancel()
    finally:
        http.close()
    log.info("gateway stopped")
