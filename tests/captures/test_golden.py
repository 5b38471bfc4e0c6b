"""Golden captures: real FFmpeg publish sessions replayed through the sans-IO server connection.

The .rtmp files are the raw client->server bytes of `tests/captures/record.py` runs (FFmpeg 9 from
imageio-ffmpeg and Debian's FFmpeg 5.1, 1.5 s of 160x120@15 H.264 + AAC). However the bytes are
split, the connection must produce the same events.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from gateway.rtmp import events as ev
from gateway.rtmp.connection import NEED_DATA, Connection

HERE = Path(__file__).parent
CAPTURES = ["ffmpeg9-publish.rtmp", "ffmpeg51-publish.rtmp"]


def replay(chunks: Iterable[bytes | memoryview]) -> list[object]:
    """Feed the chunks one at a time (each is parsed before the next is taken), then EOF."""
    conn = Connection(random_bytes=lambda n: bytes(n))
    out: list[object] = []
    for chunk in itertools.chain(chunks, [b""]):
        conn.receive_data(chunk)
        while (event := conn.next_event()) is not NEED_DATA:
            out.append(event)
            if isinstance(event, ev.ConnectRequest):
                conn.accept_connect()
            elif isinstance(event, ev.PublishRequest):
                conn.accept_publish(event.stream_id)
            elif isinstance(event, ev.ConnectionClosed):
                break
        conn.data_to_send()
    return out


def splits(data: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(data)), 300))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


@pytest.mark.parametrize("name", CAPTURES)
def test_capture_yields_a_complete_publish(name: str) -> None:
    events = replay([(HERE / name).read_bytes()])
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "HandshakeComplete"
    (connect,) = [e for e in events if isinstance(e, ev.ConnectRequest)]
    assert connect.app == "live" and connect.tc_url is not None
    assert connect.tc_url.endswith("/live")
    (publish,) = [e for e in events if isinstance(e, ev.PublishRequest)]
    assert (publish.name, publish.publish_type) == ("golden", "live")
    media = [e for e in events if isinstance(e, ev.Media)]
    assert all(m.stream_id == publish.stream_id for m in media)
    assert media[0].type == 18 and media[0].body.startswith(b"\x02\x00\x0aonMetaData")
    video = [m for m in media if m.type == 9]
    audio = [m for m in media if m.type == 8]
    assert video[0].body[:2] == b"\x17\x00" and audio[0].body[:2] == b"\xaf\x00"
    assert (
        len([v for v in video if v.body[1] == 1]) == 23
    )  # -t 1.5 at 15 fps: FFmpeg ends on frame 23
    assert abs(len(audio) - 1 - 1.5 * 44100 / 1024) <= 3
    assert kinds[-1] == "ConnectionClosed"


@pytest.mark.parametrize("name", CAPTURES)
def test_capture_replay_is_split_invariant(name: str) -> None:
    data = (HERE / name).read_bytes()
    whole = replay([data])
    assert replay([data[i : i + 1] for i in range(len(data))]) == whole
    rng = random.Random(name)
    for _ in range(5):
        assert replay(splits(data, rng)) == whole


def through_one_buffer(data: bytes, rng: random.Random) -> Iterator[memoryview]:
    """Like the server's reader: every read lands in the same buffer, handed over as a view
    and overwritten by the next read (with junk first, so a kept reference would show)."""
    buffer = bytearray(4096)
    view = memoryview(buffer)
    pos = 0
    while pos < len(data):
        n = min(rng.randint(1, len(buffer)), len(data) - pos)
        buffer[:] = b"\xa5" * len(buffer)
        buffer[:n] = data[pos : pos + n]
        pos += n
        yield view[:n]


@pytest.mark.parametrize("name", CAPTURES)
def test_capture_replay_through_a_reused_read_buffer(name: str) -> None:
    data = (HERE / name).read_bytes()
    assert replay(through_one_buffer(data, random.Random(name))) == replay([data])
