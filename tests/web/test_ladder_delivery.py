"""LL-HLS delivery per rendition of a multitrack ladder: blocking reloads, hinted parts and plain
requests of cmaf-v<ID>.m3u8 / cmaf-a<ID>.m3u8 answer from that rendition, through the app.

The segmenter is a real LiveStream fed FFmpeg 9's multitrack FLV (three H.264 renditions, two
AAC tracks) tag by tag, notifying the waiters as the gateway does.
"""

from __future__ import annotations

from collections.abc import Iterator

import m3u8
import pytest
import trio
import trio.testing
from quart_trio import QuartTrio

from segmenter.flv import FlvTag
from segmenter.live import LiveStream, SegmenterConfig
from segmenter.playlist import LivePlaylist
from segmenter.store import MemoryStore
from tests.segmenter.media import make_flv, tags
from tests.segmenter.test_ladder import ladder_args
from tests.web.conftest import FakeStatus
from web.app import create_app
from web.lowlatency import Waiters

APP, KEY = "live", "ladder"
PATH = f"{APP}/{KEY}"


class Ladder:
    """A LiveSource over one LiveStream, fed by the test."""

    def __init__(self, data: bytes) -> None:
        self.store = MemoryStore()
        self.waiters = Waiters()
        self.live = LiveStream(
            PATH,
            self.store,
            SegmenterConfig(),
            wallclock=lambda: 1.7e9,
            on_update=lambda: self.waiters.notify(PATH),
        )
        self._tags: Iterator[FlvTag] = iter(tags(data))

    def feed_until(self, ms: int) -> None:
        for tag in self._tags:
            self.live.feed(tag, tag.timestamp / 1000)
            if tag.timestamp >= ms:
                return

    def feed_one(self) -> None:
        tag = next(self._tags)
        self.live.feed(tag, tag.timestamp / 1000)

    def playlist(self, name: str) -> LivePlaylist:
        playlist = self.live.live_playlist(name)
        assert playlist is not None, name
        return playlist

    def live_playlist(self, app: str, key: str, file: str) -> LivePlaylist | None:
        return self.live.live_playlist(file) if (app, key) == (APP, KEY) else None

    def live_part(self, app: str, key: str, file: str) -> bytes | None:
        return self.live.part(file) if (app, key) == (APP, KEY) else None

    def missing_reason(self, app: str, key: str, file: str) -> str | None:
        return None

    def made_elsewhere(self, app: str, key: str) -> bool:
        return False


@pytest.fixture(scope="module")
def ladder_flv(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_flv(tmp_path_factory.mktemp("ladder") / "ladder.flv", *ladder_args(6))


@pytest.fixture
def ladder(ladder_flv: bytes) -> Ladder:
    source = Ladder(ladder_flv)
    source.feed_until(3000)
    return source


@pytest.fixture
def app(ladder: Ladder) -> QuartTrio:
    return create_app(ladder.store, FakeStatus(), live=ladder, waiters=ladder.waiters)


async def test_blocking_reload_of_a_rendition_waits_for_its_own_part(
    app: QuartTrio, ladder: Ladder
) -> None:
    client = app.test_client()
    v1 = ladder.playlist("cmaf-v1.m3u8")
    msn, parts = v1.position.msn, v1.position.parts
    responses = []

    async def ask() -> None:
        url = f"/{PATH}/cmaf-v1.m3u8?_HLS_msn={msn}&_HLS_part={parts}"
        responses.append(await client.get(url))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        await trio.testing.wait_all_tasks_blocked()
        assert not responses and ladder.waiters.waiting(PATH) == 1
        while v1.position.parts <= parts and v1.position.msn == msn:
            ladder.feed_one()
        await trio.testing.wait_all_tasks_blocked()
    (response,) = responses
    assert response.status_code == 200
    text = await response.get_data(as_text=True)
    parsed = m3u8.loads(text)
    uris = [p.uri for s in parsed.segments for p in s.parts]
    assert uris and all("-v1-" in uri for uri in uris)
    assert uris[-1].endswith(f"-{msn}.{parts}.m4s")
    reports = [line for line in text.splitlines() if line.startswith("#EXT-X-RENDITION-REPORT")]
    assert [r.split('"')[1] for r in reports] == [
        "cmaf.m3u8",
        "cmaf-v2.m3u8",
        "cmaf-a0.m3u8",
        "cmaf-a1.m3u8",
    ]


async def test_hinted_part_of_a_rendition_is_answered_once_written(
    app: QuartTrio, ladder: Ladder
) -> None:
    client = app.test_client()
    v2 = ladder.playlist("cmaf-v2.m3u8")
    hint = v2.preload_hint
    assert hint is not None and "-v2-" in hint and ladder.live.part(hint) is None
    responses = []

    async def fetch() -> None:
        responses.append(await client.get(f"/{PATH}/{hint}"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(fetch)
        await trio.testing.wait_all_tasks_blocked()
        assert not responses
        while ladder.live.part(hint) is None:
            ladder.feed_one()
        await trio.testing.wait_all_tasks_blocked()
    (response,) = responses
    assert response.status_code == 200
    assert await response.get_data() == ladder.live.part(hint)
    assert response.headers["Content-Type"] == "video/iso.segment"


async def test_each_rendition_playlist_is_served_from_memory(app: QuartTrio) -> None:
    client = app.test_client()
    for name in ("cmaf.m3u8", "cmaf-v1.m3u8", "cmaf-v2.m3u8", "cmaf-a0.m3u8", "cmaf-a1.m3u8"):
        response = await client.get(f"/{PATH}/{name}")
        assert response.status_code == 200, name
        text = await response.get_data(as_text=True)
        assert "#EXT-X-PART-INF" in text and "#EXT-X-PRELOAD-HINT" in text, name
        assert text.count("#EXT-X-RENDITION-REPORT") == 4, name
    # index.m3u8 and ts.m3u8 are the store's (no live LL-HLS playlist of that name).
    index = await client.get(f"/{PATH}/index.m3u8")
    assert index.status_code == 200
    assert (await index.get_data(as_text=True)).count("#EXT-X-STREAM-INF") == 3


def test_source_finds_no_playlist_for_other_names(ladder: Ladder) -> None:
    for name in ("index.m3u8", "ts.m3u8", "cmaf-v9.m3u8", "nope-1.0.m4s"):
        assert ladder.live.live_playlist(name) is None, name
