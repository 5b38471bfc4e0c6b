"""The transcoding ladder of one stream: one worker thread per rung, off the event loop.

The publisher's task hands every track-0 video tag to each rung's bounded queue with
``put_nowait`` and goes on; a rung whose queue is full cannot keep up and is dropped with a
warning (ingest never waits for an encoder). A worker decodes, scales and encodes
(segmenter.transcode) and hands its tags back to the trio thread with ``trio.from_thread``, which
feeds them to the stream's segmenter as a multitrack publisher's tags. While the trio thread is
busy the worker waits there, so the hand-back is bounded too (its queue fills instead).

Threads are owned by the stream's segmenter task: started when a publish session starts,
told to stop when it ends, joined by :meth:`StreamTranscoder.reap` as they finish and by
:meth:`StreamTranscoder.aclose` (with a deadline) when the task ends.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from gateway.hub import HubItem, SessionEnd, SessionStart
from gateway.transcode_config import Rung
from segmenter.codecs import MediaError
from segmenter.flv import FlvTag, TagType, split_multitrack
from segmenter.transcode import RungSpec, RungTranscoder, sequence_end_tag

__all__ = ["StreamTranscoder"]

STOP_TIMEOUT = 2.0  # s to join a stream's workers when its segmenter task ends (shutdown)


@dataclass(eq=False)
class _Worker:
    """One rung's thread and queue; ``state``: running, dropped, stopped or failed."""

    path: str  # the stream's, for log lines
    label: str
    spec: RungSpec
    queue: queue.Queue[FlvTag | None]
    deliver: Callable[[_Worker, list[FlvTag]], None]
    token: trio.lowlevel.TrioToken
    log: logging.Logger
    state: str = "running"
    delivered: int = 0  # tags handed to the segmenter (trio thread only)
    last_timestamp: int | None = None  # of the last of them
    output_size: tuple[int, int] | None = None
    stopping: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self, name: str) -> None:
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def stop(self, state: str) -> None:
        if self.state == "running":
            self.state = state
        self.stopping.set()
        # Wakes a worker waiting on an empty queue; a full one's worker is busy and checks
        # ``stopping`` after each tag.
        with contextlib.suppress(queue.Full):
            self.queue.put_nowait(None)

    def _run(self) -> None:
        transcoder = RungTranscoder(self.spec)
        try:
            while not self.stopping.is_set():
                tag = self.queue.get()
                if tag is None or self.stopping.is_set():
                    break
                out = transcoder.feed(tag)
                self.output_size = transcoder.output_size
                if out:
                    trio.from_thread.run_sync(self.deliver, self, out, trio_token=self.token)
        except trio.RunFinishedError:
            pass  # the gateway is gone; nothing to deliver to
        except MediaError as exc:  # a codec we do not decode (AV1, VP9): said, not a bug
            self.state = "failed"
            self.log.warning("%s: transcode rung %s stopped: %s", self.path, self.label, exc)
        except Exception:
            self.state = "failed"
            self.log.exception("%s: transcode rung %s failed", self.path, self.label)


