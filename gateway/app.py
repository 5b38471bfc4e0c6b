"""The composition root: RTMP server, one segmenter task per stream and hypercorn in one trio run.

Task tree (every task has an owner):
    run_gateway
    +-- signal watcher (SIGINT/SIGTERM/SIGHUP -> graceful shutdown)
    +-- RTMP server (own cancel scope: stopped first on shutdown)
    |     +-- one task per connection
    +-- segmenters (own nursery: one housekeeping task per stream; the segmenting itself runs
    |                in the publisher's task as a hub sink)
    +-- hypercorn (Quart app; drained last)
"""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import trio
from hypercorn.trio import serve as hypercorn_serve

from gateway.access import AccessControl
from gateway.config import Settings, hls_formats
from gateway.hub import Hub, HubItem, SessionEnd, SessionStart, Sink, Stream
from gateway.metrics import Metrics
from gateway.pull import PullManager
from gateway.relay import RelayManager
from gateway.rtmp import amf0
from gateway.server import serve_rtmp
from gateway.transcode import StreamTranscoder
from gateway.transcode_config import parse_transcode, rule_for
from segmenter.flv import FlvTag, TagType
from segmenter.live import LiveStream, SegmenterConfig, SegmentInfo, end_stale_playlists
from segmenter.playlist import LivePlaylist
from segmenter.store import (
    DiskStore,
    MemoryStore,
    Store,
    StoreFull,
    StoreHealth,
    WriteBehindStore,
)
from web.app import create_app
from web.config import WebConfig
from web.lowlatency import Waiters
from web.tcp import HttpServerConfig

log = logging.getLogger("gateway")

POLL_INTERVAL = 0.5  # seconds between segmenter housekeeping runs (ENDLIST grace, expiry)


@dataclass(frozen=True)
class Bound:
    """Where the listeners ended up (port 0 in settings picks a free port)."""

    rtmp: list[tuple[str, int]]  # empty with rtmp_port -1
    http: list[str]
    rtmps: list[tuple[str, int]] = field(default_factory=list)  # empty without tls_cert

    @property
    def rtmp_port(self) -> int:
        return self.rtmp[0][1]

    @property
    def rtmps_port(self) -> int:
        return self.rtmps[0][1]

    @property
    def http_url(self) -> str:
        return self.http[0]


def segmenter_config(settings: Settings) -> SegmenterConfig:
    return SegmenterConfig(
        target_duration=settings.hls_target_duration,
        max_segment_duration=settings.hls_max_segment_duration,
        window_segments=settings.hls_window,
        end_grace=settings.hls_end_grace,
        formats=hls_formats(settings),
        part_duration=settings.hls_part_duration,
        max_renditions=settings.hls_max_renditions,
    )


def make_store(settings: Settings, health: StoreHealth | None = None) -> Store:
    """The store the settings ask for; its write failures (and recoveries) go to ``health``."""
    if not settings.hls_dir:
        return MemoryStore(settings.hls_memory_max_bytes, health=health)
    if settings.hls_write_queue_bytes == 0:
        return DiskStore(Path(settings.hls_dir), health=health)
    return WriteBehindStore(
        DiskStore(Path(settings.hls_dir)),
        max_pending_bytes=settings.hls_write_queue_bytes,
        log=logging.getLogger("gateway.store"),
        health=health,
    )


