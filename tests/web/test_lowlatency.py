"""LL-HLS delivery (rfc8216bis §6.2.5.2, §6.2.6): blocking playlist reload, delta updates and
hinted parts, through the app's ASGI entry (the fast path) under trio's MockClock.

The "segmenter" here is the test: it adds parts and segments to a real LivePlaylist and stores
their bytes, then notifies the waiters as the gateway's segmenter does.
"""

from __future__ import annotations

from collections.abc import Callable

import m3u8
import pytest
import trio
import trio.testing
from quart_trio import QuartTrio

from segmenter.playlist import LivePlaylist, PartEntry, Position, SegmentEntry
from segmenter.store import MemoryStore
from tests.web.conftest import FakeStatus
from web.app import create_app
from web.lowlatency import (
    COPY_WAIT,
    BadRequest,
    Reload,
    Waiters,
    advance_part_limit,
    await_copy,
    parse_reload,
    part_wanted,
    reload_ready,
)

PATH = "live/cam1"
URL = f"/{PATH}/cmaf.m3u8"
PREFIX = "ab12"


class Stream:
    """A live LL-HLS stream driven by hand: 2 s segments of ten 0.2 s parts."""

    def __init__(self, store: MemoryStore, waiters: Waiters) -> None:
        self.store, self.waiters = store, waiters
        self.playlist = LivePlaylist(2, 10, part_target=0.2)  # 20 s: more than CAN-SKIP-UNTIL
        self.parts: list[PartEntry] = []
        self.part_bytes: dict[str, bytes] = {}  # parts live in memory, as the segmenter's do
        self.store.put(f"{PATH}/init.mp4", b"init")

    def live_playlist(self, app: str, key: str, file: str) -> LivePlaylist | None:
        ours = file == "cmaf.m3u8" or file.endswith(".m4s")
        return self.playlist if f"{app}/{key}" == PATH and ours else None

    def missing_reason(self, app: str, key: str, file: str) -> str | None:
        return None

    def made_elsewhere(self, app: str, key: str) -> bool:
        return False

    def live_part(self, app: str, key: str, file: str) -> bytes | None:
        return self.part_bytes.get(file) if f"{app}/{key}" == PATH else None

    def hint(self) -> None:
        position = self.playlist.position
        self.playlist.set_preload_hint(f"{PREFIX}-{position.msn}.{position.parts}.m4s")

    def add_part(self) -> str:
        position = self.playlist.position
        uri = f"{PREFIX}-{position.msn}.{position.parts}.m4s"
        self.part_bytes[uri] = uri.encode()
        part = PartEntry(uri, 0.2, independent=not self.parts)
        self.parts.append(part)
        self.playlist.add_part(part, "init.mp4")
        if len(self.parts) == 10:
            msn = position.msn
            self.store.put(f"{PATH}/{PREFIX}-{msn}.m4s", b"segment")
            entry = SegmentEntry(
                f"{PREFIX}-{msn}.m4s", 2.0, init_uri="init.mp4", parts=tuple(self.parts)
            )
            self.playlist.add_segment(entry, 0.0)  # (removal deadlines: not tested here)
            self.parts = []
        self.hint()
        self.waiters.notify(PATH)
        return uri


@pytest.fixture
def waiters() -> Waiters:
    return Waiters()


@pytest.fixture
def stream(store: MemoryStore, waiters: Waiters) -> Stream:
    s = Stream(store, waiters)
    for _ in range(23):  # two segments and three parts of the third
        s.add_part()
    return s


@pytest.fixture
def ll_app(store: MemoryStore, status: FakeStatus, stream: Stream, waiters: Waiters) -> QuartTrio:
    return create_app(store, status, live=stream, waiters=waiters)


