"""Gateway settings: every limit is a named, documented field with a safe default.

Sources, lowest to highest precedence: the defaults below, a TOML file (``--config FILE``),
environment variables ``GATEWAY_<FIELD>`` (upper case), command-line flags ``--field-name``.
Values are validated
at start; an error names the key and the source it came from.
"""

from __future__ import annotations

import dataclasses
import difflib
import errno
import os
import ssl
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.errors import ConfigError as ConfigError  # re-exported: raised for every setting
from gateway.relay_config import parse_pull, parse_push
from gateway.transcode_config import parse_transcode
from segmenter.s3 import parse_s3_url

# x264's presets, fastest first (x264 --fullhelp).
X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
)


def _doc(text: str, *, minimum: float | None = None, maximum: float | None = None) -> Any:
    return {"doc": text, "min": minimum, "max": maximum}


@dataclass(frozen=True)
class Settings:
    # --- listeners -----------------------------------------------------------------------------
    host: str = field(default="0.0.0.0", metadata=_doc("Address every listener binds to."))
    rtmp_port: int = field(
        default=1935,
        metadata=_doc(
            "RTMP ingest port (0 = any free port; -1 = no plain RTMP, RTMPS only).",
            minimum=-1,
            maximum=65535,
        ),
    )
    rtmps_port: int = field(
        default=1936,
        metadata=_doc(
            "RTMPS (RTMP over TLS) port, listened on when tls_cert and tls_key are set "
            "(0 = any free port).",
            minimum=0,
            maximum=65535,
        ),
    )
    http_port: int = field(
        default=8080, metadata=_doc("HTTP port for HLS, API and player.", minimum=0, maximum=65535)
    )
    # --- logging -------------------------------------------------------------------------------
    log_format: str = field(
        default="text", metadata=_doc("'text' for people, 'json' for collectors.")
    )
    log_level: str = field(default="info", metadata=_doc("debug, info, warning or error."))
    # --- RTMP connection limits ----------------------------------------------------------------
    max_connections: int = field(
        default=1000,
        metadata=_doc("RTMP connections at once; more are closed at accept.", minimum=1),
    )
    setup_timeout: float = field(
        default=10.0,
        metadata=_doc(
            "Seconds a connection has for handshake + connect + publish/play; idle sockets "
            "that never publish would otherwise hold a slot forever.",
            minimum=0.1,
        ),
    )
    idle_timeout: float = field(
        default=30.0,
        metadata=_doc("Seconds without any byte from the peer before it is dropped.", minimum=0.1),
    )
    send_timeout: float = field(
        default=10.0,
        metadata=_doc(
            "Seconds a write to a peer may take before the peer is dropped.", minimum=0.1
        ),
    )
    rtmp_read_interval: float = field(
        default=0.005,
        metadata=_doc(
            "Seconds between reads of publishing connections: one task reads them all per "
            "tick, which costs far less CPU than a wake-up per TCP arrival per connection, for "
            "up to this much added delay per message. 0 = each connection wakes on its own "
            "data (also the case on platforms without epoll).",
            minimum=0.0,
            maximum=0.1,
        ),
    )
    rtmp_publish_lowat: int = field(
        default=9,
        metadata=_doc(
            "With the shared reader (rtmp_read_interval > 0): bytes a publishing connection "
            "must have queued between messages before it is read (SO_RCVLOWAT, Linux). 9 skips "
            "the lone 8-byte chunk headers FFmpeg writes before each message body, one wake-up "
            "per message saved. A publisher with Nagle's algorithm on (FFmpeg; OBS turns it "
            "off) then sends its media in batches of the kernel's delayed-ACK time (~40 ms), "
            "which halves the CPU per stream at low stream counts for that much ingest latency. "
            "1 = read every arrival.",
            minimum=1,
            maximum=65536,
        ),
    )
    publish_takeover_after: float = field(
        default=5.0,
        metadata=_doc(
            "Seconds a publisher may send nothing before a new publisher of the same name "
            "takes it over (the old connection is closed, naming the new peer): an encoder "
            "whose network died without closing the connection would otherwise keep its own "
            "reconnect out until idle_timeout. A name with data flowing is never taken. "
            "0 = a live name always refuses a second publisher.",
            minimum=0.0,
        ),
    )
    max_message_size: int = field(
        default=8 * 1024 * 1024,
        metadata=_doc(
            "Largest RTMP message accepted, bytes (the u24 length field allows 16 MiB; "
            "8 MiB holds a 4K intra frame at high bitrate).",
            minimum=1024,
            maximum=0xFFFFFF,
        ),
    )
    # --- RTMP playback --------------------------------------------------------------------------
    play_wait_timeout: float = field(
        default=5.0,
        metadata=_doc(
            "Seconds a player of a name that is not live waits for a publisher before "
            "NetStream.Play.StreamNotFound (0 = answer at once).",
            minimum=0.0,
        ),
    )
    gop_cache_bytes: int = field(
        default=4 * 1024 * 1024,
        metadata=_doc(
            "Bytes per stream kept since the newest keyframe so players start with a picture at "
            "once; a longer GOP is not cached (0 disables).",
            minimum=0,
        ),
    )
    track_headers_bytes: int = field(
        default=1024 * 1024,
        metadata=_doc(
            "Bytes per stream of configuration (sequence starts, metadata) kept for Multitrack "
            "tracks other than track 0, so late players get every track; a track whose "
            "configuration does not fit is not kept (its players wait for the publisher to "
            "resend it).",
            minimum=0,
        ),
    )
    rtmp_play_write_interval: float = field(
        default=0.03,
        metadata=_doc(
            "Seconds a stream's writer to its RTMP players waits after a write: tags arriving "
            "meanwhile go out in one write per player. Most of a player's cost is the write "
            "itself, so 30 ms (about a video frame) made 50 players on a 720p30 stream cost 0.08 "
            "instead of 0.13 CPU s per player-minute, for up to that much delay (the first "
            "frame is not delayed). 0 = write every batch at once.",
            minimum=0.0,
            maximum=1.0,
        ),
    )
    player_queue: int = field(
        default=1024,
        metadata=_doc(
            "Tags queued per RTMP player (~10 s at 30 fps + audio); a full queue makes that "
            "player skip to the next keyframe, never slows the publisher.",
            minimum=16,
        ),
    )
    player_max_lag: float = field(
        default=15.0,
        metadata=_doc(
            "Seconds a player may stay behind (dropping) without catching up before it is "
            "disconnected.",
            minimum=0.5,
        ),
    )
    # --- TLS -----------------------------------------------------------------------------------
    tls_cert: str = field(
        default="",
        metadata=_doc(
            "PEM certificate (chain) file; with tls_key, HTTP is served over TLS with HTTP/2 "
            "(ALPN h2 and http/1.1), which Safari needs for Low-Latency HLS, and RTMPS is "
            "served on rtmps_port."
        ),
    )
    tls_key: str = field(default="", metadata=_doc("PEM private key file of tls_cert."))
    # --- access control (docs/auth.md) ----------------------------------------------------------
    auth_hook_url: str = field(
        default="",
        metadata=_doc(
            "HTTP(S) URL the gateway POSTs a JSON request to before a publish, a read (with "
            "read_auth) or an API call; a 2xx answer allows, anything else denies (fail-closed). "
            "Empty = no hook."
        ),
    )
    auth_hook_timeout: float = field(
        default=2.0,
        metadata=_doc(
            "Seconds the hook has to answer; a later answer counts as a refusal.",
            minimum=0.1,
            maximum=60.0,
        ),
    )
    auth_hook_concurrency: int = field(
        default=64,
        metadata=_doc(
            "Hook requests in flight at once; more wait for a slot (within auth_hook_timeout), "
            "so a burst of viewers cannot flood the hook.",
            minimum=1,
        ),
    )
    auth_cache_seconds: float = field(
        default=0.0,
        metadata=_doc(
            "Seconds a hook answer is reused for the same action, app, key, address and token "
            "(0 = ask every time). Timeouts and 5xx answers are never reused.",
            minimum=0.0,
        ),
    )
    auth_jwt_secret: str = field(
        default="",
        metadata=_doc("Shared secret for HS256 JSON Web Tokens (empty = HS256 tokens refused)."),
    )
    auth_jwks: str = field(
        default="",
        metadata=_doc(
            "JSON Web Key Set for RS256/ES256 tokens: a file path or an http(s) URL (fetched at "
            "start and every auth_jwks_refresh seconds)."
        ),
    )
    auth_jwks_refresh: float = field(
        default=300.0,
        metadata=_doc("Seconds between fetches of an auth_jwks URL.", minimum=10.0),
    )
    auth_max_token_bytes: int = field(
        default=4096,
        metadata=_doc(
            "Longest token accepted, bytes; a longer one is refused before it is decoded.",
            minimum=64,
            maximum=65536,
        ),
    )
    read_auth: bool = field(
        default=False,
        metadata=_doc(
            "Ask before every read (RTMP play, HLS playback session); false = anyone may watch."
        ),
    )
    read_token_ttl: float = field(
        default=300.0,
        metadata=_doc(
            "With read_auth: seconds the signed token on every playlist URI stays valid; each "
            "playlist reload renews it, so only a player that stopped reloading loses it.",
            minimum=10.0,
        ),
    )
    playback_secret: str = field(
        default="",
        metadata=_doc(
            "Secret (32+ bytes) that signs playback tokens: `gateway sign` links and the "
            "tokens on playlist URIs. Empty = a random one per process (signed links then stop "
            "working at a restart, and `gateway sign` refuses)."
        ),
    )
    api_token: str = field(
        default="",
        metadata=_doc(
            "When set, /api/*, /metrics and the stream index need 'Authorization: Bearer "
            "<api_token>' (or a hook or token allowing 'api'); addresses of publishers and "
            "players are shown only there."
        ),
    )
    max_connections_per_ip: int = field(
        default=64,
        metadata=_doc(
            "RTMP connections at once from one address; more are closed at accept (0 = no limit).",
            minimum=0,
        ),
    )
    tls_ca_file: str = field(
        default="",
        metadata=_doc(
            "PEM bundle of certificate authorities trusted for outgoing TLS (rtmps:// push and "
            "pull relays, an https auth hook or JWKS URL) besides the system's; empty = the "
            "system's only."
        ),
    )
    # --- HLS -----------------------------------------------------------------------------------
    hls_dir: str = field(
        default="",
        metadata=_doc("Directory for segments and playlists; empty = in memory (the default)."),
    )
    hls_target_duration: float = field(
        default=2.0,
        metadata=_doc("Segment length aimed at, seconds; cuts happen at keyframes.", minimum=0.5),
    )
    hls_max_segment_duration: float = field(
        default=10.0,
        metadata=_doc(
            "Longest segment allowed, seconds: fixes EXT-X-TARGETDURATION for the stream's life.",
            minimum=1.0,
        ),
    )
    hls_formats: str = field(
        default="ts,cmaf",
        metadata=_doc(
            "Output formats, comma separated: 'cmaf' (fMP4, Low-Latency HLS at cmaf.m3u8, what "
            "index.m3u8 points at) and 'ts' (MPEG-TS at ts.m3u8, for older players)."
        ),
    )
    hls_part_duration: float = field(
        default=0.2,
        metadata=_doc(
            "LL-HLS part length, seconds (EXT-X-PART-INF PART-TARGET): players stay about three "
            "parts behind the newest, so shorter parts mean less latency and more requests.",
            minimum=0.1,
            maximum=1.0,
        ),
    )
    hls_max_renditions: int = field(
        default=8,
        metadata=_doc(
            "Renditions one multitrack publish may open (video and audio tracks together; each "
            "is segmented on its own); further tracks are dropped with a warning.",
            minimum=1,
            maximum=64,
        ),
    )
    hls_window: int = field(
        default=6,
        metadata=_doc("Segments listed in the live playlist (at least 3 x target).", minimum=3),
    )
    hls_end_grace: float = field(
        default=20.0,
        metadata=_doc(
            "Seconds without a publisher before the playlist gets EXT-X-ENDLIST; a publisher "
            "reconnecting within it continues the same playlist with a discontinuity.",
            minimum=0.0,
        ),
    )
    hls_memory_max_bytes: int = field(
        default=1024 * 1024 * 1024,
        metadata=_doc(
            "Without hls_dir: bytes of segments and playlists held in memory at most; past it "
            "new segments are refused and logged until ended streams expire and free room, "
            "rather than the process growing until the kernel kills every stream. Plan about "
            "window x 2 formats x bitrate x target duration per stream, plus the ended ones "
            "kept for hls_retention (0 = no cap).",
            minimum=0,
        ),
    )
    hls_write_queue_bytes: int = field(
        default=64 * 1024 * 1024,
        metadata=_doc(
            "With hls_dir: bytes of segments and playlists that may wait for the disk writer "
            "thread, which writes them in order (a segment before the playlist naming it) so "
            "disk time never holds the event loop; when the disk falls further behind, "
            "publishers stop reading (TCP back-pressure) until it catches up; HTTP and players "
            "go on. 0 = write in the event loop.",
            minimum=0,
        ),
    )
    hls_write_stall_warn: float = field(
        default=5.0,
        metadata=_doc(
            "With hls_dir or hls_s3_url: a publisher that has stopped reading this many seconds "
            "because the disk write queue (or S3 upload queue) is full is logged (a warning "
            "naming it and the queue).",
            minimum=0.0,
        ),
    )
    hls_write_stall_timeout: float = field(
        default=60.0,
        metadata=_doc(
            "With hls_dir or hls_s3_url: a publisher paused this many seconds by a full disk "
            "write queue or S3 upload queue (a disk or bucket that stopped taking writes) is "
            "disconnected with that reason; 0 = never.",
            minimum=0.0,
        ),
    )
    hls_retention: float = field(
        default=120.0,
        metadata=_doc(
            "Seconds an ended playlist (EXT-X-ENDLIST) and its segments stay downloadable before "
            "they are deleted and the stream's resources freed; the media sequence is kept for "
            "the next publisher of the same name. Also for the playlists an earlier run left in "
            "hls_dir (counted from the file's time).",
            minimum=0.0,
        ),
    )
    hls_viewer_window: float = field(
        default=30.0,
        metadata=_doc(
            "Seconds an HLS playback session counts as a viewer after its last successful "
            "request (players reload the playlist every target duration): the sliding window "
            "of the viewers figure in /api/streams and /metrics.",
            minimum=1.0,
        ),
    )
    # --- S3-compatible store (docs/s3.md) -------------------------------------------------------
    hls_s3_url: str = field(
        default="",
        metadata=_doc(
            "s3://BUCKET/PREFIX: segments, init segments and playlists are also uploaded to this "
            "bucket (in order: an object before any playlist naming it), with Content-Type and "
            "Cache-Control, and deleted as they leave the window plus hls_retention. The gateway "
            "keeps serving them from memory (hls_memory_max_bytes) and serves the playlists "
            "(LL-HLS blocking reloads need the origin). Credentials and region come from the "
            "standard AWS chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, "
            "~/.aws/credentials and config, AWS_REGION, an instance or container role); region "
            "us-east-1 if none. Empty = no bucket. Not with hls_dir."
        ),
    )
    s3_endpoint_url: str = field(
        default="",
        metadata=_doc(
            "With hls_s3_url: the S3 API's base URL for MinIO, Ceph, R2, moto... "
            "(http(s)://HOST[:PORT], path-style addressing); empty = AWS S3 of the region."
        ),
    )
    hls_public_base_url: str = field(
        default="",
        metadata=_doc(
            "With hls_s3_url: the public URL of the bucket's prefix (a CDN pulling from it, or "
            "the bucket's own URL); the segment and init segment (EXT-X-MAP) URIs of every media "
            "playlist become BASE/APP/KEY/FILE once the object is in the bucket (relative, served "
            "by the gateway, until then), so viewers fetch them there. Playlists, LL-HLS "
            "parts and preload hints stay on the gateway (a part is listed before a bucket could "
            "have it, and a hinted part is waited for by the origin). Empty = relative URIs "
            "(everything from the gateway)."
        ),
    )
    s3_queue_bytes: int = field(
        default=256 * 1024 * 1024,
        metadata=_doc(
            "With hls_s3_url: bytes of objects that may wait for upload (the same bytes as the "
            "memory copy, not a second copy). When the bucket falls further behind (slow or "
            "down), publishers stop reading (TCP back-pressure, hls_write_stall_warn and "
            "hls_write_stall_timeout apply) until it catches up; what is queued is kept in "
            "order and uploaded once the bucket answers, skipping what expired meanwhile.",
            minimum=1024 * 1024,
        ),
    )
    s3_max_in_flight: int = field(
        default=8,
        metadata=_doc(
            "With hls_s3_url: S3 requests at once (also the HTTP connections kept to the "
            "endpoint). Playlists wait for the objects queued before them whatever this is.",
            minimum=1,
            maximum=256,
        ),
    )
    s3_request_timeout: float = field(
        default=10.0,
        metadata=_doc(
            "With hls_s3_url: seconds an S3 request may wait to connect, or between bytes sent "
            "or received, before it counts as failed (and is retried).",
            minimum=0.1,
        ),
    )
    s3_retry_base_delay: float = field(
        default=0.2,
        metadata=_doc(
            "With hls_s3_url: seconds before the first retry of a failed S3 request; each "
            "further retry may wait twice as long (up to s3_retry_max_delay), a random part "
            "of it (full jitter) so streams do not retry in lockstep. Requests are retried "
            "until they succeed or their object expires.",
            minimum=0.01,
        ),
    )
    s3_retry_max_delay: float = field(
        default=10.0,
        metadata=_doc(
            "With hls_s3_url: longest wait between retries of a failed S3 request, seconds; also "
            "about how long a bucket that came back may wait for the first upload.",
            minimum=0.01,
        ),
    )
    # --- relays --------------------------------------------------------------------------------
    pull: str = field(
        default="",
        metadata=_doc(
            "Pull relays: entries APP/KEY=URL separated by spaces or commas; the gateway plays "
            "URL (rtmp:// or rtmps://) and publishes it here as APP/KEY, retrying with backoff, "
            "e.g. live/cam=rtmp://camera.local/live/main."
        ),
    )
    push: str = field(
        default="",
        metadata=_doc(
            "Push relays: entries SELECTOR=URL separated by spaces or commas. SELECTOR is an app "
            "('live': every key of it) or 'app/key'; URL is rtmp:// or rtmps:// and may contain "
            "{app} and {key}, e.g. live=rtmp://backup.example/live/{key}."
        ),
    )
    # --- transcoding ---------------------------------------------------------------------------
    transcode: str = field(
        default="",
        metadata=_doc(
            "Transcoding ladder for single-track publishers: entries SELECTOR=WxH@BITRATE"
            "[,WxH@BITRATE...] separated by spaces or commas. SELECTOR is an app ('app/*' says "
            "the same) or 'app/key' as for push, 'app/key' winning over its app; "
            "each rung is one more H.264 rendition of the multivariant playlist, scaled to fit "
            "in WxH (aspect kept), keyframes where the publisher's are, e.g. "
            "live=1280x720@2500k,640x360@800k. Empty = off."
        ),
    )
    transcode_max_rungs: int = field(
        default=4,
        metadata=_doc(
            "Most transcoded rungs one stream may have (each costs a decoder, a scaler, an "
            "x264 encoder and a thread).",
            minimum=1,
            maximum=8,
        ),
    )
    transcode_queue: int = field(
        default=30,
        metadata=_doc(
            "Video frames queued for one rung's encoder thread (30: 1 s at 30 fps); a rung whose "
            "queue is full cannot keep up and is dropped with a warning (ingest never waits). "
            "A rung much later than the publisher's audio (over 0.5 s, the segmenter's "
            "interleaving window) would be muxed out of step with it.",
            minimum=2,
        ),
    )
    transcode_preset: str = field(
        default="veryfast",
        metadata=_doc("x264 preset of the transcoded rungs: ultrafast ... veryslow."),
    )
    # --- HTTP ----------------------------------------------------------------------------------
    cors_origins: str = field(
        default="*", metadata=_doc("Comma-separated origins allowed by CORS; '*' for any.")
    )
    http_read_timeout: int = field(
        default=30,
        metadata=_doc(
            "Seconds an HTTP client may stay silent in the middle of a request before it is "
            "dropped (a request that never completes is dropped at the keep-alive timeout).",
            minimum=1,
        ),
    )
    http_send_timeout: float = field(
        default=30.0,
        metadata=_doc(
            "Seconds an HTTP client may leave sent data unacknowledged (TCP_USER_TIMEOUT, "
            "Linux) before the kernel drops it: a viewer that requests a segment and never "
            "reads would otherwise hold its connection and response for good. A slow client "
            "that keeps reading is never dropped.",
            minimum=1.0,
        ),
    )
    http_keep_alive_timeout: float = field(
        default=20.0,
        metadata=_doc(
            "Seconds an idle keep-alive HTTP connection is kept; players reload playlists every "
            "target duration or so, so this covers the gap between reloads.",
            minimum=1.0,
        ),
    )
    http_max_requests_per_ip: int = field(
        default=256,
        metadata=_doc(
            "HTTP requests in flight at once from one address (blocking LL-HLS reloads "
            "included); more are answered 429. Viewers behind one NAT share an address, so "
            "leave room for them (0 = no limit).",
            minimum=0,
        ),
    )
    http_backlog: int = field(
        default=1024,
        metadata=_doc("Pending HTTP connections the kernel queues before refusing.", minimum=16),
    )
    metrics_per_stream: bool = field(
        default=False,
        metadata=_doc(
            "Also expose per-stream series on /metrics (labels app and key: viewers, players, "
            "bytes received, dropped); each live stream then adds series, so leave it off "
            "with many streams. Off: totals only."
        ),
    )
    shutdown_timeout: float = field(
        default=10.0,
        metadata=_doc(
            "Seconds given to close playlists and drain HTTP on SIGINT/SIGTERM.", minimum=0
        ),
    )
    reconnect_request_wait: float = field(
        default=2.0,
        metadata=_doc(
            "Seconds a graceful shutdown waits for publishers that announced Enhanced RTMP "
            "capsEx Reconnect to reconnect elsewhere after NetConnection.Connect."
            "ReconnectRequest, before their connections are closed (0 = ask nobody).",
            minimum=0.0,
        ),
    )
    # --- worker processes ----------------------------------------------------------------------
    workers: str = field(
        default="1",
        metadata=_doc(
            "Processes that serve (1 = this process does everything; 'auto' = one per CPU the "
            "process may run on; at most 64). With more than one, a supervisor process holds "
            "the listeners, hands RTMP connections to the workers in turn and restarts a "
            "worker that dies; every worker answers HTTP (SO_REUSEPORT) for every stream."
        ),
    )
    worker_restart_delay: float = field(
        default=1.0,
        metadata=_doc(
            "Seconds before a worker that died is started again; doubled for each death "
            "within a minute, up to 30 s.",
            minimum=0.0,
            maximum=30.0,
        ),
    )
    worker_link_bytes: int = field(
        default=64 << 20,
        metadata=_doc(
            "Bytes (copies of segments, parts and playlists, relayed tags) that may wait for a "
            "worker's link to the supervisor, on each side; past it messages are dropped with "
            "an error log line (the other workers' copies miss those updates; the next LL-HLS "
            "update carries the playlists whole again).",
            minimum=1 << 20,
        ),
    )
    worker_heartbeat_timeout: float = field(
        default=10.0,
        metadata=_doc(
            "Seconds a worker may go without answering the supervisor's heartbeat (its event "
            "loop stuck) before it is killed and started again (0 = never).",
            minimum=0.0,
        ),
    )
    worker_request_timeout: float = field(
        default=2.0,
        metadata=_doc(
            "Seconds /api and /metrics wait for the other workers' figures; a worker that "
            "does not answer is left out and named in a log line.",
            minimum=0.1,
        ),
    )

    @classmethod
    def fields(cls) -> tuple[dataclasses.Field[Any], ...]:
        return dataclasses.fields(cls)


