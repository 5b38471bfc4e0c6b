"""Publishers wait, in trio, while the disk write queue is full.

Segments and playlists are queued for one writer thread (segmenter.store.WriteBehindStore); a put
never blocks the event loop. When the disk falls behind and the queue reaches
``hls_write_queue_bytes``, every publishing connection (each one feeds a segmenter that writes)
stops reading its socket before its next read and awaits the queue in trio. The encoder then
meets TCP back-pressure, as it would behind a slow network; HTTP answers, RTMP players and the
event loop go on. A publisher paused for ``hls_write_stall_warn`` seconds is logged; one paused
for ``hls_write_stall_timeout`` seconds (a disk that stopped taking writes) is disconnected with
that reason, as nginx-rtmp and SRS drop a publisher they cannot keep up with, rather than holding
its socket and memory without end.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from functools import partial
from typing import Protocol

import trio

from gateway.metrics import Metrics
from segmenter.store import WriteBehindStore

log = logging.getLogger("gateway.store")


class WriteQueue(Protocol):
    """What the gate needs of a store with a bounded write queue (WriteBehindStore)."""

    @property
    def congested(self) -> bool: ...

    @property
    def pending_bytes(self) -> int: ...

    @property
    def max_pending_bytes(self) -> int: ...

    def when_writable(self, callback: Callable[[], None]) -> bool: ...


class WriteGate:
    """Shared by every publishing reader (RTMP sessions, pull relays) of one gateway."""

    def __init__(
        self,
        queue: WriteQueue,
        metrics: Metrics,
        *,
        warn_after: float,
        drop_after: float,
        queue_name: str = "disk write",
        limit: str = "hls_write_queue_bytes",
        slow: str = "hls_dir",
    ) -> None:
        self.queue = queue
        # For log lines and causes: which queue, its setting, what is slow (a disk, a bucket).
        self._names = (queue_name, limit, slow)
        self.metrics = metrics
        self.warn_after = warn_after
        self.drop_after = drop_after  # 0 = never
        # Set (in trio) when the queue drains below its bound; one per episode, shared by
        # every paused publisher, so the writer thread has one callback to run however many wait.
        self._drained: trio.Event | None = None

    @property
    def closed(self) -> bool:
        """Writers must pause before reading more (cheap: checked before every read)."""
        return self.queue.congested

    async def writable(self) -> None:
        """Return once the queue is below its bound, without blocking the event loop: the
        writer thread wakes trio through the loop's token."""
        while self.queue.congested:
            event = self._drained
            if event is None:
                event = trio.Event()
                token = trio.lowlevel.current_trio_token()
                if not self.queue.when_writable(partial(self._drained_in_thread, token, event)):
                    return
                self._drained = event
            await event.wait()

    def _drained_in_thread(self, token: trio.lowlevel.TrioToken, event: trio.Event) -> None:
        with contextlib.suppress(trio.RunFinishedError):  # the loop is gone: nobody waits
            token.run_sync_soon(self._wake, event)

    def _wake(self, event: trio.Event) -> None:
        if self._drained is event:
            self._drained = None
        event.set()

    async def pause(self, who: str) -> str | None:
        """Wait until the queue takes writes again. Returns None then, or the cause to end the
        publisher ``who`` (for log lines) once it has waited ``hls_write_stall_timeout``."""
        if not self.queue.congested:
            return None
        started = trio.current_time()
        self.metrics.store_pauses.inc()
        self.metrics.store_paused.inc()
        drop_at = started + self.drop_after if self.drop_after > 0 else math.inf
        try:
            with trio.move_on_after(self.warn_after):
                await self.writable()
                return None
            queue_name, limit, slow = self._names
            log.warning(
                "%s: paused for %g s: the %s queue is full (%d bytes waiting, "
                "%s %d); %s is slower than the streams",
                who,
                self.warn_after,
                queue_name,
                self.queue.pending_bytes,
                limit,
                self.queue.max_pending_bytes,
                slow,
            )
            with trio.move_on_at(drop_at):
                await self.writable()
                log.info("%s: resumed after %.1f s paused", who, trio.current_time() - started)
                return None
            self.metrics.store_stalled_publishers.inc()
            queue_name = self._names[0]
            return f"{queue_name} queue full for {self.drop_after:g} s (hls_write_stall_timeout)"
        finally:
            self.metrics.store_paused.dec()
            self.metrics.store_paused_seconds.inc(trio.current_time() - started)


def watch_write_queue(
    store: WriteBehindStore, metrics: Metrics, *, warn_after: float, drop_after: float
) -> WriteGate:
    """The gate of ``store``, with its queue, write times and failures in ``metrics``."""
    metrics.store_queue_items.set_function(lambda: store.pending_items)
    metrics.store_queue_bytes.set_function(lambda: store.pending_bytes)
    latency, failures = metrics.store_write_seconds, metrics.store_write_failures

    def written(seconds: float, ok: bool) -> None:  # in the writer thread (the metrics lock)
        latency.observe(seconds)
        if not ok:
            failures.inc()

    store.on_write = written
    return WriteGate(store, metrics, warn_after=warn_after, drop_after=drop_after)