# --- pure decisions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query, expected",
    [
        ("", Reload(None, None, False)),
        ("_HLS_msn=5", Reload(5, None, False)),
        ("_HLS_msn=5&_HLS_part=2", Reload(5, 2, False)),
        ("_HLS_msn=5&_HLS_skip=YES", Reload(5, None, True)),
        ("_HLS_skip=v2", Reload(None, None, True)),
        ("_HLS_skip=no&other=1", Reload(None, None, False)),
        ("x" * 600, Reload(None, None, False)),  # not a player's query: ignored
    ],
)
def test_parse_reload(query: str, expected: Reload) -> None:
    assert parse_reload(query) == expected


@pytest.mark.parametrize(
    "query", ["_HLS_part=1", "_HLS_msn=-1", "_HLS_msn=1.5", "_HLS_msn=", "_HLS_msn=1&_HLS_part=x"]
)
def test_parse_reload_refuses_what_the_spec_calls_invalid(query: str) -> None:
    with pytest.raises(BadRequest):
        parse_reload(query)


def test_reload_ready_follows_the_live_edge() -> None:
    at = Position(msn=4, parts=3, ended=False)  # segments 0-3 complete, 3 parts of the 4th
    assert reload_ready(Reload(3, None, False), at, 0.2)
    assert not reload_ready(Reload(4, None, False), at, 0.2)  # segment 4 not complete yet
    assert reload_ready(Reload(4, 2, False), at, 0.2)
    assert not reload_ready(Reload(4, 3, False), at, 0.2)
    assert reload_ready(Reload(3, 40, False), at, 0.2)  # a complete segment has all its parts
    assert not reload_ready(Reload(5, 0, False), at, 0.2)
    with pytest.raises(BadRequest):
        reload_ready(Reload(6, None, False), at, 0.2)  # more than two past the last (3)
    with pytest.raises(BadRequest):
        reload_ready(Reload(4, 3 + advance_part_limit(0.2), False), at, 0.2)
    assert reload_ready(Reload(5, 0, False), Position(4, 3, ended=True), 0.2)


def test_part_wanted(stream: Stream) -> None:
    playlist = stream.playlist  # at msn 2, 3 parts done, hint ab12-2.3.m4s
    assert part_wanted(f"{PREFIX}-2.3.m4s", playlist) is True
    assert part_wanted(f"{PREFIX}-3.0.m4s", playlist) is True  # the next segment's first
    assert part_wanted(f"{PREFIX}-1.12.m4s", playlist) is False  # segment 1 had ten
    assert part_wanted(f"{PREFIX}-2.99.m4s", playlist) is False  # beyond the advance limit
    assert part_wanted(f"{PREFIX}-9.0.m4s", playlist) is False
    assert part_wanted("zz99-2.3.m4s", playlist) is None  # another session's name


# --- over HTTP ------------------------------------------------------------------------------