_TYPES: dict[str, type] = {}


def _field_type(f: dataclasses.Field[Any]) -> type:
    if not _TYPES:
        hints = typing.get_type_hints(Settings)
        for name, hint in hints.items():
            _TYPES[name] = hint if not isinstance(hint, types.UnionType) else str
    return _TYPES[f.name]


def _coerce(f: dataclasses.Field[Any], value: Any, source: str) -> Any:
    kind = _field_type(f)
    where = f"{f.name} (from {source})"
    try:
        if kind is bool:
            if isinstance(value, str):
                if value.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError(value)
                value = value.lower() in ("1", "true", "yes", "on")
            result: Any = bool(value)
        elif kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            result = int(value)
        elif kind is float:
            if isinstance(value, bool):
                raise ValueError(value)
            result = float(value)
        else:
            if not isinstance(value, str):
                raise ValueError(value)
            result = value
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}") from None
    lo, hi = f.metadata.get("min"), f.metadata.get("max")
    if lo is not None and result < lo:
        raise ConfigError(f"{where}: {result!r} is below the minimum {lo}")
    if hi is not None and result > hi:
        raise ConfigError(f"{where}: {result!r} is above the maximum {hi}")
    return result


def _check(settings: Settings) -> Settings:
    if settings.log_format not in ("text", "json"):
        raise ConfigError(f"log_format: must be 'text' or 'json', got {settings.log_format!r}")
    if settings.log_level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"log_level: unknown level {settings.log_level!r}")
    if settings.hls_max_segment_duration < settings.hls_target_duration:
        raise ConfigError(
            "hls_max_segment_duration: must be >= hls_target_duration "
            f"({settings.hls_max_segment_duration} < {settings.hls_target_duration})"
        )
    _check_tls(settings)
    _check_auth(settings)
    if settings.hls_dir:
        _check_writable(Path(settings.hls_dir))
    worker_count(settings)
    formats = hls_formats(settings)
    if not formats or set(formats) - {"ts", "cmaf"}:
        raise ConfigError(
            f"hls_formats: one or both of 'ts' and 'cmaf', got {settings.hls_formats!r}"
        )
    if settings.hls_part_duration > settings.hls_target_duration:
        raise ConfigError(
            "hls_part_duration: must be <= hls_target_duration "
            f"({settings.hls_part_duration} > {settings.hls_target_duration})"
        )
    _check_s3(settings)
    parse_push(settings.push)  # the relay grammars live with the relays' configuration
    parse_pull(settings.pull)
    if settings.transcode_preset not in X264_PRESETS:
        raise ConfigError(
            f"transcode_preset: one of {', '.join(X264_PRESETS)}, got {settings.transcode_preset!r}"
        )
    for rule in parse_transcode(settings.transcode, max_rungs=settings.transcode_max_rungs):
        if len(rule.rungs) > settings.hls_max_renditions:  # each rung is a ladder rendition
            where = rule.app + (f"/{rule.key}" if rule.key else "")
            raise ConfigError(
                f"transcode: {where} has {len(rule.rungs)} rungs, hls_max_renditions allows "
                f"{settings.hls_max_renditions}"
            )
    return settings


