"""deploy/nginx/gateway-cache.conf without traffic: Debian's nginx accepts it (`nginx -t`), the
addresses the tests rewrite are there once, and the choices that matter hold (what is cached,
for how long, what is collapsed, the timeouts against the gateway's blocking deadline). It runs
with real traffic in tests/e2e/test_front.py."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from bench import cache
from gateway.config import Settings
from web.lowlatency import BLOCK_TARGET_DURATIONS

TEXT = cache.DEPLOY_CONF.read_text()


def directives(text: str) -> str:
    """The configuration without comments."""
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def block(text: str, opening: str) -> str:
    """The body of the block that starts with ``opening`` (braces counted)."""
    start = text.index(opening)
    depth, i = 0, text.index("{", start)
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1 : j]
    raise AssertionError(f"{opening}: unclosed block")


def top_level(text: str) -> str:
    """``text`` without its nested blocks (a server's own directives, not its locations')."""
    out, depth = [], 0
    for char in text:
        depth += char == "{"
        if depth == 0:
            out.append(char)
        depth -= char == "}"
    return "".join(out)


def seconds(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([smhd]?)", value).groups()  # type: ignore[union-attr]
    return int(number) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def value(text: str, name: str) -> str:
    (found,) = re.findall(rf"^\s*{name}\s+([^;]+);", text, re.M)
    return str(found).strip()


CONF = directives(TEXT)
SERVER = block(CONF, "server {")
SERVER_OWN = top_level(SERVER)
PARTS = block(SERVER, 'location ~ "^/[^/]+/[^/]+/[^/]+-\\d+\\.\\d+\\.m4s$"')
MEDIA = block(SERVER, 'location ~ "^/[^/]+/[^/]+/[^/]+\\.(m4s|ts|mp4)$"')
PLAYLISTS = block(SERVER, 'location ~ "^/[^/]+/[^/]+/[^/]+\\.m3u8$"')
BLOCKING = block(SERVER, "location ^~ /.blocking/")


def location_regex(opening: str) -> re.Pattern[str]:
    (pattern,) = re.findall(r'location ~ "([^"]+)"', opening)
    return re.compile(pattern)


def test_nginx_accepts_the_rendered_file(tmp_path: Path) -> None:
    conf = cache.write_conf(tmp_path, upstream_port=18080, listen_port=18081)
    out = subprocess.run(
        cache.check_command(tmp_path, conf), capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    assert "test is successful" in out.stderr


def test_the_rewritten_addresses_are_there_once() -> None:
    rendered = cache.render(TEXT, upstream_port=1, listen_port=2, cache_dir=Path("/c"))
    assert "server 127.0.0.1:1;" in rendered and "listen 127.0.0.1:2;" in rendered
    assert cache.CACHE_DIR not in rendered
    with pytest.raises(ValueError, match="listen 80"):
        cache.render(TEXT.replace("listen 80;", ""), upstream_port=1, listen_port=2,
                     cache_dir=Path("/c"))  # fmt: skip


def test_media_is_cached_long_and_collapsed() -> None:
    for body in (PARTS, MEDIA):
        assert value(body, "proxy_cache") == "gateway_media"
        assert value(body, "proxy_cache_lock") == "on"
        status, valid = value(body, "proxy_cache_valid").split()
        assert status == "200" and seconds(valid) >= 3600  # errors are never listed
    # Parts may block in the gateway: their waiters keep the server's long lock timeout;
    # whole segments are complete, so a waiter gives up on the lock quickly.
    assert "proxy_cache_lock_timeout" not in PARTS
    assert value(MEDIA, "proxy_cache_lock_timeout") == "100ms"


def test_locations_match_the_names_the_gateway_makes() -> None:
    openings = re.findall(r'location ~ "[^"]+"', SERVER)
    parts, media, playlists = (location_regex(o) for o in openings)

    def first(path: str) -> str | None:  # nginx tries regex locations in order
        for name, pattern in (("parts", parts), ("media", media), ("playlists", playlists)):
            if pattern.match(path):
                return name
        return None

    assert first("/live/cam/ab12cd34-7.3.m4s") == "parts"
    assert first("/live/cam/ab12cd34-v1-7.12.m4s") == "parts"
    assert first("/live/cam/ab12cd34-7.m4s") == "media"
    assert first("/live/cam/init-a1b2.mp4") == "media"
    assert first("/live/cam/ab12cd34-7.ts") == "media"
    assert first("/live/cam/cmaf.m3u8") == "playlists"
    assert first("/live/cam/cmaf-a2.m3u8") == "playlists"
    assert first("/api/streams") is None and first("/live/cam/") is None
    assert first("/.blocking/live/cam/cmaf.m3u8") is None


def test_playlists_are_keyed_by_tenth_of_a_second_blocking_ones_by_query() -> None:
    for body in (PLAYLISTS, BLOCKING):
        assert value(body, "proxy_cache") == "gateway_playlists"
        assert value(body, "proxy_cache_lock") == "on"
        key = value(body, "proxy_cache_key")
        # The query and the origin (whose CORS answer it is).
        assert "$is_args$args" in key and "$http_origin" in key
        status, valid = value(body, "proxy_cache_valid").split()
        assert status == "200" and seconds(valid) <= 1
    assert "$gateway_tenth" in value(PLAYLISTS, "proxy_cache_key")
    assert "$gateway_tenth" not in value(BLOCKING, "proxy_cache_key")
    # Plain requests are complete at once: a waiter gives up on the lock within a tenth.
    assert value(PLAYLISTS, "proxy_cache_lock_timeout") == "50ms"
    assert "proxy_cache_lock_timeout" not in BLOCKING
    # An _HLS_msn sends the request to the blocking location, internal only, which gives the
    # gateway back the original path.
    assert re.search(
        r'if \(\$arg__HLS_msn != ""\)\s*{\s*rewrite \^ /\.blocking\$uri last;', PLAYLISTS
    )
    assert re.search(r"^\s*internal;", BLOCKING, re.M)
    assert value(BLOCKING, "proxy_pass") == "http://gateway_http/"
    tenth = block(CONF, "map $msec $gateway_tenth")
    (regex,) = re.findall(r'"~(\^[^"]+)"', tenth)
    match = re.match(regex.replace("?<tenth>", "?P<tenth>"), "1733390000.123")
    assert match is not None and match["tenth"] == "1733390000.1"
    # A tenth of a second is under the default part: a plain playlist is never a part old.
    assert Settings().hls_part_duration > 0.1


def test_timeouts_outlast_the_gateways_blocking_deadline() -> None:
    deadline = BLOCK_TARGET_DURATIONS * Settings().hls_max_segment_duration
    assert seconds(value(SERVER_OWN, "proxy_read_timeout")) > deadline
    assert seconds(value(SERVER_OWN, "proxy_cache_lock_timeout")) > deadline
    assert seconds(value(SERVER_OWN, "proxy_cache_lock_age")) > deadline


def test_headers_pass_through_and_the_cache_status_is_shown() -> None:
    assert value(SERVER_OWN, "proxy_set_header Accept-Encoding") == "gzip"
    assert value(SERVER_OWN, "gunzip") == "on"
    assert value(SERVER_OWN, "proxy_ignore_headers") == "Vary"
    assert value(SERVER_OWN, "add_header X-Cache-Status") == "$upstream_cache_status always"
    # Locations that set headers of their own would drop the server's add_header.
    assert SERVER.count("add_header") == SERVER_OWN.count("add_header") == 1
    # No header of the gateway is hidden or replaced.
    assert "proxy_hide_header" not in CONF and "more_set_headers" not in CONF
    # Everything else goes through uncached.
    rest = block(SERVER, "location / {")
    assert "proxy_cache " not in rest and "proxy_pass http://gateway_http;" in rest
