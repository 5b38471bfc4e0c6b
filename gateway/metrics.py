"""Prometheus metrics of the RTMP side and the segmenter (the HTTP side adds its own).

Cardinality: the series here are fixed, except ``relay_*`` (one per push target) and, only with
``metrics_per_stream``, the ``stream_*`` series (one per live stream, gone when the stream is).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


@dataclass(frozen=True, slots=True)
class StreamFigures:
    """What /metrics says about one stream (gathered at scrape time, never stored)."""

    app: str
    key: str
    viewers: int  # HLS playback sessions in the viewer window (web.viewers)
    players: int  # RTMP players attached
    bytes_in: int  # bytes received from its publishers
    dropped: int  # samples the segmenter and tags the subscribers lost


class StreamCollector(Collector):
    """HLS viewers in total and, when ``per_stream()`` says so, series per live stream. Read
    from the gateway at each scrape: an ended stream leaves no series behind."""

    def __init__(
        self, figures: Callable[[], Iterable[StreamFigures]], per_stream: Callable[[], bool]
    ) -> None:
        self._figures = figures
        self._per_stream = per_stream

    def collect(self) -> Iterator[Metric]:
        streams = list(self._figures())
        yield GaugeMetricFamily(
            "hls_viewers",
            "HLS playback sessions seen within hls_viewer_window, all streams",
            value=sum(s.viewers for s in streams),
        )
        if not self._per_stream():
            return
        labels = ["app", "key"]
        # Counters restart at 0 when an ended stream is forgotten and published again.
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "viewers": GaugeMetricFamily(
                "stream_hls_viewers", "HLS playback sessions of the stream", labels=labels
            ),
            "players": GaugeMetricFamily(
                "stream_rtmp_players", "RTMP players of the stream", labels=labels
            ),
            "bytes_in": CounterMetricFamily(
                "stream_bytes_received", "Bytes from the stream's publishers", labels=labels
            ),
            "dropped": CounterMetricFamily(
                "stream_dropped", "Samples and tags of the stream lost (segmenter, subscribers)",
                labels=labels,
            ),
        }  # fmt: skip
        for s in streams:
            for field, family in families.items():
                family.add_metric([s.app, s.key], getattr(s, field))
        yield from families.values()


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        # process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds... (Linux
        # /proc): on the registry /metrics serves, which is not prometheus_client's global one.
        ProcessCollector(registry=r)
        self.connections_total = Counter(
            "rtmp_connections", "RTMP connections accepted", registry=r
        )
        self.connections_active = Gauge(
            "rtmp_connections_active", "RTMP connections open now", registry=r
        )
        self.connections_refused = Counter(
            "rtmp_connections_refused", "RTMP connections closed at accept (limit)", registry=r
        )
        self.publishers = Gauge("rtmp_publishers", "Streams with a live publisher", registry=r)
        self.bytes_in = Counter("rtmp_bytes_received", "Bytes received from RTMP peers", registry=r)
        self.protocol_errors = Counter(
            "rtmp_protocol_errors", "Connections closed for a protocol error", ["cause"], registry=r
        )
        self.publish_rejected = Counter(
            "rtmp_publish_rejected", "Publish requests refused", ["code"], registry=r
        )
        self.players = Gauge("rtmp_players", "RTMP players attached to a stream", registry=r)
        self.player_dropped = Counter(
            "rtmp_player_dropped_tags",
            "Tags skipped for slow RTMP players (they resume at the next keyframe)",
            registry=r,
        )
        self.players_disconnected_slow = Counter(
            "rtmp_players_disconnected_slow",
            "RTMP players disconnected for staying behind longer than player_max_lag",
            registry=r,
        )
        self.segments = Counter("hls_segments", "HLS segments produced", registry=r)
        self.store_refused = Counter(
            "hls_store_refused",
            "Segmenter writes refused by the store (memory cap hls_memory_max_bytes reached)",
            registry=r,
        )
        self.store_healthy = Gauge(
            "hls_store_healthy",
            "1 while the store's writes succeed; 0 from a failed write until one succeeds",
            registry=r,
        )
        # The disk write queue (WriteBehindStore, with hls_dir) and the publishers it pauses
        # (gateway.backpressure); the queue gauges read the store when scraped.
        self.store_queue_items = Gauge(
            "hls_store_queue_items", "Disk writes and deletes waiting for the writer", registry=r
        )
        self.store_queue_bytes = Gauge(
            "hls_store_queue_bytes", "Bytes waiting for the disk writer", registry=r
        )
        self.store_write_seconds = Histogram(
            "hls_store_write_seconds",
            "Time the disk writer took per write or delete",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=r,
        )
        self.store_write_failures = Counter(
            "hls_store_write_failures", "Disk writes and deletes that failed", registry=r
        )
        self.store_pauses = Counter(
            "hls_store_publisher_pauses",
            "Times a publisher stopped reading because the disk write queue was full",
            registry=r,
        )
        self.store_paused = Gauge(
            "hls_store_publishers_paused", "Publishers waiting for the disk write queue now",
            registry=r,
        )  # fmt: skip
        self.store_paused_seconds = Counter(
            "hls_store_paused_seconds", "Seconds publishers spent waiting for the disk", registry=r
        )
        self.store_stalled_publishers = Counter(
            "hls_store_publishers_dropped",
            "Publishers disconnected after waiting hls_write_stall_timeout for the disk",
            registry=r,
        )
        # The S3-compatible store (gateway.s3store, with hls_s3_url); its queue is the one
        # publishers pause for then (hls_store_publisher* above count those pauses too).
        self.s3_requests = Counter(
            "hls_s3_requests",
            "S3 PUTs and DELETEs carried out (method; kind: segment, init, playlist)",
            ["method", "kind"],
            registry=r,
        )
        self.s3_failures = Counter(
            "hls_s3_request_failures",
            "S3 requests that failed (each is retried with backoff)",
            ["method", "kind"],
            registry=r,
        )
        self.s3_request_seconds = Histogram(
            "hls_s3_request_seconds",
            "Time per S3 request, signing included, failed ones too",
            ["method"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.s3_bytes_uploaded = Counter(
            "hls_s3_uploaded_bytes", "Bytes of objects uploaded to S3", registry=r
        )
        self.s3_skipped = Counter(
            "hls_s3_skipped_uploads",
            "Objects deleted (left the window plus hls_retention) before they were uploaded",
            registry=r,
        )
        self.s3_queue_items = Gauge(
            "hls_s3_queue_items", "S3 uploads and deletes waiting or in flight", registry=r
        )
        self.s3_queue_bytes = Gauge(
            "hls_s3_queue_bytes", "Bytes waiting for or in S3 uploads", registry=r
        )
        self.s3_in_flight = Gauge("hls_s3_in_flight", "S3 requests in flight now", registry=r)
        self.segment_duration = Histogram(
            "hls_segment_duration_seconds",
            "Duration of produced HLS segments",
            buckets=(0.5, 1, 1.5, 2, 2.5, 3, 4, 6, 8, 10, 15),
            registry=r,
        )
        # --- push relays (gateway.relay); ``target`` is the redacted target URL -------------
        self.relay_reconnects = Counter(
            "relay_reconnects", "Push relay reconnect attempts", ["target"], registry=r
        )
        self.relay_bytes_sent = Counter(
            "relay_bytes_sent", "Bytes sent to push relay targets", ["target"], registry=r
        )
        self.relays_active = Gauge(
            "relays_active", "Push relays publishing to their target now", registry=r
        )