def _check_s3(settings: Settings) -> None:
    """The S3 settings make sense together: a parseable s3:// URL, not with hls_dir, http(s)
    URLs for the endpoint and the public base, and the settings that need a bucket have one."""
    if settings.hls_s3_url:
        try:
            parse_s3_url(settings.hls_s3_url)
        except ValueError as exc:
            raise ConfigError(f"hls_s3_url: {exc}") from None
        if settings.hls_dir:
            raise ConfigError(
                "hls_s3_url: not with hls_dir (one store: the bucket keeps a memory copy)"
            )
    else:
        for key in ("s3_endpoint_url", "hls_public_base_url"):
            if getattr(settings, key):
                raise ConfigError(f"{key}: needs hls_s3_url (the bucket it is about)")
    for key in ("s3_endpoint_url", "hls_public_base_url"):
        url = getattr(settings, key)
        if not url:
            continue
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{key}: must be an http:// or https:// URL, got {url!r}")
        if parts.query or parts.fragment or any(c.isspace() or c == '"' for c in url):
            raise ConfigError(f"{key}: no query, fragment, spaces or quotes, got {url!r}")
    if settings.s3_retry_base_delay > settings.s3_retry_max_delay:
        raise ConfigError(
            "s3_retry_base_delay: must be <= s3_retry_max_delay "
            f"({settings.s3_retry_base_delay} > {settings.s3_retry_max_delay})"
        )


