"""The HTTP side: a Quart (trio) app serving HLS out of a segmenter Store, plus pages, API, metrics.

The gateway composes it: ``create_app(store, status, config=..., registry=...)`` and runs the result
on hypercorn inside its own trio.run. Nothing here writes to the store or knows about RTMP.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import prometheus_client
from quart import Response, g, request
from quart_trio import QuartTrio
from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException, NotFound

from segmenter.store import Store
from web import api, hls, pages
from web.access import AccessGate
from web.config import HealthSource, StatusSource, WebConfig, WholeGateway
from web.httputil import cors_headers, plain_error, preflight_headers
from web.lowlatency import LiveSource, Waiters
from web.metrics import HttpMetrics
from web.names import CONVERTERS, RESERVED_APP_NAMES
from web.pages import DEFAULT_HLS_JS, HLS_JS_INSTALL_COMMAND
from web.peerlimit import per_address_limit
from web.viewers import Viewers

__all__ = [
    "HLS_JS_INSTALL_COMMAND",
    "RESERVED_APP_NAMES",
    "StatusSource",
    "WebConfig",
    "create_app",
]

log = logging.getLogger(__name__)


def create_app(
    store: Store,
    status: StatusSource,
    *,
    config: WebConfig = WebConfig(),  # frozen, so one shared default is safe
    registry: prometheus_client.CollectorRegistry | None = None,
    live: LiveSource | None = None,
    waiters: Waiters | None = None,
    gate: AccessGate | None = None,
    health: HealthSource | None = None,
    viewers: Viewers | None = None,
    whole: WholeGateway | None = None,
) -> QuartTrio:
    """Build the app. ``registry`` receives the HTTP metrics and is exposed at /metrics.
    ``live`` gives the LL-HLS playlists being made (blocking reload, hinted parts); their
    changes are announced on ``waiters``. ``gate`` decides who may read and administer
    (None: anyone). ``health`` makes /healthz answer 503 while it names a failure.
    ``viewers`` counts the playback sessions served (web.viewers). ``whole``: this is one
    worker process of several; /api, /metrics and the stream list speak for all of them."""
    if registry is None:
        registry = prometheus_client.CollectorRegistry()
    web = QuartTrio(__name__, template_folder="templates", static_folder=None)
    web.url_map.converters.update(CONVERTERS)
    # "//x" must not be redirected elsewhere: a bad path is simply not found.
    web.url_map.merge_slashes = False
    metrics = HttpMetrics(registry)

    ll = hls.LowLatency(live, waiters or Waiters()) if live is not None else None
    hls.install(web, store, config, ll, gate)
    api.install(web, status, registry, gate, health, whole)
    hls_js = config.hls_js_path or DEFAULT_HLS_JS
    pages.install(web, status, config, hls_js=hls_js, gate=gate, whole=whole)

    @web.before_request
    async def _start() -> Response | None:
        g.started = time.perf_counter()
        if request.method == "OPTIONS" and request.url_rule is not None:
            # CORS preflight (Fetch §3.2.2): answer for any route that exists.
            response = Response(
                b"", status=204, headers=Headers(preflight_headers(config.cors_max_age))
            )
            del response.headers["Content-Type"]  # a 204 has no content to describe
            return response
        return None

    @web.after_request
    async def _finish(response: Response) -> Response:
        headers = response.headers
        for name, value in cors_headers(
            config.cors_origins,
            request.headers.get("Origin"),
            headers.get("Vary"),
            "Access-Control-Allow-Origin" in headers,
        ):
            headers[name] = value
        rule = request.url_rule
        route = rule.rule if rule is not None else config.unmatched_route_label
        metrics.requests.labels(route=route, status=str(response.status_code)).inc()
        started = getattr(g, "started", None)
        if started is not None:
            metrics.duration.labels(route=route).observe(time.perf_counter() - started)
        return response

    @web.errorhandler(HTTPException)
    async def _http_error(error: HTTPException) -> Response:
        code = error.code or 500
        message = error.description or error.name
        if error.code == 404 and message == NotFound.description:
            message = "no such stream, file or page"  # shorter than werkzeug's advice
        allow = [(k, v) for k, v in error.get_headers() if k.lower() == "allow" and code == 405]
        if request.path.startswith("/api/"):
            response = Response(
                api.dumps({"error": error.name.lower(), "message": message}),
                status=code,
                content_type="application/json",
            )
            for name, value in allow:
                response.headers[name] = value
            # An error may be temporary (stream not started yet): never let a cache keep it.
            response.headers["Cache-Control"] = "no-cache"
            return response
        headers, body = plain_error(code, error.name, message, allow)
        return Response(body, status=code, headers=Headers(headers))

    @web.errorhandler(Exception)
    async def _crash(error: Exception) -> Response:
        log.exception("unhandled error serving %s %s", request.method, request.path)
        response = Response("500 Internal Server Error: see the gateway log\n", status=500)
        response.content_type = "text/plain; charset=utf-8"
        response.headers["Cache-Control"] = "no-cache"
        return response

    # HLS requests skip Quart (see web.hls); hypercorn and the test client both call asgi_app.
    fast = hls.fast_path(web.asgi_app, store, config, metrics, ll, gate, viewers)
    refused = metrics.requests.labels(route="<per-address limit>", status="429").inc
    limited = per_address_limit(fast, config.max_requests_per_ip, refused)
    web.asgi_app = limited  # type: ignore[method-assign,assignment]
    if whole is not None:
        web.asgi_app = worker_header(limited, whole.worker)  # type: ignore[method-assign]
    return web


def worker_header(inner: Any, worker: int) -> Any:
    """Every response says which worker process answered it (Gateway-Worker): what an
    operator needs to tell one worker's fault from another's."""
    value = str(worker).encode()

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        async def marked(message: Any) -> None:
            if message.get("type") == "http.response.start":
                message = {
                    **message,
                    "headers": [*message.get("headers", ()), (b"gateway-worker", value)],
                }
            await send(message)

        await inner(scope, receive, marked if scope.get("type") == "http" else send)

    return asgi
