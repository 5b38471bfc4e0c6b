"""RTMP playback: the players of one stream, fed by one writer per stream.

The pure part (:class:`PlayerFeed`) decides what to send and with which timestamp: it starts at a
keyframe, resynchronises at the next keyframe after a gap (the slow-player policy), and keeps the
player's clock continuous across publisher reconnects.

The I/O part avoids per-player work per tag. Woken per tag, each player's task paid trio's
scheduling and its own send: on a 2-vCPU VM that cost ~10 ms CPU per player-second. Instead:

- :class:`Fanout` is the stream's sink for players. Its task (one per stream) takes what was
  published since it last ran and hands it to every player synchronously.
- Each tag's RTMP chunks are encoded once per stream with a relative header (RTMP 1.0 §5.3.1.2
  fmt 1-3: time delta, no absolute time or stream id), so every player that received the
  previous message of that chunk stream, with the same delta on its own clock, gets the same
  bytes. Any other player gets its own full (fmt 0) header, once, and is in step from then on.
- :class:`Output` is a connection's write side: a non-blocking write of the batch when nothing
  is queued, else a bounded backlog that the player's task drains when the socket is writable.
  A healthy player costs one write per batch and no task wake-up.
"""

from __future__ import annotations

import logging
import math
import os
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import trio

from gateway.config import Settings
from gateway.hub import (
    Hub,
    HubItem,
    SessionEnd,
    SessionStart,
    Stream,
    is_keyframe,
    is_sequence_header,
)
from gateway.metrics import Metrics
from gateway.rtmp.chunk import EXTENDED, ChunkEncoder
from gateway.rtmp.connection import CSID_AUDIO, CSID_VIDEO, Connection
from segmenter.flv import FlvTag, TagType, default_track_body

log = logging.getLogger("gateway.player")

# Milliseconds between the last tag of one publish session and the first of the next on the
# player's clock: timestamps must not go backwards when the publisher reconnects.
SESSION_GAP_MS = 40
UNPUBLISH_NOTIFY = "NetStream.Play.UnpublishNotify"
PUBLISH_NOTIFY = "NetStream.Play.PublishNotify"
# Tags encoded between socket writes while a queue is busy (the push relay's bound).
FLUSH_EVERY = 32
# Buffers per writev (Linux IOV_MAX is 1024).
IOV_MAX = 512
# The message stream id the shared encoder is given: relative headers do not carry it.
_SHARED_STREAM_ID = 1


def legacy_view(tag: FlvTag) -> FlvTag | None:
    """``tag`` as a peer that did not announce Multitrack (capsEx) gets it: unchanged unless it
    is a Multitrack tag, else its track 0 as a one-track tag, or None (no track 0 in it)."""
    if tag.type is TagType.SCRIPT:
        return tag
    body = default_track_body(tag.type, tag.body)
    if body is None:
        return None
    return tag if body is tag.body else FlvTag(tag.type, tag.timestamp, body)


@dataclass
class PlayerFeed:
    """Pure filter + clock for one player."""

    has_video: bool = True
    # The peer announced capsEx Multitrack (E-RTMP v2): it gets every track unchanged; else
    # only track 0 (legacy_view).
    multitrack: bool = False
    waiting_keyframe: bool = True
    paused: bool = False
    _base: int | None = None
    _offset: int = 0
    _last: int = 0
    dropped: int = 0

    def new_session(self) -> None:
        self._offset = self._last + SESSION_GAP_MS if self._base is not None else 0
        self._base = None
        self.waiting_keyframe = True

    def gap(self, lost: int) -> None:
        self.dropped += lost
        self.waiting_keyframe = True

    def pause(self, paused: bool) -> None:
        """§7.2.2.8 on a live stream: stop delivery; on resume start again at a keyframe."""
        self.paused = paused
        if not paused:
            self.waiting_keyframe = True

    def view(self, tag: FlvTag) -> FlvTag | None:
        """What this player gets of ``tag`` (every track, or track 0 only); None: nothing."""
        return tag if self.multitrack else legacy_view(tag)

    def accept(self, tag: FlvTag) -> int | None:
        """The timestamp to send ``tag`` (as :meth:`view` gives it) with, or None to drop it."""
        if self.paused:
            return None
        if tag.type is TagType.SCRIPT or is_sequence_header(tag):
            return self._map(tag.timestamp, header=True)
        if self.waiting_keyframe:
            if is_keyframe(tag) or (tag.type is TagType.AUDIO and not self.has_video):
                self.waiting_keyframe = False
            else:
                self.dropped += 1
                return None
        return self._map(tag.timestamp, header=False)

    def _map(self, ts: int, *, header: bool) -> int:
        if self._base is None:
            if header:
                return self._offset  # configuration goes out before the first frame
            self._base = ts
        out = max(ts - self._base + self._offset, 0)
        self._last = max(self._last, out)
        return out


