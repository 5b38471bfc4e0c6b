"""The HTTP side's Prometheus metrics, registered on the gateway's registry."""

from __future__ import annotations

import prometheus_client


class HttpMetrics:
    """Per-route request counter and latency histogram, registered on the gateway's registry."""

    def __init__(self, registry: prometheus_client.CollectorRegistry) -> None:
        self.requests = prometheus_client.Counter(
            "http_requests",
            "HTTP requests answered, by route pattern and status code",
            ["route", "status"],
            registry=registry,
        )
        self.duration = prometheus_client.Histogram(
            "http_request_duration_seconds",
            "Time to produce an HTTP response (excluding sending the body), by route pattern",
            ["route"],
            registry=registry,
        )