@dataclass(eq=False)
class Gateway:
    """Holds what the tasks share; :func:`run_gateway` drives it."""

    settings: Settings
    store: Store
    metrics: Metrics = field(default_factory=Metrics)
    hub: Hub = field(init=False)
    relays: RelayManager = field(init=False)
    pulls: PullManager = field(init=False)
    lives: dict[str, LiveStream] = field(default_factory=dict)
    transcoders: dict[str, StreamTranscoder] = field(default_factory=dict)  # by stream path
    waiters: Waiters = field(default_factory=Waiters)  # LL-HLS requests waiting for a part
    bound: Bound | None = None
    access: AccessControl | None = None
    # Whether the store's writes succeed (the store records into it): /healthz and /metrics.
    health: StoreHealth = field(
        default_factory=lambda: StoreHealth(logging.getLogger("gateway.store"))
    )
    _segmenters: trio.Nursery | None = None

    def __post_init__(self) -> None:
        self.hub = Hub(
            on_stream_started=self._start_segmenter,
            gop_cache_bytes=self.settings.gop_cache_bytes,
            play_write_interval=self.settings.rtmp_play_write_interval,
            takeover_after=self.settings.publish_takeover_after,
        )
        self.relays = RelayManager(self.settings, self.hub, self.metrics)
        self.pulls = PullManager(self.settings, self.hub)
        self.metrics.store_healthy.set_function(lambda: 0.0 if self.health.failure else 1.0)

    # --- StatusSource for the web app -----------------------------------------------------
    def streams(self) -> list[dict[str, Any]]:
        return [self._describe(s) for s in self.hub.streams.values()]

    def stream(self, app: str, key: str) -> dict[str, Any] | None:
        s = self.hub.get(app, key)
        return None if s is None else self._describe(s)

    def live_playlist(self, app: str, key: str, file: str) -> LivePlaylist | None:
        """LiveSource for the web app: an LL-HLS playlist of a stream segmented here (the
        one named ``file``, or the one part ``file`` belongs to)."""
        live = self.lives.get(f"{app}/{key}")
        return live.live_playlist(file) if live is not None else None

    def missing_reason(self, app: str, key: str, file: str) -> str | None:
        """LiveSource: why a file of a stream segmented here is not made (ts.m3u8 of AV1...)."""
        live = self.lives.get(f"{app}/{key}")
        return live.missing_reason(file) if live is not None else None

    def live_part(self, app: str, key: str, file: str) -> bytes | None:
        """LiveSource: an LL-HLS part of a stream segmented here (parts live in memory)."""
        live = self.lives.get(f"{app}/{key}")
        return live.part(file) if live is not None else None

    def _describe(self, s: Stream) -> dict[str, Any]:
        live = self.lives.get(s.path)
        info: dict[str, Any] = dict(live.stats()) if live is not None else {}
        pub = s.publisher
        info.update(
            app=s.app,
            key=s.key,
            publisher=pub.peer if pub else None,
            started_at=(
                datetime.fromtimestamp(pub.started_at, UTC).isoformat(timespec="seconds")
                if pub
                else None
            ),
            uptime=(trio.current_time() - pub.monotonic_start) if pub else None,
            sessions=s.sessions,
            bytes_in=s.bytes_in,
            subscribers=len(s.subscribers),
            players=[p.describe() for p in sorted(s.players, key=lambda p: p.peer)],
            dropped=info.get("dropped", 0) + sum(sub.dropped for sub in s.subscribers),
            relays=self.relays.relays_for(s.path),
            pulls=self.pulls.pulls_for(s.path),
        )
        if s.path in self.transcoders:
            info["transcode"] = self.transcoders[s.path].describe()
        if pub is None and info.get("state", "live") == "live":
            info["state"] = "waiting"  # publisher gone (grace running), or players waiting
        return info

    # --- segmenters -------------------------------------------------------------------------
    def _start_segmenter(self, stream: Stream) -> None:
        """Called at every publish start: starts the stream's segmenter unless it runs."""
        assert self._segmenters is not None, "segmenter nursery not running"
        if stream.path in self.lives:
            return
        live = LiveStream(
            stream.path,
            self.store,
            segmenter_config(self.settings),
            on_segment=self._on_segment,
            log=logging.getLogger(f"segmenter.{stream.path}"),
            on_update=partial(self.waiters.notify, stream.path),
        )
        self.lives[stream.path] = live
        # The segmenter is a sink: it runs in the publisher's task, tag by tag (no queue to
        # overflow, no task switch per tag). Attached now, synchronously, so the session's first
        # tags are not missed; its task only does housekeeping and the final ENDLIST.
        sink = partial(self._feed, stream, live)
        self.hub.add_sink(stream, sink)
        transcoder = self._transcoder(stream, live)
        self._segmenters.start_soon(self._run_segmenter, stream, sink, live, transcoder)
        self.relays.start(stream, self._segmenters)  # push relays share the segmenters' nursery

    def _transcoder(self, stream: Stream, live: LiveStream) -> StreamTranscoder | None:
        """The stream's transcoding ladder, if a ``transcode`` rule names it: a second sink,
        after the segmenter's, whose rungs come back to the segmenter as more video tracks."""
        rules = parse_transcode(
            self.settings.transcode, max_rungs=self.settings.transcode_max_rungs
        )
        rule = rule_for(rules, stream.app, stream.key)
        if rule is None:
            return None
        transcoder = StreamTranscoder(
            stream.path,
            rule.rungs,
            queue_frames=self.settings.transcode_queue,
            preset=self.settings.transcode_preset,
            feed=partial(self._feed, stream, live),
        )
        self.transcoders[stream.path] = transcoder
        self.hub.add_sink(stream, transcoder.sink)
        return transcoder

    def _on_segment(self, info: SegmentInfo) -> None:
        self.metrics.segments.inc()
        self.metrics.segment_duration.observe(info.duration)

    async def _run_segmenter(
        self, stream: Stream, sink: Sink, live: LiveStream, transcoder: StreamTranscoder | None
    ) -> None:
        try:
            while True:
                await trio.sleep(POLL_INTERVAL)
                now = trio.current_time()
                live.poll(now)
                if transcoder is not None:
                    transcoder.reap()  # join the rung threads of an ended session
                if stream.publisher is None and live.retirable(now, self.settings.hls_retention):
                    # Ended long enough ago: free the segments and this task; the numbering
                    # stays in the store for the next publisher (LiveStream resumes from it).
                    live.retire(now)
                    log.info("%s: retired after %g s ended", live.path, self.settings.hls_retention)
                    return
        finally:
            # Shutdown (ingest is already stopped) or retirement: end the playlist (ENDLIST).
            self.hub.remove_sink(stream, sink)
            if transcoder is not None:
                self.hub.remove_sink(stream, transcoder.sink)
                await transcoder.aclose()  # shielded, with a deadline
                if self.transcoders.get(live.path) is transcoder:
                    del self.transcoders[live.path]
            live.close(trio.current_time())
            if self.lives.get(live.path) is live:
                del self.lives[live.path]
            self.hub.discard_if_idle(stream)

    def _feed(self, stream: Stream, live: LiveStream, item: HubItem) -> None:
        now = trio.current_time()
        try:
            if isinstance(item, FlvTag):
                if item.type is TagType.SCRIPT:
                    _metadata(live, item)
                live.feed(item, now)
            elif isinstance(item, SessionStart):
                pub = stream.publisher
                live.begin_session(now, pub.peer if pub is not None else "")
            elif isinstance(item, SessionEnd):
                live.end_session(now)
        except OSError as exc:
            if isinstance(exc, StoreFull):
                # Memory cap reached: this segment is lost, the stream and the others go on
                # (the store's health logged the outage once).
                self.metrics.store_refused.inc()
            if self.health.failure is None:  # not the store's (it records and logs its own)
                log.exception("%s: segmenter failed on %s", live.path, type(item).__name__)
            else:
                log.debug("%s: %s", live.path, exc)
        except Exception:
            # Contain a segmenter bug to this stream's tag; ingest and other streams go on.
            log.exception("%s: segmenter failed on %s", live.path, type(item).__name__)