class Shared:
    """One audio or video tag as the stream's writer hands it to players: its chunks with a
    relative header, encoded once, and what a player must have received last on the chunk
    stream for those bytes to be right."""

    __slots__ = ("_fmt2", "_legacy", "csid", "data", "delta", "fmt", "prev", "tag")

    def __init__(self, tag: FlvTag, csid: int, prev: Shared | None, encoder: ChunkEncoder) -> None:
        self.tag, self.csid, self.prev = tag, csid, prev
        self.data = encoder.encode(csid, tag.timestamp, int(tag.type), _SHARED_STREAM_ID, tag.body)
        self.fmt = self.data[0] >> 6  # §5.3.1.1: fmt 0 (absolute time) is never shared
        self.delta = tag.timestamp - prev.tag.timestamp if prev is not None else -1
        self._fmt2: bytes | None = None
        self._legacy: FlvTag | bool | None = False  # False: not computed yet

    def legacy(self) -> FlvTag | None:
        """legacy_view of the tag, computed once for all the stream's legacy players."""
        if self._legacy is False:
            self._legacy = legacy_view(self.tag)
        assert not isinstance(self._legacy, bool)
        return self._legacy

    def fmt2(self) -> bytes:
        """A fmt 3 message with a fmt 2 header (the delta spelled out), for a player whose last
        header on the chunk stream was absolute: what fmt 3 means after fmt 0 varies by peer.
        The chunk streams are < 64, so the basic header is one byte (§5.3.1.1)."""
        if self._fmt2 is None:
            delta = min(self.delta, EXTENDED).to_bytes(3, "big")
            self._fmt2 = bytes([0x80 | self.csid]) + delta + self.data[1:]
        return self._fmt2


@dataclass(eq=False, slots=True)
class _Sent:
    """What the peer last got on one chunk stream (for the relative headers that may follow)."""

    shared: Shared | None  # the tag, as handed out by a stream's writer (None: other messages)
    stream_id: int
    timestamp: int  # on the player's clock
    relative: bool  # sent with the shared (relative) header: a fmt 3 may follow it


class Output:
    """The write side of a connection that plays: everything (media, status, control) goes
    through here in order. Writes are attempted at once without blocking; what the socket does
    not take waits in ``backlog`` for the connection's tasks to drain (:meth:`drain`)."""

    def __init__(
        self, sock: trio.abc.Stream, conn: Connection, lock: trio.StrictFIFOLock, timeout: float
    ) -> None:
        self.sock, self.conn, self.lock, self.timeout = sock, conn, lock, timeout
        # Only a real socket can be written without awaiting; other streams always queue.
        self.fd = sock.socket.fileno() if isinstance(sock, trio.SocketStream) else -1
        self.backlog: deque[bytes | memoryview] = deque()
        self.failure: OSError | None = None
        self.media_bytes = 0  # media bytes queued (the connection counts the rest)
        self.sent: dict[int, _Sent] = {}  # by chunk stream id
        self.plays: list[Play] = []  # woken when the backlog needs draining or writes fail

    def push(self, pieces: list[bytes]) -> None:
        """Write ``pieces`` after what is queued; never blocks."""
        if self.failure is not None:
            return
        if self.backlog or self.fd < 0 or self.lock.locked():
            self.backlog.extend(pieces)
            if len(self.backlog) == len(pieces):
                self._notify()
            return
        rest = self._write(pieces)
        if rest:
            self.backlog.extend(rest)
            self._notify()

    def _write(self, pieces: Sequence[bytes | memoryview]) -> list[bytes | memoryview]:
        """One non-blocking writev; what it did not take (also everything on a failure)."""
        try:
            n = os.writev(self.fd, pieces[:IOV_MAX])
        except BlockingIOError:
            n = 0
        except OSError as exc:
            self.failure = exc
            self._notify()
            return []
        for i, piece in enumerate(pieces):
            size = len(piece)
            if n < size:
                rest = list(pieces[i:])
                if n:
                    rest[0] = memoryview(piece)[n:]
                return rest
            n -= size
        return []

    def _notify(self) -> None:
        for play in self.plays:
            play.attention.set()

    async def flush(self) -> None:
        """Queue what the protocol layer has for the peer and wait until all is written."""
        if self.conn.has_data_to_send:
            self.push([self.conn.data_to_send()])
        if self.backlog or self.failure is not None:
            await self.drain()

    async def drain(self) -> None:
        """Write the backlog; a wait for the socket longer than ``timeout`` raises TooSlowError."""
        async with self.lock:
            while self.backlog and self.failure is None:
                if self.fd < 0:
                    data = b"".join(self.backlog)
                    self.backlog.clear()
                    with trio.fail_after(self.timeout):
                        await self.sock.send_all(data)
                    continue
                rest = self._write(list(self.backlog))
                if self.failure is not None:
                    break
                self.backlog = deque(rest)
                if rest:
                    with trio.fail_after(self.timeout):
                        await trio.lowlevel.wait_writable(self.fd)
        if self.failure is not None:
            raise self.failure


