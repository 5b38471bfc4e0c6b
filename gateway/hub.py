"""Streams keyed by app and stream name: one publisher each, many subscribers.

The publisher's reader calls :meth:`Stream.publish` for every tag; it never waits. Subscribers
that do I/O (players, relays) have a bounded channel fed with ``send_nowait``, and what a full one
does is its own policy (a player skips to the next keyframe). Sinks are synchronous and run in the
publisher's task: the HLS segmenter is one, as its work is CPU in this thread either way and a
queue hop per tag cost more than the work. The latest metadata and sequence headers are kept so a
late subscriber can start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs

import trio

from gateway.backpressure import WriteGate
from segmenter.codecs import MediaError
from segmenter.flv import (
    NOT_CONFIG,
    FlvTag,
    TagType,
    config_type,
    is_default_keyframe,
    join_tracks,
    split_multitrack,
)

log = logging.getLogger("gateway.hub")

# RTMP message types carried as FLV tags (the ids are the same: FLV spec E.4.1, RTMP §7.1).
MEDIA_TYPES: dict[int, TagType] = {8: TagType.AUDIO, 9: TagType.VIDEO, 18: TagType.SCRIPT}


class StreamBusy(Exception):
    """A publisher is already live on this name (answered with NetStream.Publish.BadName)."""


def split_query(name: str) -> tuple[str, dict[str, list[str]]]:
    """``key?token=x`` -> (``key``, {"token": ["x"]}); the query is kept for authorisation."""
    base, _, query = name.partition("?")
    return base, parse_qs(query, keep_blank_values=True)


@dataclass(frozen=True, slots=True)
class SessionStart:
    """Marks the start of a publish session (first publish or a reconnect) in a queue."""

    monotonic: float


@dataclass(frozen=True, slots=True)
class SessionEnd:
    """The publisher left; what follows (if anything) belongs to a new session."""


@dataclass(frozen=True, slots=True)
class Gap:
    """The subscriber's queue overflowed and ``dropped`` tags were lost before the next item."""

    dropped: int


HubItem = FlvTag | SessionStart | SessionEnd | Gap
# A synchronous consumer called with every item in the publisher's task; it must not block.
Sink = Callable[[HubItem], None]


@dataclass(eq=False)
class Subscriber:
    """One consumer of a stream. Items that do not fit in its queue are counted, never awaited."""

    name: str
    send_channel: trio.MemorySendChannel[HubItem]
    dropped: int = 0
    _pending_gap: int = 0

    @property
    def undelivered_gap(self) -> int:
        """Items lost since the last Gap marker the consumer received (not yet reported to it)."""
        return self._pending_gap

    def offer(self, item: HubItem) -> None:
        # A lost run of items is reported as one Gap before the next item that fits.
        try:
            if self._pending_gap:
                self.send_channel.send_nowait(Gap(self._pending_gap))
                self._pending_gap = 0
            self.send_channel.send_nowait(item)
        except trio.WouldBlock:
            self._pending_gap += 1
            self.dropped += 1
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass  # the consumer went away; it unsubscribes on its own exit path


@dataclass(frozen=True, slots=True)
class PublisherInfo:
    peer: str
    started_at: float  # wall clock, seconds since the epoch
    monotonic_start: float  # trio clock, for uptime
    query: dict[str, list[str]]
    connection_id: int
    # The connection holding the name, which a new publisher may replace once it has gone
    # silent (Hub.start_publish); None: the holder cannot be replaced (pull relays).
    owner: PublisherOwner | None = field(default=None, compare=False)
    relayed: bool = False  # another worker's publisher, relayed here for players


class PublisherOwner(Protocol):
    """What Hub.start_publish needs of a replaceable publisher's connection."""

    last_read: float  # trio clock: when bytes last came from the peer

    def evict(self, why: str) -> None:
        """End the connection, logging ``why``."""


def is_keyframe(tag: FlvTag) -> bool:
    """A video tag where a player can start: a key frame of the default track (track 0), not a
    header (segmenter.flv reads FLV and Enhanced RTMP headers, Multitrack included)."""
    return is_default_keyframe(tag.type, tag.body)


