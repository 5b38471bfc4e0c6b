"""JSON status API, health check and Prometheus exposition."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import prometheus_client
from quart import Response, abort
from quart_trio import QuartTrio

if TYPE_CHECKING:
    from web.app import StatusSource


def dumps(value: Any) -> str:
    # Compact and deterministic; the gateway's dicts are JSON-ready by contract.
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def json_response(value: Any, status: int = 200) -> Response:
    response = Response(dumps(value), status=status, content_type="application/json")
    # Status changes every second: no cache may answer for us.
    response.headers["Cache-Control"] = "no-store"
    return response


def install(
    web: QuartTrio, status: StatusSource, registry: prometheus_client.CollectorRegistry
) -> None:
    @web.route("/api/streams", methods=["GET"])
    async def streams() -> Response:
        return json_response({"streams": status.streams()})

    @web.route("/api/streams/<name:app>/<name:key>", methods=["GET"])
    async def stream(app: str, key: str) -> Response:
        info = status.stream(app, key)
        if info is None:
            abort(404, f"unknown stream {app}/{key}")
        return json_response(info)

    @web.route("/healthz", methods=["GET"])
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @web.route("/metrics", methods=["GET"])
    async def metrics() -> Response:
        body = prometheus_client.generate_latest(registry)
        response = Response(body, content_type=prometheus_client.CONTENT_TYPE_LATEST)
        response.headers["Cache-Control"] = "no-store"
        return response