def _metadata(live: LiveStream, tag: FlvTag) -> None:
    """onMetaData's properties to the segmenter (per-track names and languages of a
    multitrack publish); the segmenter reads no AMF itself."""
    try:
        values = amf0.decode_all(tag.body)
    except Exception:  # a publisher's broken metadata only loses its track names
        return
    if len(values) >= 2 and values[0] == "onMetaData" and isinstance(values[1], dict):
        live.metadata(values[1])


async def _watch_signals(stop: trio.Event) -> None:
    # SIGHUP (the terminal closed) would otherwise end the process at once, playlists left live.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async for signum in signals:
            log.info("received %s: shutting down", signal.Signals(signum).name)
            stop.set()
            return


async def run_gateway(
    settings: Settings,
    *,
    stop: trio.Event | None = None,
    handle_signals: bool = True,
    task_status: trio.TaskStatus[Gateway] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run until ``stop`` is set (or SIGINT/SIGTERM/SIGHUP), then shut down gracefully."""
    stop = stop if stop is not None else trio.Event()
    health = StoreHealth(logging.getLogger("gateway.store"))
    gw = Gateway(settings, make_store(settings, health), health=health)
    access = AccessControl(settings, gw.metrics.registry)
    gw.access = access
    for name in end_stale_playlists(gw.store):
        log.info("%s: ended a live playlist left by a previous run", name)
    web_app = create_app(
        gw.store,
        gw,
        config=WebConfig(
            cors_origins=tuple(o.strip() for o in settings.cors_origins.split(",") if o.strip()),
            # A disk read may block on slow storage: keep it off the event loop that runs ingest.
            read_in_thread=bool(settings.hls_dir),
            max_requests_per_ip=settings.http_max_requests_per_ip,
        ),
        registry=gw.metrics.registry,
        live=gw,
        waiters=gw.waiters,
        gate=access,
        health=gw.health,
    )
    hconfig = HttpServerConfig()
    hconfig.send_timeout = settings.http_send_timeout
    hconfig.bind = [f"{_bracket(settings.host)}:{settings.http_port}"]
    hconfig.graceful_timeout = settings.shutdown_timeout
    hconfig.read_timeout = settings.http_read_timeout
    hconfig.keep_alive_timeout = settings.http_keep_alive_timeout
    hconfig.backlog = settings.http_backlog
    if settings.tls_cert:
        # hypercorn then offers h2 and http/1.1 by ALPN on the same port.
        hconfig.certfile, hconfig.keyfile = settings.tls_cert, settings.tls_key
    hconfig.accesslog = None
    hconfig.errorlog = logging.getLogger("hypercorn.error")
    http_stop = trio.Event()

    try:
        async with trio.open_nursery() as root:
            if handle_signals:
                root.start_soon(_watch_signals, stop)
            await root.start(access.run)  # loads a JWKS before anyone is asked
            async with trio.open_nursery() as http:
                try:
                    http_bound = await http.start(
                        partial(hypercorn_serve, web_app, hconfig, shutdown_trigger=http_stop.wait)
                    )
                except* OSError as group:  # hypercorn binds inside its own nursery
                    first: BaseException = group
                    while isinstance(first, BaseExceptionGroup):
                        first = first.exceptions[0]
                    why = getattr(first, "strerror", None) or str(first)
                    where = hconfig.bind[0]
                    raise OSError(
                        getattr(first, "errno", None), f"cannot listen for HTTP on {where}: {why}"
                    ) from None
                async with trio.open_nursery() as segmenters:
                    gw._segmenters = segmenters
                    gw.pulls.start(segmenters)  # pulled streams publish into the hub like any other
                    async with trio.open_nursery() as ingest:
                        listening = await ingest.start(
                            serve_rtmp, settings, gw.hub, gw.metrics, access
                        )
                        gw.bound = Bound(
                            [(a.host, a.port) for a in listening if a.protocol == "rtmp"],
                            http_bound,
                            [(a.host, a.port) for a in listening if a.protocol == "rtmps"],
                        )
                        log.info(
                            "gateway listening: %s, http %s, store %s",
                            _addresses(gw.bound),
                            ", ".join(http_bound),
                            settings.hls_dir or "memory",
                        )
                        task_status.started(gw)
                        await stop.wait()
                        # Graceful order: stop ingest (publish slots are released), then end the
                        # playlists (segmenters flush and add EXT-X-ENDLIST), then drain HTTP.
                        ingest.cancel_scope.cancel()
                    segmenters.cancel_scope.cancel()
                http_stop.set()
                http.cancel_scope.deadline = trio.current_time() + settings.shutdown_timeout + 1
            root.cancel_scope.cancel()
    finally:
        # Queued disk writes (the last segments, ENDLIST) are done before we return.
        timeout = settings.shutdown_timeout
        if isinstance(gw.store, WriteBehindStore) and not gw.store.close(timeout=timeout):
            log.error("store: writes still queued after %g s of shutdown", timeout)
    log.info("gateway stopped")


def _addresses(bound: Bound) -> str:
    """'rtmp H:P, rtmps H:P' for the start line; a listener that is off is not named."""
    parts = [
        f"{name} " + ", ".join(f"{_bracket(h)}:{p}" for h, p in addresses)
        for name, addresses in (("rtmp", bound.rtmp), ("rtmps", bound.rtmps))
        if addresses
    ]
    return ", ".join(parts)


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
