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


def seconds(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([smhd]?)", value).groups()  # type: ignore[union-attr]
    return int(number) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def value(text: str, name: str) -> str:
    (found,) = re.findall(rf"^\s*{name}\s+([^;]+);", text, re.M)
    return str(found).strip()


CONF = directives(TEXT)
SERVER = block(CONF, "server {")
MEDIA = block(SERVER, 'location ~ "^/[^/]+/[^/]+/[^/]+\\.(m4s|ts|mp4)$"')
PLAYLISTS = block(SERVER, 'location ~ "^/[^/]+/[^/]+/[^/]+\\.m3u8$"')


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
    assert value(MEDIA, "proxy_cache") == "gateway_media"
    assert value(MEDIA, "proxy_cache_lock") == "on"
    status, valid = value(MEDIA, "proxy_cache_valid").split()
    assert status == "200" and seconds(valid) >= 3600  # errors are never listed
    # The part names the gateway makes are what the location matches.
    pattern = re.compile(r"^/[^/]+/[^/]+/[^/]+\.(m4s|ts|mp4)$")
    for path in ("/live/cam/ab12-7.m4s", "/live/cam/ab12-7.3.m4s", "/live/cam/init-a1.mp4",
                 "/live/cam/ab12-7.ts"):  # fmt: skip
        assert pattern.match(path), path
    assert not pattern.match("/live/cam/cmaf.m3u8") and not pattern.match("/api/streams")


def test_playlists_are_keyed_by_query_and_by_tenth_of_a_second() -> None:
    assert value(PLAYLISTS, "proxy_cache") == "gateway_playlists"
    assert value(PLAYLISTS, "proxy_cache_lock") == "on"
    key = value(PLAYLISTS, "proxy_cache_key")
    # The query (blocking reloads), the origin (CORS answers) and the time slot of the others.
    assert "$is_args$args" in key and "$http_origin" in key and "$gateway_playlist_slot" in key
    slot = block(CONF, "map $arg__HLS_msn $gateway_playlist_slot")
    assert re.search(r'""\s+\$gateway_tenth;', slot) and re.search(r'default\s+"";', slot)
    tenth = block(CONF, "map $msec $gateway_tenth")
    (regex,) = re.findall(r'"~(\^[^"]+)"', tenth)
    match = re.match(regex.replace("?<tenth>", "?P<tenth>"), "1733390000.123")
    assert match is not None and match["tenth"] == "1733390000.1"
    # The slot is shorter than the default part, so a plain playlist is never older than a part.
    assert Settings().hls_part_duration > 0.1
    status, valid = value(PLAYLISTS, "proxy_cache_valid").split()
    assert status == "200" and seconds(valid) <= 1


def test_timeouts_outlast_the_gateways_blocking_deadline() -> None:
    deadline = BLOCK_TARGET_DURATIONS * Settings().hls_max_segment_duration
    assert seconds(value(SERVER, "proxy_read_timeout")) > deadline
    assert seconds(value(SERVER, "proxy_cache_lock_timeout")) > deadline
    assert seconds(value(SERVER, "proxy_cache_lock_age")) > deadline


def test_headers_pass_through_and_the_cache_status_is_shown() -> None:
    assert value(SERVER, "proxy_set_header Accept-Encoding") == "gzip"
    assert value(SERVER, "gunzip") == "on"
    assert value(SERVER, "proxy_ignore_headers") == "Vary"
    assert value(SERVER, "add_header X-Cache-Status") == "$upstream_cache_status always"
    # No header of the gateway is hidden or replaced.
    assert "proxy_hide_header" not in CONF and "more_set_headers" not in CONF
    # Everything else goes through uncached.
    rest = block(SERVER, "location / {")
    assert "proxy_cache " not in rest and "proxy_pass http://gateway_http;" in rest