@dataclass(eq=False)
class Play:
    """One play request being served (also the player's entry in ``Stream.players``)."""

    peer: str
    stream_id: int
    feed: PlayerFeed
    conn: Connection
    output: Output
    settings: Settings
    metrics: Metrics
    path: str
    dropped: int = 0  # tags that did not fit in the backlog (real time)
    behind_since: float | None = None
    too_slow: bool = False
    left_at: float | None = None  # when the publisher left, while we wait for a new one
    notified_at: float | None = None  # when the player was told the stream is unpublished
    failure: Exception | None = None
    draining: trio.CancelScope | None = None  # while the player's task waits for its socket
    skip: int = 0  # items of the writer's current batch that predate this play
    attention: trio.Event = field(default_factory=trio.Event)

    def describe(self) -> dict[str, object]:
        # Tags dropped because the player did not keep up, and tags skipped while resyncing.
        return {"peer": self.peer, "dropped": self.dropped, "skipped": self.feed.dropped}

    def send(self, items: Sequence[Shared | HubItem], pieces: list[bytes]) -> None:
        """Add what this player gets of ``items`` to ``pieces`` (in the writer's task)."""
        out, feed, sid = self.output, self.feed, self.stream_id
        sent, room = out.sent, self.settings.player_queue - len(out.backlog)
        dropped = 0
        for item in items:
            if isinstance(item, Shared):
                if len(pieces) >= room:
                    dropped += 1
                    continue
                tag = item.tag
                if not feed.multitrack and (view := item.legacy()) is not tag:
                    # Multitrack rewritten to track 0 (or dropped): its own bytes, full header.
                    if view is not None and (ts := feed.accept(view)) is not None:
                        pieces.append(self._full(item.csid, view, ts))
                        out.media_bytes += len(pieces[-1])
                        sent[item.csid] = _Sent(None, sid, ts, False)
                    continue
                ts = feed.accept(tag)
                if ts is None:
                    continue
                last = sent.get(item.csid)
                if (
                    last is not None
                    and item.prev is not None
                    and last.shared is item.prev
                    and item.fmt
                    and last.stream_id == sid
                    and ts - last.timestamp == item.delta
                ):
                    pieces.append(item.data if item.fmt != 3 or last.relative else item.fmt2())
                    relative = True
                else:
                    pieces.append(self._full(item.csid, tag, ts))
                    relative = False
                out.media_bytes += len(pieces[-1])
                if last is None:
                    sent[item.csid] = _Sent(item, sid, ts, relative)
                else:  # updated in place: this runs per player per tag
                    last.shared = item
                    last.stream_id = sid
                    last.timestamp = ts
                    last.relative = relative
            elif isinstance(item, FlvTag):  # script data: the connection's own chunk stream
                if len(pieces) >= room:
                    dropped += 1
                    continue
                ts = feed.accept(item)
                if ts is not None:
                    self.conn.send_media(sid, int(item.type), ts, item.body)
                    pieces.append(self.conn.data_to_send())
            elif isinstance(item, SessionEnd):
                # A publisher that reconnects within play_wait_timeout is followed seamlessly:
                # the player only sees a pause, then the new session's headers and frames.
                self.left_at = trio.current_time()
                self.attention.set()
            elif isinstance(item, SessionStart):
                feed.new_session()
                if self.left_at is None:  # the player was told the stream had ended
                    self.conn.send_status(
                        sid, "status", PUBLISH_NOTIFY, f"{self.path} is now published"
                    )
                    pieces.append(self.conn.data_to_send())
                self.left_at = self.notified_at = None
        if dropped:
            self._dropped(dropped)

    def _full(self, csid: int, tag: FlvTag, ts: int) -> bytes:
        """The tag with a full header: a new encoder has no state, so it writes fmt 0."""
        chunk_size = self.conn.limits.out_chunk_size
        return ChunkEncoder(chunk_size).encode(csid, ts, int(tag.type), self.stream_id, tag.body)

    def _dropped(self, count: int) -> None:
        self.dropped += count
        self.feed.gap(0)  # counted as dropped, not as skipped
        self.metrics.player_dropped.inc(count)
        now = trio.current_time()
        if self.behind_since is None:
            self.behind_since = now
        elif now - self.behind_since > self.settings.player_max_lag:
            self.too_slow = True
            self.attention.set()
            if self.draining is not None:
                self.draining.cancel()  # it may wait for send_timeout: end it now

    def send_start(self, start: list[FlvTag]) -> None:
        """Headers and the cached GOP, each with a full header (written at once)."""
        pieces = [self.conn.data_to_send()] if self.conn.has_data_to_send else []
        for item in start:
            tag = self.feed.view(item)
            if tag is None:
                continue
            ts = self.feed.accept(tag)
            if ts is None:
                continue
            if tag.type is TagType.SCRIPT:
                self.conn.send_media(self.stream_id, int(tag.type), ts, tag.body)
                pieces.append(self.conn.data_to_send())
                continue
            csid = CSID_VIDEO if tag.type is TagType.VIDEO else CSID_AUDIO
            pieces.append(self._full(csid, tag, ts))
            self.output.media_bytes += len(pieces[-1])
            self.output.sent[csid] = _Sent(None, self.stream_id, ts, False)
        if pieces:
            self.output.push(pieces)