def is_sequence_header(tag: FlvTag) -> bool:
    """Decoder configuration of any track: AVC/AAC sequence headers (FLV E.4.2.2 / E.4.3.1),
    Enhanced RTMP SequenceStart, video Metadata and audio MultichannelConfig, Multitrack too."""
    return config_type(tag.type, tag.body) != NOT_CONFIG


# Start-of-play cache key of a configuration tag: (tag type, track id, PacketType).
HeaderKey = tuple[int, int, int]


def header_entries(tag: FlvTag, packet_type: int) -> list[tuple[HeaderKey, FlvTag]]:
    """Per track, the tag a new player needs for this configuration: a one-track tag as is
    (track 0); a Multitrack tag split, track 0 as its one-track body (what every player reads)
    and the others each as a OneTrack Multitrack tag (only multitrack players get those)."""
    kind = int(tag.type)
    try:
        tracks = split_multitrack(tag.type, tag.body)
    except MediaError:
        tracks = None
    if tracks is None:
        return [((kind, 0, packet_type), tag)]
    out: list[tuple[HeaderKey, FlvTag]] = []
    for track in tracks:
        body = track.body
        if track.track_id != 0:
            try:
                body = join_tracks(tag.type, [track])
            except ValueError:  # a ModEx prefix: join_tracks takes plain bodies; keep the tag
                body = tag.body
        out.append(((kind, track.track_id, packet_type), FlvTag(tag.type, tag.timestamp, body)))
    return out


@dataclass(eq=False)
class Stream:
    app: str
    key: str
    publisher: PublisherInfo | None = None
    metadata: FlvTag | None = None
    # The latest configuration of every track, in order of first arrival (header_entries).
    headers: dict[HeaderKey, FlvTag] = field(default_factory=dict)
    subscribers: set[Subscriber] = field(default_factory=set)
    sinks: list[Sink] = field(default_factory=list)
    # Tags since the newest video keyframe, so a new player starts with a picture at once.
    gop: list[FlvTag] = field(default_factory=list)
    gop_bytes: int = 0
    gop_limit: int = 0  # bytes; 0 disables the cache
    # Bytes of configuration kept for tracks other than track 0 (a publisher names up to 256).
    track_headers_limit: int = 1 << 20
    track_headers_bytes: int = 0
    # Replaced at every publish start, so waiters can sleep on "the next publisher".
    published_event: trio.Event = field(default_factory=trio.Event)
    # RTMP players' live state (gateway.player.Play), for the API.
    players: set[Any] = field(default_factory=set)
    # The players' sink and writer (gateway.player.Fanout) while there are players.
    fanout: Any = None
    sessions: int = 0
    tags_in: int = 0
    bytes_in: int = 0

    @property
    def path(self) -> str:
        return f"{self.app}/{self.key}"

    @property
    def video_header(self) -> FlvTag | None:
        """The default track's video sequence header (None before one arrived)."""
        return self.headers.get((int(TagType.VIDEO), 0, 0))

    @property
    def audio_header(self) -> FlvTag | None:
        return self.headers.get((int(TagType.AUDIO), 0, 0))

    def publish(self, tag: FlvTag) -> None:
        """Hand one tag of the live session to every subscriber; never blocks."""
        self.tags_in += 1
        self.bytes_in += len(tag.body)
        if tag.type is TagType.SCRIPT:
            self.metadata = tag
        elif (packet_type := config_type(tag.type, tag.body)) != NOT_CONFIG:
            for key, entry in header_entries(tag, packet_type):
                self._keep_header(key, entry)
        elif self.gop_limit:
            self._cache(tag)
        for sub in self.subscribers:
            sub.offer(tag)
        for sink in self.sinks:
            sink(tag)

    def _keep_header(self, key: HeaderKey, entry: FlvTag) -> None:
        if key[1] == 0:  # the default track's: always (as a one-track publisher's)
            self.headers[key] = entry
            return
        old = self.headers.get(key)
        size = self.track_headers_bytes - (len(old.body) if old is not None else 0)
        if size + len(entry.body) > self.track_headers_limit:
            if old is not None:  # stale configuration must not reach a new player either
                del self.headers[key]
                self.track_headers_bytes = size
            return
        self.headers[key] = entry
        self.track_headers_bytes = size + len(entry.body)

    def _cache(self, tag: FlvTag) -> None:
        if is_keyframe(tag):
            self.gop.clear()
            self.gop_bytes = 0
        elif not self.gop:
            return  # nothing decodable to attach audio or inter frames to yet
        if self.gop_bytes + len(tag.body) > self.gop_limit:
            # A GOP larger than the cache cannot give a clean start: drop it whole.
            self.gop.clear()
            self.gop_bytes = 0
            return
        self.gop.append(tag)
        self.gop_bytes += len(tag.body)

    def start_items(self) -> list[FlvTag]:
        """What a new player needs before live tags: metadata, every track's configuration,
        then the cached GOP (from a default-track keyframe)."""
        head = [self.metadata] if self.metadata is not None else []
        return head + list(self.headers.values()) + self.gop

    def _broadcast(self, item: HubItem) -> None:
        for sub in self.subscribers:
            sub.offer(item)
        for sink in self.sinks:
            sink(item)