def _check_writable(directory: Path) -> None:
    """hls_dir is made if missing (as the store would) and written to once: a directory the
    gateway cannot write would start, fail every segment and serve only 404s."""
    probe = directory / f".gateway-probe~{os.getpid()}"
    try:
        if directory.exists() and not directory.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            os.write(fd, b"probe")
        finally:
            os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"hls_dir: cannot write {directory}: {exc.strerror or exc}") from None


def _check_tls(settings: Settings) -> None:
    """Both or neither of tls_cert and tls_key, and a pair that loads (the cause named); the
    RTMP listener rules that depend on them; a tls_ca_file that loads."""
    if bool(settings.tls_cert) != bool(settings.tls_key):
        missing = "tls_key" if settings.tls_cert else "tls_cert"
        raise ConfigError(f"{missing}: needed too when tls_cert or tls_key is set")
    if settings.tls_ca_file:
        if not Path(settings.tls_ca_file).is_file():
            raise ConfigError(f"tls_ca_file: {settings.tls_ca_file!r} is not a readable file")
        try:
            ssl.create_default_context().load_verify_locations(cafile=settings.tls_ca_file)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"tls_ca_file: cannot load the certificates: {exc}") from None
    if not settings.tls_cert:
        if settings.rtmp_port == -1:
            # Nothing could publish or play: no plain RTMP and, without a certificate, no RTMPS.
            raise ConfigError("rtmp_port: -1 (no plain RTMP) needs tls_cert and tls_key for RTMPS")
        return
    if settings.rtmp_port == settings.rtmps_port != 0:
        raise ConfigError(
            f"rtmps_port: {settings.rtmps_port} is rtmp_port too; RTMP and RTMPS need a port each"
        )
    for key in ("tls_cert", "tls_key"):
        path = Path(getattr(settings, key))
        if not path.is_file():
            raise ConfigError(f"{key}: {str(path)!r} is not a readable file")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"tls_cert/tls_key: cannot load the certificate and key: {exc}") from None