class Fanout:
    """The stream's sink for RTMP players, and its writer task."""

    def __init__(self, hub: Hub, stream: Stream, chunk_size: int) -> None:
        self.hub, self.stream = hub, stream
        self.plays: list[Play] = []
        self.pending: list[HubItem] = []
        self.wake = trio.Event()
        self.closed = False
        self.encoder = ChunkEncoder(chunk_size)
        self.last: dict[int, Shared] = {}  # the newest tag per chunk stream

    @classmethod
    def attach(cls, hub: Hub, stream: Stream, play: Play, owner: trio.Nursery) -> Fanout:
        """Add ``play`` to the stream's fanout (made, with its task, for the first player).
        Synchronous: the player gets everything published after this call. ``owner`` runs the
        writer task: a nursery that outlives any one player's connection (the server's)."""
        fanout = stream.fanout
        if not isinstance(fanout, Fanout):
            fanout = stream.fanout = cls(hub, stream, play.conn.limits.out_chunk_size)
            hub.add_sink(stream, fanout)
            owner.start_soon(fanout.run, name=f"fanout {stream.path}")
        play.skip = len(fanout.pending)
        fanout.plays.append(play)
        return fanout

    def detach(self, play: Play) -> None:
        if play in self.plays:
            self.plays.remove(play)
        if not self.plays and not self.closed:
            self.closed = True
            self.hub.remove_sink(self.stream, self)
            if self.stream.fanout is self:
                self.stream.fanout = None
            self.wake.set()

    def __call__(self, item: HubItem) -> None:
        """The sink: called in the publisher's task for every item; never blocks."""
        self.pending.append(item)
        self.wake.set()

    async def run(self) -> None:
        try:
            while not self.closed:
                await self.wake.wait()
                self.wake = trio.Event()
                if not self.closed:
                    self.deliver()
                    # Tags that arrive meanwhile go out together, one write per player.
                    if self.hub.play_write_interval > 0:
                        await trio.sleep(self.hub.play_write_interval)
        except Exception:
            # A bug must not take the server's other streams down: end this stream's players.
            log.exception("fanout of %s failed", self.stream.path)
            for play in self.plays:
                play.failure = RuntimeError(f"fanout of {self.stream.path} failed")
                play.attention.set()

    def deliver(self) -> None:
        items: list[Shared | HubItem] = []
        last = self.last
        for item in self.pending:
            if isinstance(item, FlvTag) and item.type is not TagType.SCRIPT:
                csid = CSID_VIDEO if item.type is TagType.VIDEO else CSID_AUDIO
                shared = last[csid] = Shared(item, csid, last.get(csid), self.encoder)
                items.append(shared)
            else:
                items.append(item)
        self.pending = []
        for play in self.plays:
            pieces: list[bytes] = []
            try:
                play.send(items[play.skip :] if play.skip else items, pieces)
            except Exception as exc:  # e.g. the connection failed: that player only
                play.failure = exc
                play.attention.set()
                continue
            play.skip = 0
            out = play.output
            if pieces:
                out.push(pieces)
            if not out.backlog:
                play.behind_since = None  # caught up
        # Delivered: the next tags refer to these, these need not keep theirs (no chain in memory).
        for done in items:
            if isinstance(done, Shared):
                done.prev = None


