"""A stream's transcoding ladder (gateway.transcode) in a real trio run with real worker threads:
rung tags come back to the trio thread in order, the threads are joined, and a rung that cannot
keep up is dropped with a warning while the publisher's own tags go on unhindered."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio

from gateway.hub import Hub, HubItem
from gateway.transcode import StreamTranscoder
from gateway.transcode_config import Rung
from segmenter.flv import FlvTag, SequenceEnd, TagType, parse_video, split_multitrack
from segmenter.transcode import RungSpec, RungTranscoder
from tests.segmenter.media import av_args, make_flv, tags


def publish(tmp_path: Path, seconds: float) -> list[FlvTag]:
    return tags(make_flv(tmp_path / "src.flv", *av_args(seconds, 15)))


class Segmenter:
    """Stands where the segmenter's sink is: records what reaches it, publisher's and rungs'."""

    def __init__(self) -> None:
        self.items: list[HubItem] = []

    def __call__(self, item: HubItem) -> None:
        self.items.append(item)

    def track(self, track_id: int) -> list[FlvTag]:
        out = []
        for t in self.items:
            if isinstance(t, FlvTag) and t.type is TagType.VIDEO:
                tracks = split_multitrack(t.type, t.body)
                if (tracks[0].track_id if tracks else 0) == track_id:
                    out.append(t)
        return out


def setup(
    queue_frames: int, rungs: tuple[Rung, ...]
) -> tuple[Hub, Segmenter, StreamTranscoder, object]:
    hub = Hub()
    segmenter = Segmenter()
    stream = hub.lookup("live", "tc")
    transcoder = StreamTranscoder(
        stream.path, rungs, queue_frames=queue_frames, preset="ultrafast", feed=segmenter
    )
    hub.add_sink(stream, segmenter)
    hub.add_sink(stream, transcoder.sink)
    return hub, segmenter, transcoder, stream


async def wait_for(predicate: object, seconds: float = 20) -> None:
    with trio.fail_after(seconds):
        while not predicate():  # type: ignore[operator]
            await trio.sleep(0.01)


async def test_rungs_come_back_as_tracks_and_threads_are_joined(tmp_path: Path) -> None:
    source = publish(tmp_path, 2)
    rungs = (Rung(160, 120, 200_000), Rung(96, 72, 100_000))
    hub, segmenter, transcoder, _ = setup(300, rungs)
    stream = hub.start_publish("live", "tc", peer="test", connection_id=1, query={})
    for tag in source:
        stream.publish(tag)
        await trio.lowlevel.checkpoint()  # a publisher reads between tags
    # While the session lasts, the rung is short of the pictures still in the source decoder
    # (its reordering delay): as many as the same rung makes in this thread without a flush.
    expected = []
    for track_id, rung in enumerate(rungs, start=1):
        alone = RungTranscoder(RungSpec(track_id, rung.width, rung.height, rung.bitrate))
        expected.append([t for tag in source for t in alone.feed(tag)])
    assert 50 < len(expected[0]) < 61
    await wait_for(lambda: [len(segmenter.track(k)) for k in (1, 2)] == [len(e) for e in expected])
    assert segmenter.track(0) == [t for t in source if t.type is TagType.VIDEO]
    for track_id in (1, 2):
        out = segmenter.track(track_id)
        assert [t.timestamp for t in out] == [t.timestamp for t in expected[track_id - 1]]
    tags_out = len(expected[0])
    assert transcoder.describe() == [
        {
            "track": 1,
            "rung": "160x120@200k",
            "state": "running",
            "size": "160x120",
            "tags": tags_out,
        },
        {"track": 2, "rung": "96x72@100k", "state": "running", "size": "96x72", "tags": tags_out},
    ]
    threads = [w.thread for w in transcoder._running]
    hub.end_publish(stream, 1)
    assert [r["state"] for r in transcoder.describe()] == ["stopped", "stopped"]
    await transcoder.aclose()
    assert all(t is not None and not t.is_alive() for t in threads)
    assert transcoder._ending == []


async def test_a_rung_that_cannot_keep_up_is_dropped_and_the_source_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    source = publish(tmp_path, 2)
    hub, segmenter, transcoder, _ = setup(4, (Rung(160, 120, 200_000),))
    stream = hub.start_publish("live", "tc", peer="test", connection_id=1, query={})
    # The whole publish arrives without the trio thread yielding: the worker's first tags wait
    # for the trio thread, so its queue of 4 fills and the rung is dropped; publish() never
    # waits for it.
    for tag in source:
        stream.publish(tag)
    assert [r["state"] for r in transcoder.describe()] == ["dropped"]
    assert "live/tc: transcode rung 160x120@200k (track 1) cannot keep up" in caplog.text
    assert len([t for t in segmenter.items if isinstance(t, FlvTag)]) == len(source)
    await trio.sleep(0.5)  # what the dropped worker still had comes back, and is discarded
    assert segmenter.track(1) == []
    # The next session gets its rung again.
    hub.end_publish(stream, 1)
    stream = hub.start_publish("live", "tc", peer="test", connection_id=2, query={})
    for tag in source[:20]:  # at the pace the rung takes them
        stream.publish(tag)
        await wait_for(lambda: all(w.queue.empty() for w in transcoder._running))
    await wait_for(lambda: len(segmenter.track(1)) > 0)
    assert [r["state"] for r in transcoder.describe()] == ["running"]
    # Dropped mid-session, after it made tags: its track ends with a SequenceEnd, as a
    # multitrack publisher ends a track.
    for tag in source[20:]:
        stream.publish(tag)
    assert [r["state"] for r in transcoder.describe()] == ["dropped"]
    made = segmenter.track(1)
    tracks = split_multitrack(TagType.VIDEO, made[-1].body)
    assert tracks is not None and tracks[0].track_id == 1
    assert isinstance(parse_video(tracks[0].body), SequenceEnd)
    assert made[-1].timestamp == made[-2].timestamp
    await transcoder.aclose()
    assert transcoder._ending == []


async def test_a_multitrack_publisher_is_not_transcoded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = publish(tmp_path, 1)
    hub, segmenter, transcoder, _ = setup(300, (Rung(160, 120, 200_000),))
    stream = hub.start_publish("live", "tc", peer="test", connection_id=1, query={})
    # A OneTrack tag of track 1 from the publisher itself (as OBS Enhanced Broadcasting sends).
    own = FlvTag(TagType.VIDEO, 0, bytes((0x96, 0x01)) + b"avc1\x01\x00\x00\x00\x00\x00\x01\x00")
    stream.publish(own)
    for tag in source:
        stream.publish(tag)
    assert transcoder.own_tracks and [r["state"] for r in transcoder.describe()] == ["stopped"]
    assert "the publisher sends multitrack video; transcoding stopped" in caplog.text
    await transcoder.aclose()
    assert segmenter.track(1) == [own]


async def test_a_codec_the_rungs_cannot_decode_is_said(caplog: pytest.LogCaptureFixture) -> None:
    hub, _segmenter, transcoder, _ = setup(30, (Rung(160, 120, 200_000),))
    stream = hub.start_publish("live", "tc", peer="test", connection_id=1, query={})
    stream.publish(FlvTag(TagType.VIDEO, 0, b"\x90av01\x81\x00\x0c\x00"))
    await wait_for(lambda: transcoder.describe()[0]["state"] == "failed")
    assert "live/tc: transcode rung 160x120@200k (track 1) stopped: cannot transcode av01" in (
        caplog.text
    )
    assert "Traceback" not in caplog.text
    await transcoder.aclose()