class Hub:
    """All streams of this process. Synchronous: called from trio tasks, never blocks."""

    def __init__(
        self,
        *,
        on_stream_started: Callable[[Stream], None] | None = None,
        wallclock: Callable[[], float] = time.time,
        gop_cache_bytes: int = 0,
        track_headers_bytes: int = 1 << 20,
        play_write_interval: float = 0.03,
        takeover_after: float = 0.0,
    ) -> None:
        self.streams: dict[tuple[str, str], Stream] = {}
        self._gop_cache_bytes = gop_cache_bytes
        self._track_headers_bytes = track_headers_bytes
        # Seconds without a tag after which a new publisher may take a name over (0 = never).
        self._takeover_after = takeover_after
        # Seconds an RTMP players' writer (gateway.player.Fanout) waits between writes.
        self.play_write_interval = play_write_interval
        self._on_stream_started = on_stream_started
        self._wallclock = wallclock
        # Set with a disk write queue: publishers' readers pause on it while the queue is full.
        self.write_gate: WriteGate | None = None
        # With worker processes (gateway.cluster): which other worker has a publisher live on
        # a path, and who to tell when a local player looks a stream up.
        self.elsewhere: Callable[[str], int | None] | None = None
        self.on_lookup: Callable[[Stream], None] | None = None

    def configure(
        self,
        *,
        gop_cache_bytes: int,
        track_headers_bytes: int,
        play_write_interval: float,
        takeover_after: float,
    ) -> None:
        """Reloaded settings: the GOP cache and track-header limit of streams created from now
        on, the players' write interval and the takeover delay from their next use."""
        self._gop_cache_bytes = gop_cache_bytes
        self._track_headers_bytes = track_headers_bytes
        self.play_write_interval = play_write_interval
        self._takeover_after = takeover_after

    def get(self, app: str, key: str) -> Stream | None:
        return self.streams.get((app, key))

    def _stream(self, app: str, key: str) -> Stream:
        stream = self.streams.get((app, key))
        if stream is None:
            stream = self.streams[(app, key)] = Stream(
                app,
                key,
                gop_limit=self._gop_cache_bytes,
                track_headers_limit=self._track_headers_bytes,
            )
        return stream

    def start_publish(
        self,
        app: str,
        key: str,
        *,
        peer: str,
        connection_id: int,
        query: dict[str, list[str]],
        owner: PublisherOwner | None = None,
        relayed: bool = False,
    ) -> Stream:
        """Claim the publisher slot; raises StreamBusy if someone is live on this name (here,
        or on another worker process; ``relayed``: this is that worker's session, relayed).

        A holder whose peer has sent nothing for ``takeover_after`` seconds is replaced (its
        owner evicted): a publisher whose network died without closing the connection would
        otherwise keep its own reconnect out until idle_timeout."""
        if not relayed and self.elsewhere is not None:
            worker = self.elsewhere(f"{app}/{key}")
            if worker is not None:
                raise StreamBusy(f"{app}/{key} is already being published (on worker {worker})")
        stream = self._stream(app, key)
        holder = stream.publisher
        if holder is not None:
            old = holder.owner
            silent = 0.0 if old is None else trio.current_time() - old.last_read
            if old is None or not 0 < self._takeover_after <= silent:
                raise StreamBusy(f"{app}/{key} is already being published by {holder.peer}")
            self.end_publish(stream, holder.connection_id)
            old.evict(f"replaced by a new publisher from {peer} after {silent:.1f} s silent")
        stream.publisher = PublisherInfo(
            peer, self._wallclock(), trio.current_time(), query, connection_id, owner, relayed
        )
        stream.sessions += 1
        # A new session's headers replace the old ones; stale ones must not reach new subscribers.
        stream.metadata = None
        stream.headers.clear()
        stream.track_headers_bytes = 0
        stream.gop.clear()
        stream.gop_bytes = 0
        if self._on_stream_started is not None:
            self._on_stream_started(stream)  # at every publish start; the callee is idempotent
        stream._broadcast(SessionStart(trio.current_time()))
        stream.published_event.set()
        stream.published_event = trio.Event()
        return stream

    def discard_if_idle(self, stream: Stream) -> bool:
        """Forget ``stream`` when nothing holds it: no publisher, subscriber, sink or player. A
        later publish or play creates a fresh one (HLS numbering lives in the store, not here)."""
        if (
            stream.publisher is None
            and not stream.subscribers
            and not stream.sinks
            and not stream.players
        ):
            if self.streams.get((stream.app, stream.key)) is stream:
                del self.streams[(stream.app, stream.key)]
            return True
        return False

    def lookup(self, app: str, key: str) -> Stream:
        """The stream for a name, created empty if nobody published it yet (players may wait)."""
        stream = self._stream(app, key)
        if self.on_lookup is not None:
            self.on_lookup(stream)
        return stream

    def end_publish(self, stream: Stream, connection_id: int) -> None:
        """Release the slot; only its holder can (idempotent, safe on every exit path)."""
        if stream.publisher is None or stream.publisher.connection_id != connection_id:
            return
        stream.publisher = None
        stream._broadcast(SessionEnd())

    def attach(
        self, stream: Stream, name: str, queue_size: int
    ) -> tuple[Subscriber, trio.MemoryReceiveChannel[HubItem]]:
        """Attach a bounded queue to ``stream`` now (synchronously, so nothing published after
        this call is missed). The caller must :meth:`detach` on every exit path."""
        send, receive = trio.open_memory_channel[HubItem](queue_size)
        sub = Subscriber(name, send)
        stream.subscribers.add(sub)
        return sub, receive

    def detach(self, stream: Stream, sub: Subscriber) -> None:
        stream.subscribers.discard(sub)
        sub.send_channel.close()

    def add_sink(self, stream: Stream, sink: Sink) -> None:
        """Call ``sink`` with every item published from now on; :meth:`remove_sink` on exit."""
        stream.sinks.append(sink)

    def remove_sink(self, stream: Stream, sink: Sink) -> None:
        if sink in stream.sinks:
            stream.sinks.remove(sink)

    @contextmanager
    def subscribe(
        self, stream: Stream, name: str, queue_size: int
    ) -> Iterator[tuple[Subscriber, trio.MemoryReceiveChannel[HubItem]]]:
        """:meth:`attach` for the duration of a ``with`` block."""
        sub, receive = self.attach(stream, name, queue_size)
        try:
            yield sub, receive
        finally:
            self.detach(stream, sub)
            receive.close()

    def publishers(self) -> int:
        return sum(1 for s in self.streams.values() if s.publisher and not s.publisher.relayed)
