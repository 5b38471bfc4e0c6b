"""What the web side is configured with and given by the gateway that composes it.

Kept apart from ``web.app`` so the route modules (hls, api, pages) depend on these types and
``web.app`` depends on the route modules, never the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from segmenter.store import StoreFailure


@dataclass(frozen=True)
class WebConfig:
    # Access-Control-Allow-Origin policy: "*" allows any origin, else the exact origins listed.
    cors_origins: tuple[str, ...] = ("*",)
    # How long browsers may cache a CORS preflight answer (seconds).
    cors_max_age: int = 600
    # Cache-Control max-age for playlists: about half a segment, so a cache never hides more than
    # one new segment (docs/protocol.md §6). Whole seconds (RFC 9111 §1.2.2); < 1 s -> "no-cache".
    playlist_max_age: float = 1.0
    # Segments never change once listed (names are unique per publish session), so cache them long.
    segment_max_age: int = 86400
    # Static page assets (player.js, style.css, hls.js) may be cached this long (seconds).
    static_max_age: int = 3600
    # Playlists smaller than this are sent uncompressed: gzip would save nothing.
    gzip_min_size: int = 256
    # zlib level for playlists: 6 is the usual size/CPU balance for small text.
    gzip_level: int = 6
    # Read the store in a worker thread (set for a disk store, so a slow disk never stalls the
    # event loop and with it ingest); a MemoryStore lookup is faster than the thread hop.
    read_in_thread: bool = False
    # How often the player page polls /api/streams/<app>/<key> (seconds).
    player_poll_interval: float = 2.0
    # Where hls.min.js is served from; None means web/node_modules/hls.js/dist/hls.min.js.
    hls_js_path: Path | None = None
    # Label used for requests that matched no route, bounding the route label's cardinality.
    unmatched_route_label: str = field(default="<unmatched>")
    # HTTP requests in flight at once from one client address; more get 429 (0 = no limit).
    max_requests_per_ip: int = 0


class WholeGateway(Protocol):
    """With worker processes: the whole gateway's status and metrics, this worker's merged
    with the others' (gateway.workerside.ClusterStatus)."""

    @property
    def worker(self) -> int:
        """This worker's number (the Gateway-Worker response header)."""
        ...

    async def streams(self, local: list[dict[str, Any]]) -> list[dict[str, Any]]: ...

    async def stream(
        self, app: str, key: str, local: dict[str, Any] | None
    ) -> dict[str, Any] | None: ...

    async def metrics(self, local: bytes) -> bytes: ...


class HealthSource(Protocol):
    """Whether the gateway works (/healthz): why its store fails, or None while it does not."""

    @property
    def failure(self) -> StoreFailure | None: ...


class StatusSource(Protocol):
    """What the gateway tells the web side about streams (JSON-ready dicts, see gateway)."""

    def streams(self) -> list[dict[str, Any]]:
        """One dict per known stream."""
        ...

    def stream(self, app: str, key: str) -> dict[str, Any] | None:
        """The dict of one stream, or None if the gateway does not know it."""
        ...