async def test_blocking_reload_answers_when_the_part_exists(
    ll_app: QuartTrio, stream: Stream, autojump_clock: trio.testing.MockClock
) -> None:
    client = ll_app.test_client()
    started = trio.current_time()
    responses = []

    async def ask() -> None:
        responses.append(await client.get(f"{URL}?_HLS_msn=2&_HLS_part=3"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        await trio.sleep(0.15)
        assert not responses and stream.waiters.waiting(PATH) == 1
        stream.add_part()
    (response,) = responses
    assert response.status_code == 200
    assert trio.current_time() - started == pytest.approx(0.15)
    assert response.headers["Cache-Control"] == "public, max-age=6"
    text = await response.get_data(as_text=True)
    assert f'URI="{PREFIX}-2.3.m4s"' in text
    assert f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{PREFIX}-2.4.m4s"' in text
    assert stream.waiters.waiting(PATH) == 0


async def test_blocking_reload_for_a_whole_segment_waits_for_its_last_part(
    ll_app: QuartTrio, stream: Stream, autojump_clock: trio.testing.MockClock
) -> None:
    client = ll_app.test_client()
    responses = []

    async def ask() -> None:
        responses.append(await client.get(f"{URL}?_HLS_msn=2"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        for _ in range(6):  # parts 3..8: still not complete
            await trio.sleep(0.2)
            stream.add_part()
            await trio.testing.wait_all_tasks_blocked()
            assert not responses
        await trio.sleep(0.2)
        stream.add_part()  # the tenth part closes segment 2
    playlist = m3u8.loads(await responses[0].get_data(as_text=True))
    assert [s.uri for s in playlist.segments if s.uri][-1] == f"{PREFIX}-2.m4s"


async def test_blocked_three_target_durations_is_503(
    ll_app: QuartTrio, autojump_clock: trio.testing.MockClock
) -> None:
    started = trio.current_time()
    response = await ll_app.test_client().get(f"{URL}?_HLS_msn=3&_HLS_part=0")
    assert response.status_code == 503
    assert trio.current_time() - started == pytest.approx(6.0)
    assert response.headers["Cache-Control"] == "no-cache"


@pytest.mark.parametrize(
    "query", ["_HLS_msn=5", "_HLS_part=1", "_HLS_msn=two", "_HLS_msn=2&_HLS_part=30"]
)
async def test_invalid_blocking_requests_are_400_at_once(
    ll_app: QuartTrio, query: str, autojump_clock: trio.testing.MockClock
) -> None:
    started = trio.current_time()
    response = await ll_app.test_client().get(f"{URL}?{query}")
    assert response.status_code == 400
    assert trio.current_time() == started
    assert "_HLS_" in await response.get_data(as_text=True)


async def test_ended_playlist_answers_blocking_requests_at_once(
    ll_app: QuartTrio, stream: Stream, autojump_clock: trio.testing.MockClock
) -> None:
    stream.playlist.end()
    response = await ll_app.test_client().get(f"{URL}?_HLS_msn=3&_HLS_part=5")
    assert response.status_code == 200
    assert "#EXT-X-ENDLIST" in await response.get_data(as_text=True)


async def test_delta_update_skips_old_segments(
    ll_app: QuartTrio, stream: Stream, autojump_clock: trio.testing.MockClock
) -> None:
    for _ in range(60):  # 6 more segments: 8 complete, longer than CAN-SKIP-UNTIL (12 s)
        stream.add_part()
    full = m3u8.loads(stream.playlist.render())
    response = await ll_app.test_client().get(f"{URL}?_HLS_msn=8&_HLS_part=2&_HLS_skip=YES")
    text = await response.get_data(as_text=True)
    delta = m3u8.loads(text)
    assert "#EXT-X-SKIP:SKIPPED-SEGMENTS=" in text and delta.version == 9
    assert delta.media_sequence == full.media_sequence
    skipped = delta.skip.skipped_segments
    assert skipped > 0 and delta.segments[0].uri == full.segments[skipped].uri


async def test_hinted_part_is_answered_once_written(
    ll_app: QuartTrio, stream: Stream, autojump_clock: trio.testing.MockClock
) -> None:
    client = ll_app.test_client()
    responses = []
    hint = stream.playlist.preload_hint
    assert hint == f"{PREFIX}-2.3.m4s"

    async def fetch() -> None:
        responses.append(await client.get(f"/{PATH}/{hint}"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(fetch)
        await trio.sleep(0.2)
        assert not responses
        stream.add_part()
    (response,) = responses
    assert response.status_code == 200 and await response.get_data() == hint.encode()
    assert response.headers["Content-Type"] == "video/iso.segment"
    assert response.headers["Cache-Control"] == "public, max-age=86400, immutable"


async def test_part_that_never_comes_is_404(
    ll_app: QuartTrio, stream: Stream, autojump_clock: trio.testing.MockClock
) -> None:
    client = ll_app.test_client()
    started = trio.current_time()
    assert (await client.get(f"/{PATH}/{PREFIX}-1.10.m4s")).status_code == 404  # at once
    assert (await client.get(f"/{PATH}/other-2.3.m4s")).status_code == 404
    assert trio.current_time() == started
    # A waiting request for a part past the end of its segment gives up when the segment ends.
    responses = []

    async def fetch() -> None:
        responses.append(await client.get(f"/{PATH}/{PREFIX}-2.11.m4s"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(fetch)
        for _ in range(7):
            await trio.sleep(0.2)
            stream.add_part()
    assert responses[0].status_code == 404
    assert trio.current_time() - started == pytest.approx(1.4)


async def test_waiting_viewers_wake_once_per_part(
    ll_app: QuartTrio, stream: Stream, autojump_clock: trio.testing.MockClock
) -> None:
    client = ll_app.test_client()
    done = []

    async def viewer() -> None:
        done.append((await client.get(f"{URL}?_HLS_msn=2&_HLS_part=5")).status_code)

    async with trio.open_nursery() as nursery:
        for _ in range(50):
            nursery.start_soon(viewer)
        await trio.sleep(0.1)
        assert stream.waiters.waiting(PATH) == 50
        stream.add_part()  # part 3: not yet; everyone parks again
        await trio.sleep(0.1)
        assert stream.waiters.waiting(PATH) == 50 and not done
        stream.add_part()
        stream.add_part()  # part 5
    assert done == [200] * 50 and stream.waiters.waiting(PATH) == 0


async def test_plain_requests_and_other_playlists_are_not_held(
    ll_app: QuartTrio, store: MemoryStore, stream: Stream, autojump_clock: trio.testing.MockClock
) -> None:
    store.put(f"{PATH}/cmaf.m3u8", stream.playlist.render(low_latency=False).encode())
    client = ll_app.test_client()
    started = trio.current_time()
    plain = await client.get(URL)  # from memory: the LL-HLS version, not the store's
    assert plain.status_code == 200 and plain.headers["Cache-Control"] == "public, max-age=1"
    assert await plain.get_data(as_text=True) == stream.playlist.render()
    ts = await client.get(f"/{PATH}/index.m3u8?_HLS_msn=99")  # no LL-HLS there: ignored
    assert ts.status_code == 200
    assert trio.current_time() == started


class _Elsewhere:
    """A LiveSource for a stream another worker makes (only made_elsewhere matters here)."""

    def __init__(self, elsewhere: bool) -> None:
        self.elsewhere = elsewhere

    def live_playlist(self, app: str, key: str, file: str) -> LivePlaylist | None:
        return None

    def live_part(self, app: str, key: str, file: str) -> bytes | None:
        return None

    def missing_reason(self, app: str, key: str, file: str) -> str | None:
        return None

    def made_elsewhere(self, app: str, key: str) -> bool:
        return self.elsewhere


async def test_a_miss_waits_for_the_copy_of_a_stream_made_elsewhere(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = MemoryStore()
    waiters = Waiters()
    got: list[bytes | None] = []

    async def ask() -> None:
        got.append(await await_copy(_Elsewhere(True), waiters, "live", "a", lambda: store.get("x")))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        await trio.sleep(0.1)
        waiters.notify("live/a")  # something else of the stream arrived: still missing
        await trio.sleep(0.1)
        store.put("x", b"segment")
        waiters.notify("live/a")
    assert got == [b"segment"]


async def test_a_miss_gives_up_after_copy_wait(autojump_clock: trio.testing.MockClock) -> None:
    waiters = Waiters()
    start = trio.current_time()
    never: Callable[[], bytes | None] = lambda: None  # noqa: E731
    assert await await_copy(_Elsewhere(True), waiters, "live", "a", never) is None
    assert trio.current_time() - start == pytest.approx(COPY_WAIT)
    # A stream made here (or by nobody): a miss is a miss at once.
    start = trio.current_time()
    assert await await_copy(_Elsewhere(False), waiters, "live", "a", never) is None
    assert trio.current_time() == start
