"""Hub: one publisher per name, bounded non-blocking fan-out, gap accounting, header caching."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from gateway.hub import (
    Gap,
    Hub,
    SessionEnd,
    SessionStart,
    StreamBusy,
    is_sequence_header,
    split_query,
)
from segmenter.flv import FlvTag, TagType

AVC_HEADER = FlvTag(TagType.VIDEO, 0, bytes([0x17, 0x00, 0, 0, 0, 1, 0x64, 0, 0x1F]))
AVC_FRAME = FlvTag(TagType.VIDEO, 33, bytes([0x27, 0x01, 0, 0, 0, 0, 0, 0, 1, 0x41]))
AAC_HEADER = FlvTag(TagType.AUDIO, 0, bytes([0xAF, 0x00, 0x12, 0x10]))
AAC_FRAME = FlvTag(TagType.AUDIO, 23, bytes([0xAF, 0x01, 0x21]))


def test_sequence_header_detection() -> None:
    assert is_sequence_header(AVC_HEADER)
    assert is_sequence_header(AAC_HEADER)
    assert not is_sequence_header(AVC_FRAME)
    assert not is_sequence_header(AAC_FRAME)
    # Enhanced RTMP: IsExHeader | FrameType key | PacketType SequenceStart, FourCC hvc1.
    assert is_sequence_header(FlvTag(TagType.VIDEO, 0, bytes([0x90]) + b"hvc1\x01"))
    assert not is_sequence_header(FlvTag(TagType.VIDEO, 0, bytes([0x91]) + b"hvc1\x00\x00\x00"))
    assert not is_sequence_header(FlvTag(TagType.VIDEO, 0, b"\x17"))


def test_split_query_keeps_parameters() -> None:
    assert split_query("key?token=abc&x=") == ("key", {"token": ["abc"], "x": [""]})
    assert split_query("plain") == ("plain", {})


async def test_second_publisher_is_refused_and_first_untouched() -> None:
    hub = Hub()
    stream = hub.start_publish("live", "k", peer="a:1", connection_id=1, query={})
    with pytest.raises(StreamBusy, match="already being published by a:1"):
        hub.start_publish("live", "k", peer="b:2", connection_id=2, query={})
    assert stream.publisher is not None and stream.publisher.peer == "a:1"
    # Only the holder can release the slot.
    hub.end_publish(stream, connection_id=2)
    assert stream.publisher is not None
    hub.end_publish(stream, connection_id=1)
    assert stream.publisher is None
    assert hub.start_publish("live", "k", peer="b:2", connection_id=2, query={}) is stream


class Holder:
    """A publisher's connection as the hub sees it (gateway.hub.PublisherOwner)."""

    def __init__(self) -> None:
        self.last_read = trio.current_time()
        self.evicted: list[str] = []

    def evict(self, why: str) -> None:
        self.evicted.append(why)


