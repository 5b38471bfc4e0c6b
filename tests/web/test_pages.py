"""Index page, player page, static files and the vendored hls.js route."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from quart_trio import QuartTrio

from segmenter.store import MemoryStore
from tests.web.conftest import FakeStatus, stream_info
from web.app import HLS_JS_INSTALL_COMMAND, WebConfig, create_app
from web.pages import DEFAULT_HLS_JS, format_uptime, stream_row

EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.IGNORECASE)


async def test_index_lists_streams(app: QuartTrio, status: FakeStatus) -> None:
    status.set(stream_info("studio", "b", state="waiting"))
    response = await app.test_client().get("/")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    html = await response.get_data(as_text=True)
    assert '<a href="/live/cam1/">live/cam1</a>' in html
    assert '<a href="/studio/b/">studio/b</a>' in html
    assert "avc1.64001f, mp4a.40.2" in html
    assert "1280\u00d7720" in html
    assert "2.6 Mbit/s" in html
    assert re.search(r"<td>\d+:\d\d:\d\d</td>", html)  # uptime of the live stream
    assert not EXTERNAL.search(html)


async def test_index_without_streams(store: MemoryStore) -> None:
    app = create_app(store, FakeStatus())
    html = await (await app.test_client().get("/")).get_data(as_text=True)
    assert "No streams yet" in html


async def test_index_escapes_names(app: QuartTrio, status: FakeStatus) -> None:
    info = stream_info()
    info["codecs"] = ["<script>alert(1)</script>"]
    status.set(info)
    html = await (await app.test_client().get("/")).get_data(as_text=True)
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;" in html


def test_stream_row_tolerates_missing_fields() -> None:
    row = stream_row({"app": "a", "key": "b", "state": "waiting"}, datetime.now(UTC))
    assert row == {
        "app": "a",
        "key": "b",
        "state": "waiting",
        "codecs": "-",
        "resolution": "-",
        "bitrate": "-",
        "uptime": "-",
    }


def test_format_uptime() -> None:
    now = datetime(2024, 5, 1, 13, 2, 3, tzinfo=UTC)
    assert format_uptime("2024-05-01T12:00:00+00:00", now) == "1:02:03"
    assert format_uptime((now - timedelta(seconds=5)).isoformat(), now) == "0:00:05"
    assert format_uptime("not a date", now) == "-"
    assert format_uptime(None, now) == "-"


@pytest.mark.parametrize("path", ["/live/cam1/", "/live/never-published/"])
async def test_player_page(app: QuartTrio, path: str) -> None:
    response = await app.test_client().get(path)
    assert response.status_code == 200
    html = await response.get_data(as_text=True)
    app_name, key = path.strip("/").split("/")
    assert "<video" in html
    # player.js fills these with the latency (PDT) and the rendition playing.
    assert '<span id="latency"' in html and '<span id="rendition"' in html
    assert f'<a id="playlist-link" href="/{app_name}/{key}/index.m3u8"' in html  # ?playlist=ts
    assert f'data-playlist="/{app_name}/{key}/index.m3u8"' in html
    assert f'data-api="/api/streams/{app_name}/{key}"' in html
    assert 'data-poll-ms="2000"' in html
    assert '<script src="/static/vendor/hls.min.js"></script>' in html
    assert '<script src="/static/player.js"></script>' in html
    assert not EXTERNAL.search(html)


async def test_player_page_without_its_slash_redirects_keeping_the_query(
    app: QuartTrio, status: FakeStatus
) -> None:
    status.set(stream_info("live", "cam1"))
    response = await app.test_client().get("/live/cam1")
    assert response.status_code == 301 and response.headers["Location"] == "/live/cam1/"
    response = await app.test_client().get("/live/cam1?token=p1~9~~x")
    assert response.headers["Location"] == "/live/cam1/?token=p1~9~~x"
    # A path of no known stream leads nowhere (no page for "/etc/passwd"), with a hint.
    unknown = await app.test_client().get("/live/other")
    assert unknown.status_code == 404 and b"/live/other/" in await unknown.get_data()


async def test_player_poll_interval_from_config(store: MemoryStore, status: FakeStatus) -> None:
    app = create_app(store, status, config=WebConfig(player_poll_interval=0.5))
    html = await (await app.test_client().get("/live/cam1/")).get_data(as_text=True)
    assert 'data-poll-ms="500"' in html


@pytest.mark.parametrize(
    "name, content_type", [("player.js", "text/javascript"), ("style.css", "text/css")]
)
async def test_static_assets(app: QuartTrio, name: str, content_type: str) -> None:
    response = await app.test_client().get(f"/static/{name}")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith(content_type)
    assert response.headers["Cache-Control"] == "public, max-age=3600"
    body = await response.get_data()
    assert body == (Path(__file__).parents[2] / "web" / "static" / name).read_bytes()
    assert not EXTERNAL.search(body.decode())
    assert b"http://" not in body and b"https://" not in body


async def test_unknown_static_asset_is_404(app: QuartTrio) -> None:
    assert (await app.test_client().get("/static/nothing.js")).status_code == 404


async def test_vendor_hls_js_is_served(app: QuartTrio) -> None:
    response = await app.test_client().get("/static/vendor/hls.min.js")
    assert response.status_code == 200, (
        f"hls.js missing: run `{HLS_JS_INSTALL_COMMAND}` before the tests"
    )
    assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
    body = await response.get_data()
    assert body == DEFAULT_HLS_JS.read_bytes()
    assert len(body) > 100_000


def test_vendor_hls_js_is_the_pinned_version() -> None:
    import json

    web_dir = Path(__file__).parents[2] / "web"
    pinned = json.loads((web_dir / "package.json").read_text())["dependencies"]["hls.js"]
    assert re.fullmatch(r"1\.\d+\.\d+", pinned), "pin an exact 1.x version"
    installed = json.loads((web_dir / "node_modules/hls.js/package.json").read_text())["version"]
    assert installed == pinned


async def test_vendor_hls_js_missing_is_a_clear_500(
    store: MemoryStore, status: FakeStatus, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = WebConfig(hls_js_path=tmp_path / "nope" / "hls.min.js")
    app = create_app(store, status, config=config)
    with caplog.at_level(logging.ERROR, logger="web.pages"):
        response = await app.test_client().get("/static/vendor/hls.min.js")
    assert response.status_code == 500
    body = await response.get_data(as_text=True)
    assert HLS_JS_INSTALL_COMMAND in body
    assert "hls.js is not installed" in body
    assert response.headers["Cache-Control"] == "no-cache"
    assert any(HLS_JS_INSTALL_COMMAND in r.getMessage() for r in caplog.records)
