"""JSON API, health check, metrics and error pages."""

from __future__ import annotations

import json
import logging
from typing import Any

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families
from quart_trio import QuartTrio

from segmenter.store import MemoryStore, StoreHealth
from tests.web.conftest import FakeStatus, stream_info
from web.app import create_app

SEGMENT_ROUTE = "/<name:app>/<name:key>/<segment:file>"


async def test_streams_list(app: QuartTrio, status: FakeStatus) -> None:
    status.set(stream_info("live", "cam2", state="waiting"))
    response = await app.test_client().get("/api/streams")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body = json.loads(await response.get_data())
    assert body == {"streams": status.streams()}
    assert {s["key"] for s in body["streams"]} == {"cam1", "cam2"}


async def test_one_stream(app: QuartTrio, status: FakeStatus) -> None:
    response = await app.test_client().get("/api/streams/live/cam1")
    assert response.status_code == 200
    body = json.loads(await response.get_data())
    assert body == status.stream("live", "cam1")
    for field in ("app", "key", "state", "codecs", "width", "height", "warnings"):
        assert field in body


@pytest.mark.parametrize("url", ["/api/streams/live/nobody", "/api/streams/x/y"])
async def test_unknown_stream_is_json_404(app: QuartTrio, url: str) -> None:
    response = await app.test_client().get(url)
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json"
    body = json.loads(await response.get_data())
    assert body["error"] == "not found"
    assert "unknown stream" in body["message"]


async def test_unknown_api_path_is_json_404(app: QuartTrio) -> None:
    response = await app.test_client().get("/api/nothing")
    assert response.status_code == 404
    assert json.loads(await response.get_data())["error"] == "not found"


async def test_healthz(app: QuartTrio) -> None:
    response = await app.test_client().get("/healthz")
    assert response.status_code == 200
    assert json.loads(await response.get_data()) == {"status": "ok"}


async def test_healthz_names_a_store_failure_until_it_recovers(
    store: MemoryStore, status: FakeStatus
) -> None:
    health = StoreHealth()
    client = create_app(store, status, health=health).test_client()
    health.failed("store: cannot write live/cam/seg-12.ts: [Errno 28] No space left on device")
    response = await client.get("/healthz")
    assert response.status_code == 503
    body = json.loads(await response.get_data())
    assert body["status"] == "failing"
    assert body["reason"] == (
        "store: cannot write live/cam/seg-12.ts: [Errno 28] No space left on device"
    )
    assert body["since"].endswith("+00:00")
    assert response.headers["Cache-Control"] == "no-store"
    health.succeeded()
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert json.loads(await response.get_data()) == {"status": "ok"}


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


async def test_metrics_count_requests_by_route_pattern(
    app: QuartTrio, registry: prometheus_client.CollectorRegistry
) -> None:
    client = app.test_client()
    for name in ("ab12-00012.ts", "ab12-00012.ts", "missing.ts"):
        await client.get(f"/live/cam1/{name}")
    await client.get("/..%2f..%2fetc/passwd")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = _samples(await response.get_data(as_text=True))

    def count(route: str, code: str) -> float:
        key = ("http_requests_total", frozenset({("route", route), ("status", code)}))
        return samples.get(key, 0.0)

    assert count(SEGMENT_ROUTE, "200") == 2
    assert count(SEGMENT_ROUTE, "404") == 1
    assert count("<unmatched>", "404") == 1
    duration = ("http_request_duration_seconds_count", frozenset({("route", SEGMENT_ROUTE)}))
    assert samples[duration] == 3
    # The raw paths never become labels (bounded cardinality).
    assert not any("ab12" in value for (_, labels) in samples for _, value in labels)
    # The same registry object is what /metrics exposes.
    assert (
        registry.get_sample_value("http_requests_total", {"route": SEGMENT_ROUTE, "status": "200"})
        == 2
    )


async def test_metrics_exposes_gateway_collectors(store: MemoryStore, status: FakeStatus) -> None:
    registry = prometheus_client.CollectorRegistry()
    gauge = prometheus_client.Gauge("gateway_streams", "streams", registry=registry)
    gauge.set(3)
    app = create_app(store, status, registry=registry)
    text = await (await app.test_client().get("/metrics")).get_data(as_text=True)
    assert _samples(text)[("gateway_streams", frozenset())] == 3


async def test_default_registry_is_private(store: MemoryStore, status: FakeStatus) -> None:
    # Two apps without a registry must not collide on the global default registry.
    first = create_app(store, status)
    second = create_app(store, status)
    await first.test_client().get("/healthz")
    text = await (await second.test_client().get("/metrics")).get_data(as_text=True)
    assert 'route="/healthz"' not in text


class BrokenStatus(FakeStatus):
    def streams(self) -> list[dict[str, Any]]:
        raise RuntimeError("status source exploded")

    def stream(self, app: str, key: str) -> dict[str, Any] | None:
        raise RuntimeError("status source exploded")


@pytest.mark.parametrize("url", ["/api/streams", "/api/streams/live/cam1", "/"])
async def test_internal_error_is_plain_and_logged(
    store: MemoryStore, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(store, BrokenStatus())
    with caplog.at_level(logging.ERROR, logger="web.app"):
        response = await app.test_client().get(url)
    assert response.status_code == 500
    body = await response.get_data(as_text=True)
    assert body.startswith("500 Internal Server Error")
    assert "Traceback" not in body
    assert "exploded" not in body
    assert any("unhandled error" in r.getMessage() for r in caplog.records)
