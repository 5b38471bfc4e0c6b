"""The composition root: RTMP server, one segmenter task per stream and hypercorn in one trio run.

Task tree (every task has an owner):
    run_gateway
    +-- signal watcher (SIGINT/SIGTERM -> graceful shutdown; SIGHUP -> reload the settings)
    +-- RTMP server (own cancel scope: stopped first on shutdown)
    |     +-- one task per connection
    +-- segmenters (own nursery: one housekeeping task per stream; the segmenting itself runs
    |                in the publisher's task as a hub sink; the retirement of ended playlists
    |                an earlier run left, gateway.janitor)
    +-- hypercorn (Quart app; drained last)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import trio
from hypercorn.trio import serve as hypercorn_serve
from prometheus_client import CollectorRegistry

from gateway.access import AccessControl
from gateway.backpressure import WriteGate, watch_write_queue
from gateway.bus import SUPERVISOR, Reload
from gateway.cluster import Cluster, ReplicatingStore
from gateway.config import ConfigError, Settings, hls_formats
from gateway.hub import Hub, HubItem, SessionEnd, SessionStart, Sink, Stream
from gateway.janitor import retire_ended, sweep_store
from gateway.metrics import Metrics, StreamCollector, StreamFigures
from gateway.pull import PullManager
from gateway.relay import RelayManager
from gateway.reload import ReloadPlan, plan_reload
from gateway.rtmp import amf0
from gateway.s3store import S3Config, S3Store
from gateway.server import Sessions, serve_rtmp
from gateway.signals import watch_signals
from gateway.transcode import StreamTranscoder
from gateway.transcode_config import parse_transcode, rule_for
from gateway.workerside import ClusterStatus, WorkerSide
from segmenter.flv import FlvTag, TagType
from segmenter.live import LiveStream, SegmenterConfig, SegmentInfo, end_stale_playlists
from segmenter.playlist import LivePlaylist
from segmenter.s3 import kind_of, parse_s3_url
from segmenter.store import (
    DiskStore,
    MemoryStore,
    Store,
    StoreFull,
    StoreHealth,
    WriteBehindStore,
)
from segmenter.sweep import EndedPlaylist
from web.app import create_app
from web.config import WebConfig
from web.hls import playlist_cache_control, segment_cache_control
from web.lowlatency import Waiters
from web.names import PLAYLIST_MIME, segment_mime
from web.tcp import HttpServerConfig, reuseport_socket
from web.viewers import Viewers

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
        public_base=settings.hls_public_base_url,
    )


def make_store(settings: Settings, health: StoreHealth | None = None) -> Store:
    """The store the settings ask for; its write failures (and recoveries) go to ``health``."""
    if settings.hls_s3_url:
        return make_s3_store(settings, health or StoreHealth(logging.getLogger("gateway.store")))
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


def make_s3_store(settings: Settings, health: StoreHealth) -> S3Store:
    """The bucket of ``hls_s3_url`` behind a memory copy capped like the memory store."""
    config = S3Config(
        location=parse_s3_url(settings.hls_s3_url),
        endpoint_url=settings.s3_endpoint_url,
        request_timeout=settings.s3_request_timeout,
        max_in_flight=settings.s3_max_in_flight,
        max_pending_bytes=settings.s3_queue_bytes,
        retry_base_delay=settings.s3_retry_base_delay,
        retry_max_delay=settings.s3_retry_max_delay,
    )
    memory = MemoryStore(settings.hls_memory_max_bytes)  # S3Store records its failures
    return S3Store(config, memory, health, headers=object_headers)


def object_headers(name: str, web: WebConfig = WebConfig()) -> dict[str, str]:
    """Content-Type and Cache-Control of an object in the bucket: what the gateway's own HTTP
    answers for it (web.hls), so a CDN caches segments long and playlists briefly alike."""
    if kind_of(name) == "playlist":
        return {
            "Content-Type": PLAYLIST_MIME,
            "Cache-Control": playlist_cache_control(web.playlist_max_age),
        }
    return {
        "Content-Type": segment_mime(name),
        "Cache-Control": segment_cache_control(web.segment_max_age),
    }


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
    rtmp_sessions: Sessions = field(default_factory=Sessions)  # for the reconnect request
    # Whether the store's writes succeed (the store records into it): /healthz and /metrics.
    health: StoreHealth = field(
        default_factory=lambda: StoreHealth(logging.getLogger("gateway.store"))
    )
    viewers: Viewers = field(init=False)
    # With worker processes: this worker's side of the link (gateway.workerside).
    side: WorkerSide | None = None
    _segmenters: trio.Nursery | None = None
    _segmenter_scopes: dict[str, trio.CancelScope] = field(default_factory=dict)
    _abandoned: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.viewers = Viewers(self.settings.hls_viewer_window)
        self.metrics.registry.register(
            StreamCollector(self._figures, lambda: self.settings.metrics_per_stream)
        )
        self.hub = Hub(
            on_stream_started=self._start_segmenter,
            gop_cache_bytes=self.settings.gop_cache_bytes,
            track_headers_bytes=self.settings.track_headers_bytes,
            play_write_interval=self.settings.rtmp_play_write_interval,
            takeover_after=self.settings.publish_takeover_after,
        )
        self.relays = RelayManager(self.settings, self.hub, self.metrics)
        self.pulls = PullManager(self.settings, self.hub)
        self.metrics.store_healthy.set_function(lambda: 0.0 if self.health.failure else 1.0)
        if isinstance(self.store, WriteBehindStore):
            self.hub.write_gate = watch_write_queue(
                self.store,
                self.metrics,
                warn_after=self.settings.hls_write_stall_warn,
                drop_after=self.settings.hls_write_stall_timeout,
            )
        elif isinstance(s3 := self.base_store, S3Store):
            s3.observe_with(self.metrics)
            s3.on_uploaded = self._published
            self.hub.write_gate = WriteGate(
                s3,
                self.metrics,
                warn_after=self.settings.hls_write_stall_warn,
                drop_after=self.settings.hls_write_stall_timeout,
                queue_name="S3 upload",
                limit="s3_queue_bytes",
                slow="the S3 store",
            )

    @property
    def base_store(self) -> Store:
        """The store itself, under the copying to other workers (gateway.cluster)."""
        return self.store.inner if isinstance(self.store, ReplicatingStore) else self.store

    # --- StatusSource for the web app -----------------------------------------------------
    def streams(self) -> list[dict[str, Any]]:
        return [self._describe(s) for s in self.hub.streams.values()]

    def stream(self, app: str, key: str) -> dict[str, Any] | None:
        s = self.hub.get(app, key)
        return None if s is None else self._describe(s)

    def local_streams(self) -> list[dict[str, Any]]:
        """Streams this worker holds (a stream relayed here for players is marked)."""
        return self.streams()

    def viewer_counts(self) -> dict[str, int]:
        return self.viewers.counts()

    def viewer_count(self, path: str) -> int:
        return self.viewers.count(path)

    @property
    def registry(self) -> CollectorRegistry:
        return self.metrics.registry

    @property
    def retention(self) -> float:
        return self.settings.hls_retention

    def live_playlist(self, app: str, key: str, file: str) -> LivePlaylist | None:
        """LiveSource for the web app: an LL-HLS playlist of a stream segmented here (the
        one named ``file``, or the one part ``file`` belongs to), or by another worker."""
        live = self.lives.get(f"{app}/{key}")
        if live is not None:
            return live.live_playlist(file)
        if self.side is None:
            return None
        self.side.live_wanted(f"{app}/{key}")
        return self.side.mirror.live_playlist(f"{app}/{key}", file)

    def missing_reason(self, app: str, key: str, file: str) -> str | None:
        """LiveSource: why a file of a stream segmented here is not made (ts.m3u8 of AV1...)."""
        live = self.lives.get(f"{app}/{key}")
        if live is not None:
            return live.missing_reason(file)
        return self.side.mirror.missing_reason(f"{app}/{key}", file) if self.side else None

    def live_part(self, app: str, key: str, file: str) -> bytes | None:
        """LiveSource: an LL-HLS part of a stream segmented here (parts live in memory)."""
        live = self.lives.get(f"{app}/{key}")
        if live is not None:
            return live.part(file)
        if self.side is None:
            return None
        self.side.live_wanted(f"{app}/{key}")
        return self.side.mirror.part(f"{app}/{key}", file)

    def made_elsewhere(self, app: str, key: str) -> bool:
        """LiveSource: another worker makes the stream (its files reach this one as copies)."""
        if self.side is None or f"{app}/{key}" in self.lives:
            return False
        owner = self.side.cluster.owner_of(f"{app}/{key}")
        return owner is not None and owner != self.side.cluster.index

    def abandon(self, path: str) -> None:
        """Another worker's publisher took ``path`` over: stop segmenting it here without
        writing (its segmenter resumes from the store)."""
        scope = self._segmenter_scopes.get(path)
        if scope is not None:
            self._abandoned.add(path)
            scope.cancel()

    def _figures(self) -> list[StreamFigures]:
        return [
            StreamFigures(
                s.app,
                s.key,
                self.viewers.count(s.path),
                len(s.players),
                s.bytes_in,
                self._dropped(s),
            )
            for s in self.hub.streams.values()
        ]

    def _dropped(self, s: Stream) -> int:
        live = self.lives.get(s.path)
        lost = int(live.stats().get("dropped", 0)) if live is not None else 0
        return lost + sum(sub.dropped for sub in s.subscribers)

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
            viewers=self.viewers.count(s.path),
            relays=self.relays.relays_for(s.path),
            pulls=self.pulls.pulls_for(s.path),
        )
        if s.path in self.transcoders:
            info["transcode"] = self.transcoders[s.path].describe()
        if self.side is not None and self.side.relayed_here(s.path):
            info["relayed_from"] = self.side.relayed_from(s.path)  # for players here
        if pub is None and info.get("state", "live") == "live":
            info["state"] = "waiting"  # publisher gone (grace running), or players waiting
        return info

    # --- reload ----------------------------------------------------------------------------
    def reconfigure(self, loaded: Settings) -> ReloadPlan:
        """Run with reloaded settings (SIGHUP) without touching a running stream: limits apply
        to new connections, HLS settings to new streams, access settings to the next request;
        push and pull relays follow their rules (unchanged ones keep running). Settings only a
        restart can change keep their running value; the plan names both kinds."""
        plan = plan_reload(self.settings, loaded)
        self.settings = new = plan.settings
        logging.getLogger().setLevel(new.log_level.upper())
        self.viewers.window = new.hls_viewer_window
        self.hub.configure(
            gop_cache_bytes=new.gop_cache_bytes,
            track_headers_bytes=new.track_headers_bytes,
            play_write_interval=new.rtmp_play_write_interval,
            takeover_after=new.publish_takeover_after,
        )
        if self.hub.write_gate is not None:  # publishers' waits from their next pause on
            self.hub.write_gate.warn_after = new.hls_write_stall_warn
            self.hub.write_gate.drop_after = new.hls_write_stall_timeout
        if self.access is not None:
            self.access.reconfigure(new)
        if self._segmenters is not None:
            streams = [s for s in self.hub.streams.values() if s.path in self.lives]
            self.relays.reconfigure(new, streams, self._segmenters)
            self.pulls.reconfigure(new)
        return plan

    # --- segmenters -------------------------------------------------------------------------
    def _start_segmenter(self, stream: Stream) -> None:
        """Called at every publish start: starts the stream's segmenter unless it runs."""
        assert self._segmenters is not None, "segmenter nursery not running"
        if self.side is not None:
            if self.side.relayed_here(stream.path):
                return  # another worker's stream, relayed for players: segmented there
            self.side.claimed(stream.path, live=True)
        if stream.path in self.lives:
            return
        # With hls_public_base_url, playlists point at the bucket only for what it holds.
        s3 = self.base_store if isinstance(self.base_store, S3Store) else None
        live = LiveStream(
            stream.path,
            self.store,
            segmenter_config(self.settings),
            on_segment=self._on_segment,
            log=logging.getLogger(f"segmenter.{stream.path}"),
            on_update=partial(self._updated, stream.path),
            published=s3.uploaded if s3 is not None and self.settings.hls_public_base_url else None,
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

    def _updated(self, path: str) -> None:
        self.waiters.notify(path)
        if self.side is not None:
            self.side.updated(path)

    def _published(self, name: str) -> None:
        """S3Store: ``name`` (app/key/file) is in the bucket; its stream's playlists may point
        there now (hls_public_base_url)."""
        path, _, file = name.rpartition("/")
        live = self.lives.get(path)
        if live is not None:
            live.published_now(file)

    def _on_segment(self, info: SegmentInfo) -> None:
        self.metrics.segments.inc()
        self.metrics.segment_duration.observe(info.duration)

    async def _run_segmenter(
        self, stream: Stream, sink: Sink, live: LiveStream, transcoder: StreamTranscoder | None
    ) -> None:
        retention = self.settings.hls_retention  # the stream's own, as its segmenter config
        abandoned = False
        scope = trio.CancelScope()
        try:
            with scope:
                self._segmenter_scopes[live.path] = scope
                while True:
                    await trio.sleep(POLL_INTERVAL)
                    now = trio.current_time()
                    live.poll(now)
                    if transcoder is not None:
                        transcoder.reap()  # join the rung threads of an ended session
                    if stream.publisher is None and live.retirable(now, retention):
                        # Ended long enough ago: free the segments and this task; the numbering
                        # stays in the store for the next publisher (LiveStream resumes from it).
                        live.retire(now)
                        log.info("%s: retired after %g s ended", live.path, retention)
                        return
        finally:
            if self._segmenter_scopes.get(live.path) is scope:
                del self._segmenter_scopes[live.path]
            abandoned = live.path in self._abandoned
            self._abandoned.discard(live.path)
            # Shutdown (ingest is already stopped) or retirement: end the playlist (ENDLIST).
            self.hub.remove_sink(stream, sink)
            if transcoder is not None:
                self.hub.remove_sink(stream, transcoder.sink)
                await transcoder.aclose()  # shielded, with a deadline
                if self.transcoders.get(live.path) is transcoder:
                    del self.transcoders[live.path]
            if not abandoned:
                live.close(trio.current_time())
            if self.lives.get(live.path) is live:
                del self.lives[live.path]
            if self.side is not None and not abandoned:
                self.side.released(live.path)
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
                if self.side is not None:
                    self.side.claimed(stream.path, live=False)
        except OSError as exc:
            if isinstance(exc, StoreFull):
                # Memory cap reached: this segment is lost, the stream and the others go on
                # (the store's health logged the outage once).
                self.metrics.store_refused.inc()
            if self.health.failure is None:  # not the store's (it records and logs its own)
                log.exception(
                    "%s: segmenter failed on %s",
                    live.path,
                    type(item).__name__,
                    extra=_segment_failure(stream, exc),
                )
            else:
                log.debug("%s: %s", live.path, exc)
        except Exception as exc:
            # Contain a segmenter bug to this stream's tag; ingest and other streams go on.
            log.exception(
                "%s: segmenter failed on %s",
                live.path,
                type(item).__name__,
                extra=_segment_failure(stream, exc),
            )


def _segment_failure(stream: Stream, exc: BaseException) -> dict[str, object]:
    cause = f"{type(exc).__name__}: {exc}"
    return {"event": "segment_failed", "app": stream.app, "key": stream.key, "cause": cause}


Reloader = Callable[[], Settings]


def reload_settings(gw: Gateway, reloader: Reloader | None) -> ReloadPlan | None:
    """SIGHUP: load the settings again and apply them; a bad file changes nothing (logged)."""
    if reloader is None:
        log.warning("received SIGHUP: no configuration source to reload, nothing changed")
        return None
    try:
        loaded = reloader()
    except ConfigError as exc:
        log.error(
            "configuration reload refused, the running settings stay: %s",
            exc,
            extra={"event": "reload_refused", "cause": str(exc)},
        )
        return None
    plan = gw.reconfigure(loaded)
    for name in plan.needs_restart:
        # No values: some of these are secrets (playback_secret).
        log.warning(
            "configuration reload: %s changed but needs a restart; the running value stays",
            name,
            extra={"event": "reload_needs_restart", "setting": name},
        )
    log.info(
        "configuration reloaded: %s",
        ", ".join(plan.applied) if plan.applied else "no change",
        extra={"event": "reload", "changed": list(plan.applied)},
    )
    return plan


def _metadata(live: LiveStream, tag: FlvTag) -> None:
    """onMetaData's properties to the segmenter (per-track names and languages of a
    multitrack publish); the segmenter reads no AMF itself."""
    try:
        values = amf0.decode_all(tag.body)
    except Exception:  # a publisher's broken metadata only loses its track names
        return
    if len(values) >= 2 and values[0] == "onMetaData" and isinstance(values[1], dict):
        live.metadata(values[1])


async def run_gateway(
    settings: Settings,
    *,
    stop: trio.Event | None = None,
    handle_signals: bool = True,
    reloader: Reloader | None = None,
    store_factory: Callable[[Settings, StoreHealth], Store] = make_store,
    cluster: Cluster | None = None,
    task_status: trio.TaskStatus[Gateway] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run until ``stop`` is set (or SIGINT/SIGTERM), then shut down gracefully. SIGHUP
    applies the settings ``reloader`` loads (see :meth:`Gateway.reconfigure`).
    ``store_factory``: how the store is made (tests wrap a slow one). ``cluster``: this is
    one worker process of several (gateway.supervisor listens, sweeps and restarts)."""
    stop = stop if stop is not None else trio.Event()
    health = StoreHealth(logging.getLogger("gateway.store"))
    store = store_factory(settings, health)
    if cluster is not None and not settings.hls_dir:
        # Every worker holds every stream's HLS; other workers' copies go to the memory copy
        # only (an S3 store's owner uploads, the others must not).
        copies = store.memory if isinstance(store, S3Store) else store
        store = ReplicatingStore(store, cluster, copies=copies)
    gw = Gateway(settings, store, health=health)
    access = AccessControl(settings, gw.metrics.registry)
    gw.access = access
    ended: list[EndedPlaylist] = []
    if cluster is None:  # the supervisor sweeps a directory its workers share
        ended = await sweep_store(gw.store)  # before anything is written: see segmenter.sweep
        for name in end_stale_playlists(gw.store):
            log.info("%s: ended a live playlist left by a previous run", name)
    else:
        gw.side = WorkerSide(cluster, gw, gw.waiters.notify)
        gw.hub.elsewhere = cluster.owner_elsewhere
        gw.hub.on_lookup = gw.side.want
        cluster.on(Reload, lambda _s, m: _reload_from(gw, m))
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
        viewers=gw.viewers,
        whole=ClusterStatus(cluster, gw) if cluster is not None else None,
    )
    hconfig = HttpServerConfig()
    hconfig.send_timeout = settings.http_send_timeout
    hconfig.bind = [f"{_bracket(settings.host)}:{settings.http_port}"]
    hconfig.graceful_timeout = settings.shutdown_timeout
    hconfig.read_timeout = settings.http_read_timeout
    hconfig.keep_alive_timeout = settings.http_keep_alive_timeout
    hconfig.backlog = settings.http_backlog
    if cluster is not None:
        # The workers bind the port side by side (the supervisor holds it) and the kernel
        # spreads connections over them; hypercorn takes the socket's descriptor over.
        shared = reuseport_socket(settings.host, settings.http_port)
        hconfig.bind = [f"fd://{shared.detach()}"]
    if settings.tls_cert:
        # hypercorn then offers h2 and http/1.1 by ALPN on the same port.
        hconfig.certfile, hconfig.keyfile = settings.tls_cert, settings.tls_key
    hconfig.accesslog = None
    hconfig.errorlog = logging.getLogger("hypercorn.error")
    http_stop = trio.Event()

    try:
        async with trio.open_nursery() as root:
            if handle_signals:
                root.start_soon(watch_signals, stop, partial(reload_settings, gw, reloader), log)
            if cluster is not None:
                await root.start(cluster.run)
                root.start_soon(_stop_when_closed, cluster, stop)
            await root.start(access.run)  # loads a JWKS before anyone is asked
            s3 = gw.base_store if isinstance(gw.base_store, S3Store) else None
            if s3 is not None:
                await root.start(s3.run)  # credentials resolved before anything is published
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
                    segmenters.start_soon(
                        retire_ended, gw.store, ended, settings.hls_retention, gw.lives.__contains__
                    )
                    if gw.side is not None:
                        segmenters.start_soon(gw.side.run, segmenters)
                    if cluster is None or cluster.index == 0:  # one worker pulls, for everyone
                        gw.pulls.start(segmenters)  # pulled streams publish into the hub
                    async with trio.open_nursery() as ingest:
                        listening = await ingest.start(
                            partial(
                                serve_rtmp,
                                sessions=gw.rtmp_sessions,
                                current=lambda: gw.settings,
                                incoming=cluster.incoming if cluster is not None else None,
                            ),
                            settings,
                            gw.hub,
                            gw.metrics,
                            access,
                        )
                        gw.bound = Bound(
                            [(a.host, a.port) for a in listening if a.protocol == "rtmp"],
                            http_bound,
                            [(a.host, a.port) for a in listening if a.protocol == "rtmps"],
                        )
                        if cluster is not None:
                            log.info(
                                "worker %d ready: http %s", cluster.index, ", ".join(http_bound)
                            )
                        else:
                            log.info(
                                "gateway listening: %s, http %s, store %s",
                                _addresses(gw.bound),
                                ", ".join(http_bound),
                                settings.hls_s3_url or settings.hls_dir or "memory",
                            )
                        task_status.started(gw)
                        if cluster is not None:
                            cluster.send(SUPERVISOR, "ready")
                        await stop.wait()
                        # E-RTMP v2: publishers that can are asked to reconnect (elsewhere:
                        # new connections are refused from now on) before ingest stops.
                        await gw.rtmp_sessions.request_reconnects(
                            gw.settings.reconnect_request_wait, "The gateway is shutting down."
                        )
                        # Graceful order: stop ingest (publish slots are released), then end the
                        # playlists (segmenters flush and add EXT-X-ENDLIST), then drain HTTP.
                        ingest.cancel_scope.cancel()
                    segmenters.cancel_scope.cancel()
                if s3 is not None:
                    # The ended playlists (and what they name) reach the bucket while HTTP drains.
                    with trio.move_on_after(settings.shutdown_timeout):
                        await s3.drain()
                    if len(s3.queue):
                        log.error(
                            "store: %d S3 uploads still queued after %g s of shutdown",
                            len(s3.queue),
                            settings.shutdown_timeout,
                        )
                http_stop.set()
                http.cancel_scope.deadline = trio.current_time() + settings.shutdown_timeout + 1
            root.cancel_scope.cancel()
    finally:
        # Queued disk writes (the last segments, ENDLIST) are done before we return.
        timeout = settings.shutdown_timeout
        if isinstance(gw.store, WriteBehindStore) and not gw.store.close(timeout=timeout):
            log.error("store: writes still queued after %g s of shutdown", timeout)
    log.info("gateway stopped")


def _reload_from(gw: Gateway, message: Reload) -> None:
    """A worker's SIGHUP: the settings the supervisor loaded again."""
    reload_settings(gw, lambda: message.settings)


async def _stop_when_closed(cluster: Cluster, stop: trio.Event) -> None:
    """A worker whose supervisor went away stops (gracefully) too."""
    await cluster.closed.wait()
    stop.set()


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