async def test_a_silent_holder_is_taken_over_and_a_sending_one_is_not(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = Hub(takeover_after=5.0)
    holder = Holder()
    stream = hub.start_publish("live", "k", peer="a:1", connection_id=1, query={}, owner=holder)
    sub, items = hub.attach(stream, "watch", 16)
    for _ in range(8):  # media keeps flowing: never taken, however long it has been live
        await trio.sleep(1)
        stream.publish(AVC_FRAME)
        holder.last_read = trio.current_time()
        with pytest.raises(StreamBusy):
            hub.start_publish("live", "k", peer="b:2", connection_id=2, query={})
    await trio.sleep(4.9)  # silent, but not long enough
    with pytest.raises(StreamBusy):
        hub.start_publish("live", "k", peer="b:2", connection_id=2, query={})
    await trio.sleep(0.2)
    assert hub.start_publish("live", "k", peer="b:2", connection_id=2, query={}) is stream
    assert holder.evicted == ["replaced by a new publisher from b:2 after 5.1 s silent"]
    assert stream.publisher is not None and stream.publisher.peer == "b:2"
    hub.end_publish(stream, connection_id=1)  # the old session's cleanup changes nothing
    assert stream.publisher is not None and stream.publisher.peer == "b:2"
    received = []
    while True:
        try:
            received.append(items.receive_nowait())
        except trio.WouldBlock:
            break
    # Subscribers see the old session end before the new one starts.
    kinds = [type(i) for i in received if not isinstance(i, FlvTag)]
    assert kinds[-2:] == [SessionEnd, SessionStart]
    hub.detach(stream, sub)


@pytest.mark.parametrize("takeover_after", [0.0, 5.0])
async def test_no_takeover_when_disabled_or_not_evictable(
    autojump_clock: trio.testing.MockClock, takeover_after: float
) -> None:
    hub = Hub(takeover_after=takeover_after)
    # With takeover on, a holder without an owner to evict (a pull relay) is never replaced.
    owner = None if takeover_after else Holder()
    hub.start_publish("live", "k", peer="a:1", connection_id=1, query={}, owner=owner)
    await trio.sleep(60)
    with pytest.raises(StreamBusy):
        hub.start_publish("live", "k", peer="b:2", connection_id=2, query={})


async def test_fanout_is_ordered_and_never_blocks() -> None:
    started: list[str] = []
    hub = Hub(on_stream_started=lambda s: started.append(s.path))
    stream = hub.start_publish("live", "k", peer="a:1", connection_id=1, query={})
    assert started == ["live/k"]
    with (
        hub.subscribe(stream, "slow", queue_size=2) as (slow, slow_rx),
        hub.subscribe(stream, "fast", queue_size=100) as (_, fast_rx),
    ):
        for tag in (AVC_HEADER, AAC_HEADER, AVC_FRAME, AAC_FRAME, AVC_FRAME):
            stream.publish(tag)  # synchronous: would deadlock if it waited on "slow"
        assert [fast_rx.receive_nowait() for _ in range(5)] == [
            AVC_HEADER,
            AAC_HEADER,
            AVC_FRAME,
            AAC_FRAME,
            AVC_FRAME,
        ]
        assert slow.dropped == 3
        assert [slow_rx.receive_nowait() for _ in range(2)] == [AVC_HEADER, AAC_HEADER]
        # The lost run is reported once, before the next item that fits.
        stream.publish(AAC_FRAME)
        assert slow_rx.receive_nowait() == Gap(3)
        assert slow_rx.receive_nowait() == AAC_FRAME
        with pytest.raises(trio.WouldBlock):
            slow_rx.receive_nowait()
    assert stream.subscribers == set()


async def test_headers_kept_for_late_subscribers_and_reset_per_session() -> None:
    hub = Hub()
    stream = hub.start_publish("live", "k", peer="a:1", connection_id=1, query={})
    meta = FlvTag(TagType.SCRIPT, 0, b"\x02\x00\x0aonMetaData\x05")
    for tag in (meta, AVC_HEADER, AAC_HEADER, AVC_FRAME):
        stream.publish(tag)
    assert (stream.metadata, stream.video_header, stream.audio_header) == (
        meta,
        AVC_HEADER,
        AAC_HEADER,
    )
    assert stream.tags_in == 4 and stream.bytes_in == sum(
        len(t.body) for t in (meta, AVC_HEADER, AAC_HEADER, AVC_FRAME)
    )
    hub.end_publish(stream, 1)
    hub.start_publish("live", "k", peer="a:1", connection_id=3, query={})
    assert stream.video_header is None and stream.audio_header is None and stream.metadata is None
    assert stream.sessions == 2


async def test_session_markers_reach_attached_subscribers() -> None:
    hub = Hub()
    stream = hub.start_publish("live", "k", peer="a:1", connection_id=1, query={})
    sub, rx = hub.attach(stream, "seg", 10)
    stream.publish(AVC_HEADER)
    hub.end_publish(stream, 1)
    hub.start_publish("live", "k", peer="a:1", connection_id=2, query={})
    items = [rx.receive_nowait() for _ in range(3)]
    assert items[0] == AVC_HEADER
    assert items[1] == SessionEnd()
    assert isinstance(items[2], SessionStart)
    hub.detach(stream, sub)
    stream.publish(AVC_FRAME)  # detached: nothing delivered, nothing raised
    assert sub not in stream.subscribers


async def test_gop_cache_holds_tags_since_last_keyframe_bounded() -> None:
    hub = Hub(gop_cache_bytes=30)
    stream = hub.start_publish("live", "k", peer="a:1", connection_id=1, query={})
    key1 = FlvTag(TagType.VIDEO, 0, bytes([0x17, 0x01]) + b"\x00" * 8)
    key2 = FlvTag(TagType.VIDEO, 66, bytes([0x17, 0x01]) + b"\x00" * 8)
    for tag in (AVC_HEADER, AAC_FRAME, AAC_HEADER):
        stream.publish(tag)
    assert stream.gop == []  # nothing before the first keyframe is cached
    for tag in (key1, AAC_FRAME, AVC_FRAME):
        stream.publish(tag)
    assert stream.gop == [key1, AAC_FRAME, AVC_FRAME]
    assert stream.start_items() == [AVC_HEADER, AAC_HEADER, key1, AAC_FRAME, AVC_FRAME]
    stream.publish(key2)
    assert stream.gop == [key2]
    for _ in range(3):
        stream.publish(AVC_FRAME)  # 10 + 3 * 10 bytes > 30: the GOP cannot be kept whole
    assert stream.gop == [] and stream.gop_bytes == 0


async def test_published_event_wakes_waiters_on_next_publish() -> None:
    hub = Hub()
    stream = hub.lookup("live", "later")
    event = stream.published_event
    assert not event.is_set() and stream.publisher is None
    hub.start_publish("live", "later", peer="a:1", connection_id=1, query={})
    assert event.is_set() and not stream.published_event.is_set()
