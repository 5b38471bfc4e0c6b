"""RTMP playback: one player of one stream, fed from the hub through its own bounded queue.

The pure part (:class:`PlayerFeed`) decides what to send and with which timestamp: it starts at a
keyframe, resynchronises at the next keyframe after a gap (the slow-player policy), and keeps the
player's clock continuous across publisher reconnects. :func:`play` is the async loop around it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from gateway.config import Settings
from gateway.hub import (
    Gap,
    Hub,
    SessionEnd,
    SessionStart,
    Stream,
    Subscriber,
    is_keyframe,
    is_sequence_header,
)
from gateway.metrics import Metrics
from gateway.rtmp.connection import Connection
from segmenter.flv import FlvTag, TagType

log = logging.getLogger("gateway.player")

# Milliseconds between the last tag of one publish session and the first of the next on the
# player's clock: timestamps must not go backwards when the publisher reconnects.
SESSION_GAP_MS = 40
UNPUBLISH_NOTIFY = "NetStream.Play.UnpublishNotify"
PUBLISH_NOTIFY = "NetStream.Play.PublishNotify"
# Tags encoded between socket writes while the queue is busy: bounds the outbound buffer.
FLUSH_EVERY = 32


@dataclass
class PlayerFeed:
    """Pure filter + clock for one player."""

    has_video: bool = True
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

    def accept(self, tag: FlvTag) -> int | None:
        """The timestamp to send ``tag`` with, or None to drop it."""
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


@dataclass(eq=False)
class PlayerStats:
    peer: str
    stream_id: int
    feed: PlayerFeed
    subscriber: Subscriber

    def describe(self) -> dict[str, object]:
        # Tags the hub could not queue (real time) and tags skipped while resynchronising.
        return {
            "peer": self.peer,
            "dropped": self.subscriber.dropped,
            "skipped": self.feed.dropped,
        }


async def play(
    *,
    conn: Connection,
    stream_id: int,
    stream: Stream,
    hub: Hub,
    settings: Settings,
    metrics: Metrics,
    flush: Callable[[], Awaitable[None]],
    peer: str,
    feed: PlayerFeed | None = None,
) -> bool:
    """Serve one play request until the player goes away, falls too far behind, or is cancelled.

    Returns False when the connection should be closed (the player stayed too far behind)."""
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
            await flush()
            return True
    # Snapshot and attach in one synchronous step: nothing is missed, nothing sent twice.
    start = stream.start_items()
    sub, rx = hub.attach(stream, f"player {peer}", settings.player_queue)
    feed = feed if feed is not None else PlayerFeed()
    feed.has_video = stream.video_header is not None or any(t.type is TagType.VIDEO for t in start)
    stats = PlayerStats(peer, stream_id, feed, sub)
    stream.players.add(stats)
    metrics.players.inc()
    log.info("play start %s to %s", stream.path, peer)
    behind_since: float | None = None
    unflushed = 0
    try:
        conn.accept_play(stream_id)
        for tag in start:
            _send(conn, stream_id, feed, tag)
        await flush()
        left_at: float | None = None  # when the publisher left, while we wait for a new one
        while True:
            try:
                if left_at is None:
                    item = await rx.receive()
                else:
                    with trio.fail_at(left_at + settings.play_wait_timeout):
                        item = await rx.receive()
            except trio.TooSlowError:
                # Nobody came back in time: now tell the player (FFmpeg and librtmp stop on it).
                left_at = None
                conn.send_status(
                    stream_id, "status", UNPUBLISH_NOTIFY, f"{stream.path} is no longer published"
                )
                await flush()
                continue
            except trio.EndOfChannel:
                return True
            if isinstance(item, FlvTag):
                _send(conn, stream_id, feed, item)
            elif isinstance(item, Gap):
                feed.gap(0)  # already counted by the hub's subscriber
                metrics.player_dropped.inc(item.dropped)
                now = trio.current_time()
                behind_since = behind_since if behind_since is not None else now
                if now - behind_since > settings.player_max_lag:
                    metrics.players_disconnected_slow.inc()
                    log.warning(
                        "player %s of %s disconnected: behind for more than %.1f s",
                        peer,
                        stream.path,
                        settings.player_max_lag,
                    )
                    return False
            elif isinstance(item, SessionEnd):
                # A publisher that reconnects within play_wait_timeout is followed seamlessly:
                # the player only sees a pause, then the new session's headers and frames.
                left_at = trio.current_time()
            elif isinstance(item, SessionStart):
                feed.new_session()
                if left_at is None:  # the player was told the stream had ended
                    conn.send_status(
                        stream_id, "status", PUBLISH_NOTIFY, f"{stream.path} is now published"
                    )
                left_at = None
            unflushed += 1
            if rx.statistics().current_buffer_used == 0:
                behind_since = None  # caught up
                unflushed = FLUSH_EVERY
            if unflushed >= FLUSH_EVERY:
                # A write that cannot finish within send_timeout drops this player (TooSlowError).
                await flush()
                unflushed = 0
    finally:
        # A player stuck in a write never received the last Gap: count that run too.
        metrics.player_dropped.inc(sub.undelivered_gap)
        hub.detach(stream, sub)
        rx.close()
        stream.players.discard(stats)
        if stream.sessions == 0:
            hub.discard_if_idle(stream)
        metrics.players.dec()
        log.info(
            "play stop %s to %s (%d tags dropped, %d skipped)",
            stream.path,
            peer,
            sub.dropped,
            feed.dropped,
        )


def _send(conn: Connection, stream_id: int, feed: PlayerFeed, tag: FlvTag) -> None:
    ts = feed.accept(tag)
    if ts is not None:
        conn.send_media(stream_id, int(tag.type), ts, tag.body)
