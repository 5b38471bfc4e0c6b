"""HTML pages (stream index, player) and the few static files they need, hls.js included.

Everything a page loads comes from the gateway itself: no CDN, no web fonts.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
from quart import Response, abort, render_template, request
from quart_trio import QuartTrio
from werkzeug.datastructures import Headers
from werkzeug.routing import BaseConverter

from web.access import AccessGate, Admission, admit_request, refusal
from web.api import operator
from web.names import PLAYLIST_MIME, RESERVED_APP_NAMES

if TYPE_CHECKING:
    from web.config import StatusSource, WebConfig, WholeGateway

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent
STATIC_DIR = WEB_DIR / "static"
# hls.js as installed by npm from web/package-lock.json (the exact version is pinned there).
DEFAULT_HLS_JS = WEB_DIR / "node_modules" / "hls.js" / "dist" / "hls.min.js"
# The command that installs it, quoted by the error a missing file produces.
HLS_JS_INSTALL_COMMAND = "npm ci --prefix web"
# Static files are served from this allow-list only, read once at start-up: no request path is
# ever joined to a directory.
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


class AssetConverter(BaseConverter):
    regex = r"[a-z0-9_-]{1,64}\.(?:js|css)"


def refused_page(admission: Admission) -> Response:
    """A plain-text refusal of a page: 401 (with a Bearer challenge) or 403."""
    status, headers, body = refusal(admission, admission.reason)
    return Response(body, status, Headers(headers))


def format_bitrate(bits_per_second: Any) -> str:
    if not isinstance(bits_per_second, int | float) or bits_per_second <= 0:
        return "-"
    if bits_per_second >= 1_000_000:
        return f"{bits_per_second / 1_000_000:.1f} Mbit/s"
    return f"{bits_per_second / 1000:.0f} kbit/s"


def format_uptime(started_at: Any, now: datetime) -> str:
    if not isinstance(started_at, str):
        return "-"
    try:
        started = datetime.fromisoformat(started_at)
    except ValueError:
        return "-"
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    seconds = max(0, int((now - started).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def stream_row(info: dict[str, Any], now: datetime) -> dict[str, str]:
    """What the index table shows for one stream dict (fields may be missing or None)."""
    width, height = info.get("width"), info.get("height")
    total = sum(
        rate
        for rate in (info.get("video_bitrate"), info.get("audio_bitrate"))
        if isinstance(rate, int | float)
    )
    codecs = info.get("codecs") or []
    live = info.get("state") == "live"
    return {
        "app": str(info.get("app", "")),
        "key": str(info.get("key", "")),
        "state": str(info.get("state", "unknown")),
        "codecs": ", ".join(str(c) for c in codecs) or "-",
        "resolution": f"{width}\u00d7{height}" if width and height else "-",
        "bitrate": format_bitrate(total),
        "uptime": format_uptime(info.get("started_at"), now) if live else "-",
    }


def _load_static() -> dict[str, tuple[bytes, str]]:
    assets = {}
    for path in sorted(STATIC_DIR.iterdir()):
        if path.is_file() and path.suffix in STATIC_TYPES:
            assets[path.name] = (path.read_bytes(), STATIC_TYPES[path.suffix])
    return assets


def install(
    web: QuartTrio,
    status: StatusSource,
    config: WebConfig,
    *,
    hls_js: Path,
    gate: AccessGate | None = None,
    whole: WholeGateway | None = None,
) -> None:
    web.url_map.converters["asset"] = AssetConverter
    assets = _load_static()
    static_cache = f"public, max-age={config.static_max_age}"
    hls_js_cache: list[bytes] = []  # filled on the first successful read

    @web.route("/", methods=["GET"])
    async def index() -> str | Response:
        admission = await operator(gate)
        if not admission.allowed:
            return refused_page(admission)
        now = datetime.now(UTC)
        found = status.streams()
        if whole is not None:
            found = await whole.streams(found)
        rows = [stream_row(info, now) for info in found]
        rows.sort(key=lambda row: (row["app"], row["key"]))
        return await render_template("index.html", rows=rows)

    # strict_slashes=False plus the check below: "/live/cam1" (typed or pasted without the
    # slash) of a stream the gateway knows is sent on to its page, the query (a token) kept;
    # any other two-component path (e.g. "/etc/passwd") leads nowhere: 404 with a hint.
    @web.route("/<name:app>/<name:key>/", methods=["GET"], strict_slashes=False)
    async def player(app: str, key: str) -> str | Response:
        if not request.path.endswith("/"):
            known = status.stream(app, key)
            if known is None and whole is not None and app not in RESERVED_APP_NAMES:
                known = await whole.stream(app, key, None)
            if app in RESERVED_APP_NAMES or known is None:
                abort(404, f"player pages end with a slash: /{app}/{key}/")
            query = request.query_string.decode("latin-1")
            target = f"/{app}/{key}/" + (f"?{query}" if query else "")
            # 301 to the path alone (relative URLs on the page then resolve under the stream).
            return Response("", status=301, headers={"Location": target})
        token = None
        if gate is not None and gate.read_auth:
            admission = await admit_request(gate, app, key)
            if not admission.allowed:
                return refused_page(admission)
            token = admission.token
        # Served for unknown streams too: the page waits for the publisher to appear.
        return await render_template(
            "player.html",
            token=token,
            app=app,
            key=key,
            playlist_url=f"/{app}/{key}/index.m3u8",
            api_url=f"/api/streams/{app}/{key}",
            poll_ms=int(config.player_poll_interval * 1000),
            playlist_mime=PLAYLIST_MIME,
        )

    @web.route("/static/<asset:name>", methods=["GET"])
    async def static_asset(name: str) -> Response:
        found = assets.get(name)
        if found is None:
            return Response(
                f"404 Not Found: no static file {name}\n",
                status=404,
                content_type="text/plain; charset=utf-8",
            )
        body, content_type = found
        return Response(body, content_type=content_type, headers={"Cache-Control": static_cache})

    @web.route("/static/vendor/hls.min.js", methods=["GET"])
    async def vendor_hls_js() -> Response:
        if not hls_js_cache:
            try:
                hls_js_cache.append(await trio.to_thread.run_sync(hls_js.read_bytes))
            except OSError as error:
                message = (
                    f"hls.js is not installed ({hls_js}: {error.strerror}); "
                    f"run `{HLS_JS_INSTALL_COMMAND}` in the repository root"
                )
                log.error("%s", message)
                return Response(
                    f"500 Internal Server Error: {message}\n",
                    status=500,
                    content_type="text/plain; charset=utf-8",
                    headers={"Cache-Control": "no-cache"},
                )
        return Response(
            hls_js_cache[0],
            content_type="text/javascript; charset=utf-8",
            headers={"Cache-Control": static_cache},
        )