def _check_auth(settings: Settings) -> None:
    """Access-control settings that cannot work are refused at start, naming the key."""
    url = settings.auth_hook_url
    if url and not url.lower().startswith(("http://", "https://")):
        raise ConfigError(f"auth_hook_url: must be an http:// or https:// URL, got {url!r}")
    jwks = settings.auth_jwks
    if jwks and not jwks.lower().startswith(("http://", "https://")) and not Path(jwks).is_file():
        raise ConfigError(f"auth_jwks: {jwks!r} is neither an http(s) URL nor a readable file")
    # RFC 7518 §3.2: an HMAC-SHA256 key has at least 256 bits (`openssl rand -hex 32`).
    for key in ("playback_secret", "auth_jwt_secret"):
        secret = getattr(settings, key)
        if secret and len(secret.encode()) < 32:
            raise ConfigError(f"{key}: use at least 32 bytes, e.g. `openssl rand -hex 32`")
    if settings.read_auth and not (auth_configured(settings) or settings.playback_secret):
        raise ConfigError(
            "read_auth: nobody could watch; set auth_hook_url, auth_jwt_secret, auth_jwks or "
            "playback_secret (for `gateway sign` links)"
        )


def auth_configured(settings: Settings) -> bool:
    """A hook or a token verifier decides who may publish (else anyone may)."""
    return bool(settings.auth_hook_url or settings.auth_jwt_secret or settings.auth_jwks)