async def play(
    *,
    conn: Connection,
    stream_id: int,
    stream: Stream,
    hub: Hub,
    settings: Settings,
    metrics: Metrics,
    output: Output,
    peer: str,
    owner: trio.Nursery,
    feed: PlayerFeed | None = None,
) -> str | None:
    """Serve one play request until the player goes away, falls too far behind, or is cancelled.

    Returns why the connection should be closed (the player stayed too far behind, or the
    stream stayed unpublished), or None."""
    if stream.publisher is None:
        with trio.move_on_after(settings.play_wait_timeout):
            await stream.published_event.wait()
        if stream.publisher is None:
            conn.reject_play(
                stream_id,
                "NetStream.Play.StreamNotFound",
                f"{stream.path} is not being published",
            )
            hub.discard_if_idle(stream)  # players asking for names nobody publishes leave nothing
            await output.flush()
            return None
    # Snapshot, attach and send the start in one synchronous step: nothing missed or sent twice.
    start = stream.start_items()
    feed = feed if feed is not None else PlayerFeed()
    feed.has_video = stream.video_header is not None or any(t.type is TagType.VIDEO for t in start)
    p = Play(peer, stream_id, feed, conn, output, settings, metrics, stream.path)
    fanout = Fanout.attach(hub, stream, p, owner)
    output.plays.append(p)
    stream.players.add(p)
    metrics.players.inc()
    started = trio.current_time()
    log.info(
        "play start %s to %s",
        stream.path,
        peer,
        extra={"event": "play_start", "app": stream.app, "key": stream.key, "peer": peer},
    )
    try:
        conn.accept_play(stream_id)
        p.send_start(start)
        while True:
            p.attention = trio.Event()  # before the checks: a later set() is not lost
            if p.failure is not None:
                raise p.failure
            if output.backlog or output.failure is not None:
                # A write that cannot go on within send_timeout drops this player (TooSlowError).
                with trio.CancelScope() as p.draining:
                    await output.drain()
                p.draining = None
                if not p.too_slow:
                    p.behind_since = None  # caught up
                    continue
            if p.too_slow:
                metrics.players_disconnected_slow.inc()
                log.warning(
                    "player %s of %s disconnected: behind for more than %.1f s",
                    peer,
                    stream.path,
                    settings.player_max_lag,
                )
                return "player stayed behind longer than player_max_lag"
            deadline = math.inf
            if p.left_at is not None:
                deadline = p.left_at + settings.play_wait_timeout
            elif p.notified_at is not None:
                deadline = p.notified_at + settings.idle_timeout
            now = trio.current_time()
            if now >= deadline and p.left_at is not None:
                # Nobody came back in time: now tell the player (FFmpeg and librtmp stop on it).
                p.left_at, p.notified_at = None, now
                conn.send_status(
                    stream_id, "status", UNPUBLISH_NOTIFY, f"{stream.path} is no longer published"
                )
                await output.flush()
                continue
            if now >= deadline:
                # A player that stays after being told would hold its connection slot for good.
                gone = settings.play_wait_timeout + settings.idle_timeout
                return f"{stream.path} not published for {gone:g} s"
            with trio.move_on_at(deadline):
                await p.attention.wait()
    finally:
        fanout.detach(p)
        output.plays.remove(p)
        stream.players.discard(p)
        if stream.sessions == 0:
            hub.discard_if_idle(stream)
        metrics.players.dec()
        log.info(
            "play stop %s to %s (%d tags dropped, %d skipped)",
            stream.path,
            peer,
            p.dropped,
            feed.dropped,
            extra={
                "event": "play_stop",
                "app": stream.app,
                "key": stream.key,
                "peer": peer,
                "duration": round(trio.current_time() - started, 3),
                "bytes": output.media_bytes,
                "dropped": p.dropped,
                "skipped": feed.dropped,
            },
        )
