"""bench.llhls and the llviewers client against a tiny in-process LL-HLS server (no gateway)."""

from __future__ import annotations

import gzip
import time
from collections import Counter
from datetime import UTC, datetime
from functools import partial
from itertools import pairwise
from urllib.parse import parse_qs, urlsplit

import trio

from bench import llhls
from bench.llviewers import Shared, figures, viewer

PLAYLIST = """#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.6
#EXT-X-PART-INF:PART-TARGET=0.2
#EXT-X-MEDIA-SEQUENCE:7
#EXT-X-MAP:URI="init.mp4"
#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00.000+00:00
#EXTINF:2.000,
s7.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:02.000+00:00
#EXT-X-PART:DURATION=0.2,URI="p8.0.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.2,URI="p8.1.m4s"
#EXTINF:0.400,
s8.m4s
#EXT-X-PART:DURATION=0.2,URI="p9.0.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.2,URI="p9.1.m4s"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="p9.2.m4s"
"""
EPOCH = datetime(2026, 1, 1, tzinfo=UTC).timestamp()


def test_parse_finds_parts_edge_and_wall_clock_ends() -> None:
    pl = llhls.parse(PLAYLIST)
    assert pl.media_sequence == 7 and pl.segments == 2 and pl.part_target == 0.2
    assert pl.can_block_reload and pl.has_pdt and not pl.ended
    assert pl.edge == (9, 2) and pl.hint == "p9.2.m4s"
    assert sorted(pl.parts) == [(8, 0), (8, 1), (9, 0), (9, 1)]
    assert pl.parts[8, 1].uri == "p8.1.m4s" and pl.parts[8, 1].end_wall == EPOCH + 2.4
    # The open segment has no PDT of its own: the previous one's plus its EXTINF.
    assert abs((pl.parts[9, 1].end_wall or 0) - (EPOCH + 2.8)) < 1e-6
    # After the last part of a complete segment comes part 0 of the next one.
    assert pl.next_after(8, 1) == (9, 0)
    assert pl.next_after(9, 1) == (9, 2)
    assert pl.next_after(8, 0) == (8, 1)


def test_parse_byteranges_and_resolve() -> None:
    pl = llhls.parse(
        "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n"
        '#EXT-X-PART:DURATION=0.2,URI="s0.mp4",BYTERANGE="100@0"\n'
        '#EXT-X-PART:DURATION=0.2,URI="s0.mp4",BYTERANGE="50"\n'
    )
    assert pl.parts[0, 0].byterange == (0, 100) and pl.parts[0, 1].byterange == (100, 50)
    assert pl.parts[0, 1].end_wall is None and pl.edge == (0, 2)
    assert llhls.resolve("/live/k/cmaf.m3u8", "p.m4s") == "/live/k/p.m4s"
    assert llhls.resolve("/live/k/cmaf.m3u8", "/x/p.m4s") == "/x/p.m4s"
    assert llhls.resolve("/live/k/cmaf.m3u8", "http://h:1/y/p.m4s") == "/y/p.m4s"


class MockServer:
    """Makes a PART-second part every PART seconds, PER_SEGMENT to a segment; answers blocking
    reloads once the part exists; playlists gzip-encoded, parts chunked."""

    PART = 0.05
    PER_SEGMENT = 4
    WINDOW = 3  # segments listed

    def __init__(self) -> None:
        self.made = 0
        self.start = time.time()
        self.changed = trio.Event()

    async def tick(self) -> None:
        while True:
            await trio.sleep(self.PART)
            self.made += 1
            self.changed.set()
            self.changed = trio.Event()

    def playlist(self) -> str:
        complete, open_parts = divmod(self.made, self.PER_SEGMENT)
        first = max(0, complete - self.WINDOW)
        lines = [
            "#EXTM3U",
            "#EXT-X-TARGETDURATION:1",
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES",
            f"#EXT-X-PART-INF:PART-TARGET={self.PART}",
            f"#EXT-X-MEDIA-SEQUENCE:{first}",
        ]
        for msn in range(first, complete + 1):
            start = self.start + msn * self.PER_SEGMENT * self.PART
            when = datetime.fromtimestamp(start, UTC).isoformat(timespec="milliseconds")
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{when}")
            parts = self.PER_SEGMENT if msn < complete else open_parts
            lines += [
                f'#EXT-X-PART:DURATION={self.PART},URI="p{msn}.{i}.m4s"' for i in range(parts)
            ]
            if msn < complete:
                lines += [f"#EXTINF:{self.PER_SEGMENT * self.PART:.3f},", f"s{msn}.m4s"]
        lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="p{complete}.{open_parts}.m4s"')
        return "\n".join(lines) + "\n"

    async def handle(self, stream: trio.SocketStream) -> None:
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                target = head.split(b" ")[1].decode()
                url = urlsplit(target)
                if url.path.endswith(".m3u8"):
                    query = parse_qs(url.query)
                    if "_HLS_msn" in query:
                        msn, part = int(query["_HLS_msn"][0]), int(query["_HLS_part"][0])
                        if part >= self.PER_SEGMENT:
                            msn, part = msn + 1, 0
                        while self.made <= msn * self.PER_SEGMENT + part:
                            await self.changed.wait()
                    body = gzip.compress(self.playlist().encode())
                    await stream.send_all(
                        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
                        + f"Content-Length: {len(body)}\r\n\r\n".encode()
                        + body
                    )
                else:
                    chunk = b"x" * 1000
                    await stream.send_all(
                        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                        + b"3e8\r\n" + chunk + b"\r\n" + b"3e8\r\n" + chunk + b"\r\n0\r\n\r\n"
                    )  # fmt: skip
        except trio.BrokenResourceError:
            return


async def test_viewers_follow_every_part_of_a_blocking_server() -> None:
    server = MockServer()
    shared = Shared()
    viewers = 5
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.tick)
        listeners = await nursery.start(partial(trio.serve_tcp, host="127.0.0.1"), server.handle, 0)
        port = listeners[0].socket.getsockname()[1]
        for _ in range(viewers):
            nursery.start_soon(viewer, port, "/live/k/cmaf.m3u8", shared)
        await trio.sleep(0.5)
        start = time.time()
        await trio.sleep(1.5)
        end = time.time()
        nursery.cancel_scope.cancel()
    result = figures(shared, start, end, viewers)
    assert not shared.errors and not shared.statuses, (shared.errors, shared.error_sample)
    assert shared.can_block and shared.has_pdt and shared.part_target == MockServer.PART
    assert shared.early_reloads == 0 and shared.resyncs == 0
    # Every viewer follows every part, each once, whatever the machine's load: how late they
    # come is a figure for the bench to print, not a pass mark here.
    fetched = Counter((msn, index) for _, msn, index, _, _ in shared.fetched)
    assert max(fetched.values()) <= viewers
    ordered = sorted(fetched)
    steps = {(b[0] - a[0], b[1] - a[1] if b[0] == a[0] else b[1]) for a, b in pairwise(ordered)}
    assert steps <= {(0, 1), (1, 0)}, ordered  # no part skipped by everyone
    settled = [k for k, t in shared.first_listed.items() if start <= t <= end - 1.0]
    assert settled and all(fetched[k] == viewers for k in settled), (settled, fetched)
    assert result["parts"] > 0 and result["late_vs_listed"] is not None
    assert result["mb_per_s"] > 0