MAX_WORKERS = 64


def worker_count(settings: Settings) -> int:
    """How many worker processes ``workers`` asks for ('auto': one per usable CPU)."""
    text = settings.workers.strip().lower()
    if text == "auto":
        return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))
    try:
        count = int(text)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_WORKERS:
        raise ConfigError(
            f"workers: a number from 1 to {MAX_WORKERS} or 'auto', got {settings.workers!r}"
        )
    return count


def hls_formats(settings: Settings) -> tuple[str, ...]:
    """The formats of ``hls_formats``, in a fixed order, without duplicates."""
    named = {f.strip().lower() for f in settings.hls_formats.split(",") if f.strip()}
    return tuple(sorted(named, key=lambda f: (f not in ("ts", "cmaf"), f)))


def load_settings(
    *,
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge defaults, TOML file, ``GATEWAY_*`` environment and explicit overrides (flags)."""
    by_name = {f.name: f for f in Settings.fields()}
    values: dict[str, Any] = {}
    if config_file is not None:
        path = Path(config_file)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"config file {path}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: invalid TOML: {exc}") from None
        for key, value in _flatten(data).items():
            f = by_name.get(key)
            if f is None:
                raise ConfigError(f"{key} (from {path}): unknown setting{_did_you_mean(key)}")
            values[key] = _coerce(f, value, str(path))
    for name, raw in (os.environ if env is None else env).items():
        if not name.startswith("GATEWAY_"):
            continue
        key = name[len("GATEWAY_") :].lower()
        f = by_name.get(key)
        if f is None:
            raise ConfigError(
                f"{key} (from environment {name}): unknown setting{_did_you_mean(key)}"
            )
        values[key] = _coerce(f, raw, f"environment {name}")
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        values[key] = _coerce(by_name[key], value, f"--{key.replace('_', '-')}")
    return _check(Settings(**values))


def _did_you_mean(key: str) -> str:
    """' (did you mean 'hls_window'?)' for a near miss of a setting's name, else ''."""
    close = difflib.get_close_matches(key, [f.name for f in Settings.fields()], n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _flatten(data: Mapping[str, Any]) -> dict[str, Any]:
    """Accept flat keys or one level of tables: ``[hls] window = 6`` means ``hls_window``."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            for sub, inner in value.items():
                flat[f"{key}_{sub}"] = inner
        else:
            flat[key] = value
    return flat
