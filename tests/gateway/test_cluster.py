"""The pure parts of worker processes: the link's framing (byte vectors, any split), the
supervisor's owner table, the copies of LL-HLS state and the merged /api and /metrics."""

from __future__ import annotations

import contextlib
import pickle

import prometheus_client
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from gateway import bus
from gateway.cluster import LiveSender, Mirror, Outbox
from gateway.config import Settings
from gateway.supervisor import Supervisor
from gateway.workerside import encode_item, merge_metrics, merge_streams
from segmenter.flv import FlvTag, TagType
from segmenter.playlist import LivePlaylist, PartEntry, RenditionReport, SegmentEntry


def test_frame_layout() -> None:
    # length (4, of what follows), addressee, sender (signed 16-bit), then the body.
    assert bus.frame(3, -1, b"xy") == b"\x00\x00\x00\x06\x00\x03\xff\xffxy"
    assert bus.frame(bus.OTHERS, 7, b"") == b"\x00\x00\x00\x04\xff\xfe\x00\x07"


@given(
    st.lists(st.tuples(st.integers(-3, 63), st.integers(-1, 63), st.binary(max_size=300))),
    st.lists(st.integers(1, 50), min_size=1),
)
def test_deframer_any_split(frames: list[tuple[int, int, bytes]], cuts: list[int]) -> None:
    data = b"".join(bus.frame(to, sender, body) for to, sender, body in frames)
    deframer = bus.Deframer()
    out: list[bus.Frame] = []
    position, step = 0, 0
    while position < len(data):
        size = cuts[step % len(cuts)]
        out += deframer.feed(data[position : position + size])
        position, step = position + size, step + 1
    assert [(f.to, f.sender, f.body) for f in out] == frames
    assert deframer.buffered == 0


def test_deframer_refuses_a_bad_length() -> None:
    with pytest.raises(bus.BusError):
        bus.Deframer().feed(b"\x00\x00\x00\x02\x00\x00\x00\x00")  # shorter than its own header
    with pytest.raises(bus.BusError):
        bus.Deframer(max_frame=100).feed(b"\x00\x00\x01\x00\x00\x00\x00\x00")


def test_readdressed_frame_names_the_real_sender() -> None:
    (frame,) = bus.Deframer().feed(bus.encode(bus.OTHERS, 5, bus.Delete("a/b/c.ts")))
    (forwarded,) = bus.Deframer().feed(frame.readdressed(1))
    assert (forwarded.to, forwarded.sender) == (bus.OTHERS, 1)
    assert bus.decode(forwarded.body) == bus.Delete("a/b/c.ts")


def _playlist() -> LivePlaylist:
    playlist = LivePlaylist(2, 3, part_target=0.5)
    parts = (PartEntry("s-0.0.m4s", 0.5, True), PartEntry("s-0.1.m4s", 0.5, False))
    for part in parts:
        playlist.add_part(part, "init.mp4", False)
    playlist.add_segment(SegmentEntry("s-0.m4s", 1.0, init_uri="init.mp4", parts=parts), 0.0)
    playlist.add_part(PartEntry("s-1.0.m4s", 0.5, True), "init.mp4", False)
    playlist.set_preload_hint("s-1.1.m4s")
    return playlist


def test_a_copied_playlist_renders_as_the_original() -> None:
    playlist = _playlist()
    report = RenditionReport("cmaf-v1.m3u8", 0, 1)
    playlist.rendition_reports = lambda: [report]
    copy = pickle.loads(pickle.dumps(playlist))
    for skip in (False, True):
        assert copy.render(skip=skip) == playlist.render(skip=skip)
    assert "cmaf-v1.m3u8" in copy.render()


def test_mirror_keeps_listed_parts_and_wakes_waiters() -> None:
    woken: list[str] = []
    mirror = Mirror(woken.append)
    playlist = _playlist()
    mirror.apply(
        bus.LiveState(
            "live/a", {"cmaf.m3u8": playlist}, {"s-1.0.m4s": b"p"}, frozenset({"s-1.0.m4s"})
        )
    )
    assert woken == ["live/a"]
    assert mirror.part("live/a", "s-1.0.m4s") == b"p"
    assert mirror.live_playlist("live/a", "cmaf.m3u8") is playlist
    # The hinted part's playlist is found by the part's name (a blocking part request).
    assert mirror.live_playlist("live/a", "s-1.1.m4s") is playlist
    assert mirror.live_playlist("live/a", "ts.m3u8") is None
    mirror.apply(
        bus.LiveState("live/a", {"cmaf.m3u8": playlist}, {}, frozenset(), {"ts.m3u8": "why"})
    )
    assert mirror.part("live/a", "s-1.0.m4s") is None  # no longer listed: forgotten
    assert mirror.missing_reason("live/a", "ts.m3u8") == "why"
    mirror.drop("live/a")
    assert mirror.live_playlist("live/a", "cmaf.m3u8") is None
    assert woken == ["live/a"] * 3


def test_hub_items_cross_as_plain_tuples() -> None:
    tag = FlvTag(TagType.VIDEO, 40, b"\x17\x01")
    assert encode_item(tag) == (9, 40, b"\x17\x01")
    assert pickle.loads(pickle.dumps(encode_item(tag))) == (9, 40, b"\x17\x01")


