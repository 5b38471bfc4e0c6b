"""JSON status API, health check and Prometheus exposition."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import prometheus_client
from quart import Response, abort, request
from quart_trio import QuartTrio

from web.access import BEARER_CHALLENGE, AccessGate, Admission, admit_request

if TYPE_CHECKING:
    from web.config import HealthSource, StatusSource, WholeGateway

# Fields of a stream's status that name a peer's address: for operators only.
ADDRESS_FIELDS = ("publisher", "players", "relays", "pulls")


def dumps(value: Any) -> str:
    # Compact and deterministic; the gateway's dicts are JSON-ready by contract.
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def json_response(value: Any, status: int = 200) -> Response:
    response = Response(dumps(value), status=status, content_type="application/json")
    # Status changes every second: no cache may answer for us.
    response.headers["Cache-Control"] = "no-store"
    return response


def refused(admission: Admission) -> Response:
    """A JSON refusal: 401 (with a Bearer challenge, RFC 6750 §3) or 403."""
    error = "unauthorized" if admission.status == 401 else "forbidden"
    response = json_response({"error": error, "message": admission.reason}, admission.status)
    if admission.status == 401:
        response.headers["WWW-Authenticate"] = BEARER_CHALLENGE[1]
    return response


def without_addresses(info: dict[str, Any]) -> dict[str, Any]:
    """A stream's status as anyone allowed to watch it may see it."""
    out = {k: v for k, v in info.items() if k not in ADDRESS_FIELDS}
    out["players"] = len(info.get("players") or ())
    return out


async def operator(gate: AccessGate | None) -> Admission:
    """Is this request an operator's (api_token, or a hook or token allowing "api")?"""
    if gate is None or gate.api_open:
        return Admission(True, operator=True)
    query = request.query_string.decode("latin-1")
    ip = request.remote_addr or ""
    return await gate.admit_api(query, request.headers.get("Authorization"), ip)


def install(
    web: QuartTrio,
    status: StatusSource,
    registry: prometheus_client.CollectorRegistry,
    gate: AccessGate | None = None,
    health: HealthSource | None = None,
    whole: WholeGateway | None = None,
) -> None:
    """``whole``: with worker processes, what every worker knows, not this one alone."""

    @web.route("/api/streams", methods=["GET"])
    async def streams() -> Response:
        admission = await operator(gate)
        if not admission.allowed:
            return refused(admission)
        found = status.streams()
        if whole is not None:
            found = await whole.streams(found)
        return json_response({"streams": found})

    @web.route("/api/streams/<name:app>/<name:key>", methods=["GET"])
    async def stream(app: str, key: str) -> Response:
        # The player page polls this for the state it shows: a viewer may ask (as a read of
        # the stream, so no hook call per poll), an operator sees the addresses too.
        admission = Admission(False)
        if gate is None or gate.api_open or "Authorization" in request.headers:
            admission = await operator(gate)
        read = admission
        if not admission.allowed:
            read = Admission(True)
            if gate is not None and gate.read_auth:
                read = await admit_request(gate, app, key)
            if not read.allowed:
                return refused(read)
        info = status.stream(app, key)
        if whole is not None:
            info = await whole.stream(app, key, info)
        if info is None:
            abort(404, f"unknown stream {app}/{key}")
        if not admission.allowed:
            info = without_addresses(info)
        if read.token is not None:
            info["token"] = read.token  # the viewer's renewed playback token
        return json_response(info)

    @web.route("/healthz", methods=["GET"])
    async def healthz() -> Response:
        # 503 while the store fails: a balancer or orchestrator stops routing viewers here.
        failure = health.failure if health is not None else None
        if failure is None:
            return json_response({"status": "ok"})
        since = datetime.fromtimestamp(failure.since, UTC).isoformat(timespec="seconds")
        return json_response(
            {"status": "failing", "reason": failure.reason, "since": since}, status=503
        )

    @web.route("/metrics", methods=["GET"])
    async def metrics() -> Response:
        admission = await operator(gate)
        if not admission.allowed:
            return refused(admission)
        body = prometheus_client.generate_latest(registry)
        if whole is not None:
            body = await whole.metrics(body)
        response = Response(body, content_type=prometheus_client.CONTENT_TYPE_LATEST)
        response.headers["Cache-Control"] = "no-store"
        return response
