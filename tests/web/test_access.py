"""tokenize_playlist: every URI of a playlist carries the viewer's playback token (read_auth)."""

from __future__ import annotations

import m3u8
import pytest
from hypothesis import given
from hypothesis import strategies as st

from web.access import client_ip, tokenize_playlist

LL_PLAYLIST = b"""#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:2
#EXT-X-PART-INF:PART-TARGET=0.234
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.6,CAN-SKIP-UNTIL=12
#EXT-X-MEDIA-SEQUENCE:7
#EXT-X-MAP:URI="init-0123456789ab.mp4"
#EXT-X-PROGRAM-DATE-TIME:2026-12-05T03:00:00.000Z
#EXTINF:2.000,
seg-7.m4s
#EXT-X-PART:DURATION=0.200,URI="seg-8.0.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.200,URI="seg-8.1.m4s"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="seg-8.2.m4s"
#EXT-X-RENDITION-REPORT:URI="../low/cmaf.m3u8",LAST-MSN=8,LAST-PART=1
"""

MULTIVARIANT = b"""#EXTM3U
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-STREAM-INF:BANDWIDTH=2600000,CODECS="avc1.64001f,mp4a.40.2",RESOLUTION=1280x720
cmaf.m3u8\r
"""


def test_every_uri_of_an_ll_playlist_gets_the_token() -> None:
    out = tokenize_playlist(LL_PLAYLIST, "abc.DEF_1-2~3")
    parsed = m3u8.loads(out.decode())
    assert parsed.segment_map[0].uri == "init-0123456789ab.mp4?token=abc.DEF_1-2~3"
    assert parsed.segments[0].uri == "seg-7.m4s?token=abc.DEF_1-2~3"
    parts = parsed.segments[1].parts
    assert [p.uri for p in parts] == [
        "seg-8.0.m4s?token=abc.DEF_1-2~3",
        "seg-8.1.m4s?token=abc.DEF_1-2~3",
    ]
    assert parsed.preload_hint.uri == "seg-8.2.m4s?token=abc.DEF_1-2~3"
    assert parsed.rendition_reports[0].uri == "../low/cmaf.m3u8?token=abc.DEF_1-2~3"
    # Nothing else changed: removing the token gives the playlist back.
    assert out.replace(b"?token=abc.DEF_1-2~3", b"") == LL_PLAYLIST


def test_variant_lines_keep_their_line_ending_and_existing_queries_get_an_ampersand() -> None:
    out = tokenize_playlist(MULTIVARIANT, "t0")
    assert out.endswith(b"cmaf.m3u8?token=t0\r\n")
    assert tokenize_playlist(b"seg-1.ts?x=1\n", "t0") == b"seg-1.ts?x=1&token=t0\n"


@pytest.mark.parametrize("bad", ["", "a b", "a&b", "a\nseg.ts", 'x"', "a?b", "é"])
def test_a_token_that_is_not_url_safe_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        tokenize_playlist(LL_PLAYLIST, bad)


@given(st.lists(st.from_regex(r"[a-z0-9._-]{1,20}", fullmatch=True), max_size=8))
def test_uri_lines_and_only_they_change(names: list[str]) -> None:
    lines = [b"#EXTM3U", b"#EXT-X-TARGETDURATION:2"]
    for name in names:
        lines += [b"#EXTINF:2.0,", name.encode()]
    text = b"\n".join(lines) + b"\n"
    out = tokenize_playlist(text, "tok")
    before, after = text.split(b"\n"), out.split(b"\n")
    assert len(before) == len(after)
    for old, new in zip(before, after, strict=True):
        if old.startswith(b"#") or not old:
            assert new == old
        else:
            assert new == old + b"?token=tok"


def test_client_ip() -> None:
    assert client_ip(("192.0.2.1", 5000)) == "192.0.2.1"
    assert client_ip(None) == ""