def test_merged_streams_are_the_owners_with_everyones_players_and_viewers() -> None:
    owner = {
        "worker": 0,
        "streams": [{"app": "live", "key": "a", "publisher": "1.2.3.4:5", "players": [{"p": 1}]}],
        "viewers": {"live/a": 2},
    }
    other = {
        "worker": 1,
        "streams": [{"app": "live", "key": "a", "relayed_from": 0, "players": [{"p": 2}]}],
        "viewers": {"live/a": 3, "live/b": 1},
    }
    (merged,) = merge_streams([other, owner])
    assert merged["worker"] == 0 and merged["publisher"] == "1.2.3.4:5"
    assert merged["players"] == [{"p": 1}, {"p": 2}]
    assert merged["viewers"] == 5


def test_merged_metrics_sum_series_and_keep_the_earliest_start() -> None:
    def text(publishers: float, requests: float, started: float) -> bytes:
        registry = prometheus_client.CollectorRegistry()
        prometheus_client.Gauge("rtmp_publishers", "p", registry=registry).set(publishers)
        counter = prometheus_client.Counter("http_requests", "r", ["route"], registry=registry)
        counter.labels("/x").inc(requests)
        start = prometheus_client.Gauge("process_start_time_seconds", "s", registry=registry)
        start.set(started)
        return prometheus_client.generate_latest(registry)

    merged = merge_metrics([text(1, 10, 200), text(2, 5, 100)]).decode()
    assert "rtmp_publishers 3.0" in merged
    assert 'http_requests_total{route="/x"} 15.0' in merged
    assert "process_start_time_seconds 100.0" in merged
    assert merged.count("# TYPE rtmp_publishers gauge") == 1


def test_owner_table_settles_two_publishers_on_two_workers() -> None:
    supervisor = Supervisor(Settings(), 2, None)
    told: list[tuple[int, object]] = []
    supervisor.tell = lambda index, message: told.append((index, message))  # type: ignore[method-assign]
    supervisor.tell_all = lambda message, but=None: told.append((-1, message))  # type: ignore[method-assign,misc]
    supervisor._claim(0, bus.Owner("live/a", 0, True))
    assert supervisor.owners["live/a"].worker == 0
    supervisor._claim(1, bus.Owner("live/a", 1, True))  # the later claim is evicted
    assert supervisor.owners["live/a"].worker == 0
    assert told[-1] == (1, bus.Evict("live/a", 0))
    supervisor._claim(0, bus.Owner("live/a", 0, False))  # its publisher left (grace runs)
    supervisor._claim(1, bus.Owner("live/a", 1, True))  # a new one elsewhere takes over
    assert supervisor.owners["live/a"] == bus.Owner("live/a", 1, True)
    supervisor._claim(0, bus.Owner("live/a", -1))  # a release by a non-owner changes nothing
    assert "live/a" in supervisor.owners
    supervisor._claim(1, bus.Owner("live/a", -1))
    assert "live/a" not in supervisor.owners


async def test_supervisor_routes_without_reading() -> None:
    supervisor = Supervisor(Settings(), 3, None)
    for slot in supervisor.slots:
        slot.ready = True
        slot.process = object()  # type: ignore[assignment]
    (frame,) = bus.Deframer().feed(bus.encode(bus.OTHERS, 9, bus.Delete("x")))
    supervisor.route(supervisor.slots[1], frame)
    got = {}
    for slot in supervisor.slots:
        if slot.outbox.queued:
            got[slot.index] = await _first(slot.outbox)
    assert sorted(got) == [0, 2]  # every worker but the sender
    (forwarded,) = bus.Deframer().feed(got[0])
    assert forwarded.sender == 1  # rewritten: a worker cannot speak for another


async def _first(outbox: Outbox) -> bytes:
    written: list[bytes] = []

    async def write(data: bytes) -> None:
        written.append(data)
        raise OSError  # stop after the first frame

    with contextlib.suppress(OSError):
        await outbox.drain(write)
    return written[0]


async def test_outbox_bounds_bytes_and_waits_for_room() -> None:
    box = Outbox(100)
    assert box.put(b"x" * 150)  # an empty box takes one frame of any size
    assert not box.put(b"y")  # dropped: over the limit
    written: list[bytes] = []

    async def write(data: bytes) -> None:
        written.append(data)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(box.drain, write)
        await box.put_waiting(b"z" * 60)  # waits until the first frame is written
        await box.put_waiting(b"w" * 60)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert written == [b"x" * 150, b"z" * 60, b"w" * 60]
    assert box.queued == 0


class _Link:
    """Stands in for Cluster.send: records what went, refuses while ``full``."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, object]] = []
        self.full = False

    def send(self, to: int, message: object) -> bool:
        if self.full:
            return False
        self.sent.append((to, message))
        return True


def test_live_sender_sends_each_part_once_and_resends_what_was_lost() -> None:
    link = _Link()
    sender = LiveSender(link, "live/a", 1)  # type: ignore[arg-type]
    playlist = _playlist()
    sender.update({"cmaf.m3u8": playlist}, {"p0": b"0"}, {})
    sender.update({"cmaf.m3u8": playlist}, {"p0": b"0", "p1": b"1"}, {})
    link.full = True
    sender.update({"cmaf.m3u8": playlist}, {"p1": b"1", "p2": b"2"}, {})  # lost
    link.full = False
    sender.update({"cmaf.m3u8": playlist}, {"p1": b"1", "p2": b"2", "p3": b"3"}, {})
    news = [message.new_parts for _, message in link.sent]  # type: ignore[attr-defined]
    assert news == [{"p0": b"0"}, {"p1": b"1"}, {"p2": b"2", "p3": b"3"}]
    assert all(to == 1 for to, _ in link.sent)