class StreamTranscoder:
    """A stream's rungs; :meth:`sink` is a hub sink (called in the publisher's task)."""

    def __init__(
        self,
        path: str,
        rungs: tuple[Rung, ...],
        *,
        queue_frames: int,
        preset: str,
        feed: Callable[[FlvTag], None],
        log: logging.Logger | None = None,
    ) -> None:
        self.path = path
        self.rungs = rungs
        self._queue_frames = queue_frames
        self._preset = preset
        self._feed = feed
        self._log = log or logging.getLogger(f"transcode.{path}")
        self._running: list[_Worker] = []  # this session's rungs still fed
        self._ending: list[_Worker] = []  # told to stop, not joined yet
        self._last: list[_Worker] = []  # the latest session's rungs, for the API
        self.own_tracks = False  # the publisher sends multitrack video itself

    # --- publisher's task ------------------------------------------------------------------
    def sink(self, item: HubItem) -> None:
        if isinstance(item, FlvTag):
            if item.type is TagType.VIDEO and self._running:
                self._offer(item)
        elif isinstance(item, SessionStart):
            self._stop_all("stopped")
            self._start()
        elif isinstance(item, SessionEnd):
            self._stop_all("stopped")

    def _start(self) -> None:
        token = trio.lowlevel.current_trio_token()
        self.own_tracks = False
        self._running = []
        for track_id, rung in enumerate(self.rungs, start=1):
            spec = RungSpec(track_id, rung.width, rung.height, rung.bitrate, self._preset)
            worker = _Worker(
                self.path,
                f"{rung.label()} (track {track_id})",
                spec,
                queue.Queue(maxsize=self._queue_frames),
                self._deliver,
                token,
                self._log,
            )
            worker.start(f"transcode {self.path} track {track_id}")
            self._running.append(worker)
        self._last = list(self._running)

    def _offer(self, tag: FlvTag) -> None:
        if split_multitrack(tag.type, tag.body) is not None:
            # The publisher sends its own renditions (OBS Enhanced Broadcasting): ours would
            # take the same track ids.
            self.own_tracks = True
            self._log.warning(
                "%s: the publisher sends multitrack video; transcoding stopped", self.path
            )
            self._stop_all("stopped")
            return
        for worker in list(self._running):
            if worker.state != "running":
                self._retire(worker, end_track=True)  # failed on its own
                continue
            try:
                worker.queue.put_nowait(tag)
            except queue.Full:
                self._log.warning(
                    "%s: transcode rung %s cannot keep up (%d frames queued): dropped, the "
                    "other renditions go on",
                    self.path,
                    worker.label,
                    self._queue_frames,
                )
                worker.stop("dropped")
                self._retire(worker, end_track=True)

    def _retire(self, worker: _Worker, *, end_track: bool = False) -> None:
        if worker in self._running:
            self._running.remove(worker)
            self._ending.append(worker)
            if end_track and worker.last_timestamp is not None:
                # Mid-session, the rung's track ends as a publisher ends one: SequenceEnd.
                self._feed(sequence_end_tag(worker.spec.track_id, worker.last_timestamp))

    def _stop_all(self, state: str) -> None:
        for worker in list(self._running):
            worker.stop(state)
            self._retire(worker)

    # --- trio thread, called by the workers --------------------------------------------------
    def _deliver(self, worker: _Worker, tags: list[FlvTag]) -> None:
        if worker not in self._running:
            return  # stopped or dropped since: its late tags belong to no session
        for tag in tags:
            self._feed(tag)
        worker.delivered += len(tags)
        worker.last_timestamp = tags[-1].timestamp

    # --- the owning task ---------------------------------------------------------------------
    def reap(self) -> None:
        """Join the workers that have finished (never waits)."""
        for worker in list(self._ending):
            if worker.thread is None or not worker.thread.is_alive():
                if worker.thread is not None:
                    worker.thread.join()
                self._ending.remove(worker)

    async def aclose(self) -> None:
        """Stop every worker and join them, giving up after STOP_TIMEOUT s (they are daemon
        threads: one stuck in FFmpeg does not keep the process alive)."""
        timeout = STOP_TIMEOUT
        self._stop_all("stopped")
        threads = [w.thread for w in self._ending if w.thread is not None]

        def join() -> None:
            for thread in threads:
                thread.join()

        with trio.CancelScope(shield=True):
            with trio.move_on_after(timeout) as scope:
                await trio.to_thread.run_sync(join, abandon_on_cancel=True)
        if scope.cancelled_caught:
            self._log.error("%s: transcode threads still running after %g s", self.path, timeout)
        self.reap()

    def describe(self) -> list[dict[str, Any]]:
        """The latest session's rungs for the API."""
        out = []
        for worker in self._last:
            size = worker.output_size
            out.append(
                {
                    "track": worker.spec.track_id,
                    "rung": self.rungs[worker.spec.track_id - 1].label(),
                    "state": worker.state,
                    "size": f"{size[0]}x{size[1]}" if size else None,
                    "tags": worker.delivered,
                }
            )
        return out
