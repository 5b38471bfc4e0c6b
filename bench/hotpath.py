"""Scenario 2, hotpath (ours only, no sockets): recorded RTMP bytes through the sans-IO decoder, the
FLV tag split and the segmenter, on one core; throughput and a cProfile of where time goes.

The capture is what FFmpeg sent to ``gateway run`` while publishing the fixture (recorded by
:mod:`bench.proxy`); it is cached next to the fixtures and can be given with ``--capture``.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import re
import time
from functools import partial
from pathlib import Path
from typing import Any

import trio

from bench import publish
from bench.fixtures import FIXTURE_DIR, ffmpeg_exe
from bench.procs import Procs
from bench.proxy import KeyframeLog, serve_proxy
from bench.report import Table
from bench.targets import open_target, parse_formats
from gateway.rtmp import events as ev
from gateway.rtmp.connection import Connection
from segmenter.flv import FlvTag, TagType
from segmenter.live import LiveStream, SegmenterConfig
from segmenter.store import MemoryStore

# Seconds of the fixture recorded into the capture.
CAPTURE_SECONDS = 20
# Bytes handed to receive_data at once (what the server reads per receive_some).
FEED_SIZE = 65536
# Seconds the recording publish may take (it runs faster than real time).
CAPTURE_TIMEOUT = 120.0
# Lines of the profile kept.
PROFILE_LINES = 20
_TYPES = {8: TagType.AUDIO, 9: TagType.VIDEO, 18: TagType.SCRIPT}
# A segment's name in the store (NAME-SEQ.ts / .m4s), not an LL-HLS part (NAME-SEQ.PART.m4s).
SEGMENT_NAME = re.compile(r"-\d+\.(ts|m4s)$")


async def record_capture(fixture: Path, out: Path, workdir: Path) -> None:
    """Publish ``fixture`` (not paced) through the recording proxy into ``gateway run``."""
    log = KeyframeLog(capture=bytearray())
    async with (
        Procs() as procs,
        open_target("ours", procs, workdir / "capture") as target,
        trio.open_nursery() as nursery,
    ):
        port = await nursery.start(serve_proxy, target.rtmp_port, log)
        args = [
            ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error",
            "-t", str(CAPTURE_SECONDS), "-i", str(fixture), "-c", "copy", "-f", "flv",
            f"rtmp://127.0.0.1:{port}/live/capture",
        ]  # fmt: skip
        proc = await procs.start(args, log=workdir / "capture.log")
        with trio.fail_after(CAPTURE_TIMEOUT):
            await proc.wait()
        if proc.returncode != 0:
            raise RuntimeError(publish.first_error(workdir, "capture") or "capture failed")
        await trio.sleep(0.5)  # let the relay pass the last bytes
        nursery.cancel_scope.cancel()
    assert log.capture is not None
    await trio.Path(out).write_bytes(bytes(log.capture))


def decode(data: bytes) -> list[FlvTag]:
    """Server side of the RTMP session, accepting everything; the media as FLV tags."""
    conn = Connection()
    tags: list[FlvTag] = []
    for i in range(0, len(data), FEED_SIZE):
        conn.receive_data(data[i : i + FEED_SIZE])
        while (event := conn.next_event()) is not ev.NEED_DATA:
            if isinstance(event, ev.Media):
                kind = _TYPES.get(event.type)
                if kind is not None:
                    tags.append(FlvTag(kind, event.timestamp, event.body))
            elif isinstance(event, ev.ConnectRequest):
                conn.accept_connect()
            elif isinstance(event, ev.PublishRequest):
                conn.accept_publish(event.stream_id)
        conn.data_to_send()
    return tags


def segment(tags: list[FlvTag], formats: tuple[str, ...] | None = None) -> MemoryStore:
    """Segment ``tags`` into a MemoryStore with ``formats`` (None: the segmenter's default)."""
    store = MemoryStore()
    config = SegmenterConfig() if formats is None else SegmenterConfig(formats=formats)
    live = LiveStream("live/bench", store, config, wallclock=lambda: 0.0)
    live.begin_session(0.0)
    for tag in tags:
        live.feed(tag, tag.timestamp / 1000)  # "now" follows media time: no expiry surprises
    live.end_session(tags[-1].timestamp / 1000 if tags else 0.0)
    return store


def _timed(fn: Any, arg: Any, repeat: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.process_time()
        result = fn(arg)
        best = min(best, time.process_time() - t0)
    return best, result


async def run(
    opts: Any, targets: list[str], fixture: Path, workdir: Path
) -> tuple[dict[str, Any], Table]:
    capture = opts.capture or FIXTURE_DIR / f"{fixture.stem}-{CAPTURE_SECONDS}s.rtmp"
    if not capture.exists():
        await record_capture(fixture, capture, workdir)
    data = capture.read_bytes()
    repeat = max(1, opts.repeat)
    t_decode, tags = _timed(decode, data, repeat)
    # --formats: one segment stage per value (e.g. segment[ts], segment[cmaf]); total uses the
    # first.
    per_format = [parse_formats(f) for f in opts.formats] if opts.formats else [None]
    seg_times = []
    stores = []
    for formats in per_format:
        t, seg_store = _timed(partial(segment, formats=formats), tags, repeat)
        seg_times.append((formats, t))
        stores.append(seg_store)
    t_segment, store = seg_times[0][1], stores[0]
    media_s = (tags[-1].timestamp - tags[0].timestamp) / 1000 if tags else 0.0
    payload = sum(len(t.body) for t in tags)
    profiler = cProfile.Profile()
    profiler.enable()
    segment(decode(data), per_format[0])
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(PROFILE_LINES)
    profile = text.getvalue()
    total = t_decode + t_segment
    stages: dict[str, dict[str, Any]] = {"decode": {"cpu_s": t_decode}}
    for formats, t in seg_times:
        stages["segment" if formats is None else f"segment[{','.join(formats)}]"] = {"cpu_s": t}
    stages["total"] = {"cpu_s": total}
    for st in stages.values():
        cpu = st["cpu_s"]
        st.update(
            messages_per_s=round(len(tags) / cpu) if cpu else None,
            mb_per_s=round(len(data) / cpu / 1e6, 1) if cpu else None,
            realtime_x=round(media_s / cpu, 1) if cpu else None,
            cpu_s=round(cpu, 4),
        )
    result = {
        "params": {"capture": str(capture), "repeat": repeat, "feed_size": FEED_SIZE},
        "capture_bytes": len(data),
        "messages": len(tags),
        "payload_bytes": payload,
        "media_seconds": media_s,
        # Segments (NAME-SEQ.ts / .m4s), not LL-HLS parts (NAME-SEQ.PART.m4s) nor init segments.
        "segments": len([n for n in store.names() if SEGMENT_NAME.search(n)]),
        "stages": stages,
        "profile_top": profile,
    }
    print(profile)
    table = Table(f"hotpath: {capture.name}, {len(tags)} messages, {media_s:.1f} s media", ["ours"])
    for name, st in stages.items():
        table.add(name, "messages/s", {"ours": st["messages_per_s"]})
        table.add(name, "MB/s (RTMP bytes)", {"ours": st["mb_per_s"]})
        table.add(name, "x real time (streams/core)", {"ours": st["realtime_x"]})
    return result, table
