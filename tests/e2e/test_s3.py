"""Issue 17 part 2 end to end: FFmpeg publishes, the gateway uploads to a real S3 API (moto's
server on loopback), players fetch segments from the bucket.

The order the bucket saw is taken from the server itself (tests/s3server.py notes the start and
end of every request): no playlist may start going up before every object it names is in the
bucket. The outage is real: the server's port is closed, then opened again.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import m3u8
import pytest
import trio

from gateway.app import Gateway
from gateway.s3store import S3Store
from segmenter.s3 import SEGMENT, kind_of
from tests.clients import apt_ffprobe_exe, imageio_ffmpeg_exe, publish_args, run_client
from tests.conftest import start_gateway, test_settings
from tests.s3server import MotoS3, aws_environment, out_of_order, playlist_uris, serving

pytestmark = pytest.mark.e2e

DEADLINE = 90.0  # generous bound on any one wait below


@pytest.fixture
def moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoS3]:
    for name, value in aws_environment().items():
        monkeypatch.setenv(name, value)  # botocore's credential chain reads the environment
    yield from serving()


async def start(
    nursery: trio.Nursery, moto: MotoS3, *, public_read: bool = False, **overrides: object
) -> tuple[Gateway, trio.Event, str]:
    bucket = f"e2e-{secrets.token_hex(4)}"
    moto.create_bucket(bucket, public_read=public_read)
    settings = test_settings(
        hls_s3_url=f"s3://{bucket}/hls",
        s3_endpoint_url=moto.endpoint,
        s3_retry_base_delay=0.05,
        s3_retry_max_delay=0.5,
        hls_target_duration=1.0,
        **overrides,
    )
    gw, stop = await start_gateway(nursery, settings)
    assert isinstance(gw.store, S3Store)
    return gw, stop, bucket


def rtmp_url(gw: Gateway, key: str) -> str:
    assert gw.bound is not None
    return f"rtmp://127.0.0.1:{gw.bound.rtmp_port}/live/{key}"


async def publish(gw: Gateway, key: str, seconds: float) -> None:
    args = publish_args(imageio_ffmpeg_exe(), rtmp_url(gw, key), seconds=seconds, gop=30)
    result = await run_client(args, timeout=seconds + 60)
    assert result.returncode == 0, result.stderr.decode(errors="replace")


def media_keys(keys: set[str]) -> set[str]:
    return {k for k in keys if k and not k.endswith(".m3u8")}  # "": the bucket's own PUT


async def wait_for(check: Callable[[], bool], what: str) -> None:
    """Poll ``check()`` until it holds, within DEADLINE (then fail naming ``what``)."""
    with trio.move_on_after(DEADLINE):
        while not check():
            await trio.sleep(0.1)
        return
    raise AssertionError(f"no {what} within {DEADLINE} s")


def bucket_playlist(moto: MotoS3, bucket: str, key: str) -> str | None:
    if key not in moto.keys(bucket, key):
        return None
    text: str = moto.get(bucket, key)["Body"].read().decode()
    return text


def missing_from_bucket(
    moto: MotoS3, bucket: str, directory: str, text: str, base: str
) -> set[str]:
    """Objects a playlist names that the bucket does not hold."""
    keys = moto.keys(bucket, directory)
    named = set()
    for uri in playlist_uris(text):
        named.add(uri[len(base) :].lstrip("/") if base else f"{directory}/{uri}")
    return named - keys


async def test_objects_reach_the_bucket_in_order_with_headers_and_expire(
    nursery: trio.Nursery, moto: MotoS3
) -> None:
    gw, _stop, bucket = await start(
        nursery, moto, hls_window=3, hls_end_grace=1.0, hls_retention=3.0
    )
    directory = "hls/live/cam"
    await publish(gw, "cam", seconds=8)

    # Ended: the final playlists (EXT-X-ENDLIST) reach the bucket after what they name.
    def ended() -> bool:
        texts = [
            bucket_playlist(moto, bucket, f"{directory}/{n}") for n in ("ts.m3u8", "cmaf.m3u8")
        ]
        return all(t is not None and "#EXT-X-ENDLIST" in t and "#EXTINF" in t for t in texts)

    await wait_for(ended, "ended playlists in the bucket")
    for name in ("ts.m3u8", "cmaf.m3u8"):
        text = bucket_playlist(moto, bucket, f"{directory}/{name}")
        assert text is not None
        assert missing_from_bucket(moto, bucket, directory, text, "") == set()
        listing = m3u8.loads(text)
        assert len(listing.segments) >= 3
        first = listing.segments[0]
        segment = moto.get(bucket, f"{directory}/{first.uri}")
        expected = "video/mp2t" if name == "ts.m3u8" else "video/iso.segment"
        assert segment["ContentType"] == expected
        assert segment["CacheControl"] == "public, max-age=86400, immutable"
        if name == "cmaf.m3u8":
            init = moto.get(bucket, f"{directory}/{first.init_section.uri}")
            assert init["ContentType"] == "video/mp4"
            assert init["CacheControl"] == "public, max-age=86400, immutable"
        head = moto.get(bucket, f"{directory}/{name}")
        assert head["ContentType"] == "application/vnd.apple.mpegurl"
        assert head["CacheControl"] == "public, max-age=1"
    index = moto.get(bucket, f"{directory}/index.m3u8")
    assert index["ContentType"] == "application/vnd.apple.mpegurl"

    # 8 s of 1 s segments with a window of 3: the early ones left the window while the stream
    # ran and were deleted; hls_retention after the end, the rest goes (the retirement).
    events = moto.recorder.snapshot()
    deleted_live = {e.key for e in events if e.method == "DELETE" and e.phase == "end"}
    assert any(kind_of(k) == SEGMENT for k in deleted_live)

    await wait_for(lambda: media_keys(moto.keys(bucket, directory)) == set(), "retirement")
    for name in ("ts.m3u8", "cmaf.m3u8"):  # the numbering stays, in an empty ended playlist
        text = bucket_playlist(moto, bucket, f"{directory}/{name}")
        assert text is not None and "#EXT-X-ENDLIST" in text and "#EXTINF" not in text

    events = moto.recorder.snapshot()
    assert out_of_order(events, bucket) == []
    put = {e.key for e in events if e.method == "PUT" and e.phase == "end" and e.status < 300}
    gone = {e.key for e in events if e.method == "DELETE" and e.phase == "end" and e.status < 300}
    assert media_keys(put) and media_keys(put) <= gone  # every object that went up was deleted


async def test_a_store_outage_fails_healthz_and_nothing_in_the_window_is_lost(
    nursery: trio.Nursery, moto: MotoS3
) -> None:
    gw, _stop, bucket = await start(nursery, moto, hls_window=6, s3_request_timeout=2.0)
    assert gw.bound is not None and isinstance(gw.store, S3Store)
    store = gw.store
    directory = "hls/live/cam"
    published = trio.Event()

    async def publisher() -> None:
        await publish(gw, "cam", seconds=25)
        published.set()

    nursery.start_soon(publisher)
    await wait_for(lambda: len(media_keys(moto.keys(bucket, directory))) >= 4, "first uploads")

    async with httpx.AsyncClient(base_url=gw.bound.http_url, timeout=10) as http:
        assert (await http.get("/healthz")).status_code == 200
        moto.stop()
        down_at = len(moto.recorder.snapshot())
        healthz = await http.get("/healthz")
        with trio.fail_after(DEADLINE):
            while healthz.status_code != 503:
                await trio.sleep(0.1)
                healthz = await http.get("/healthz")
        body = json.loads(healthz.text)
        assert body["status"] == "failing"
        assert body["reason"].startswith("store: S3 PUT live/cam/")
        assert "ConnectError" in body["reason"]
        # The outage lasts until segments of both formats wait for the bucket.
        waiting: set[str] = set()

        def queued_segments() -> bool:
            waiting.update(op.name for op in store.queue if op.kind == SEGMENT)
            return len(waiting) >= 4

        await wait_for(queued_segments, "segments cut during the outage")
        assert not published.is_set()
        # New segments in the gateway's memory do not make the store look healthy again.
        assert (await http.get("/healthz")).status_code == 503
        # While down, the gateway still serves the stream itself.
        assert (await http.get("/live/cam/ts.m3u8")).status_code == 200

        moto.start()
        with trio.fail_after(DEADLINE):
            while (await http.get("/healthz")).status_code != 200:
                await trio.sleep(0.1)
        with trio.fail_after(DEADLINE):
            await store.drain()
        # Nothing waits: every object the gateway's playlists list is in the bucket.
        listed = {
            name: store.get(f"live/cam/{name}") for name in ("ts.m3u8", "cmaf.m3u8", "index.m3u8")
        }
        for name, data in listed.items():
            assert data is not None
            assert missing_from_bucket(moto, bucket, directory, data.decode(), "") == set(), name
            assert bucket_playlist(moto, bucket, f"{directory}/{name}") == data.decode()

    events = moto.recorder.snapshot()
    after = [e for e in events[down_at:] if e.method == "PUT" and e.phase == "end"]
    recovered = {e.key.removeprefix("hls/") for e in after} & waiting
    assert recovered, "segments cut during the outage went up after it"
    assert out_of_order(events, bucket) == []
    with trio.fail_after(DEADLINE):
        await published.wait()


async def test_public_base_url_sends_players_to_the_bucket(
    nursery: trio.Nursery, moto: MotoS3, tmp_path: Path
) -> None:
    bucket = "public-" + secrets.token_hex(4)
    base = f"{moto.endpoint}/{bucket}/hls"
    moto.create_bucket(bucket, public_read=True)
    settings = test_settings(
        hls_s3_url=f"s3://{bucket}/hls",
        s3_endpoint_url=moto.endpoint,
        hls_public_base_url=base,
        hls_target_duration=1.0,
        hls_end_grace=1.0,
    )
    gw, _stop = await start_gateway(nursery, settings)
    assert gw.bound is not None and isinstance(gw.store, S3Store)
    store = gw.store
    nursery.start_soon(publish, gw, "cam", 12.0)

    def three_segments() -> bool:
        data = store.get("live/cam/ts.m3u8")
        return data is not None and data.count(b"#EXTINF") >= 3

    await wait_for(three_segments, "three segments")
    async with httpx.AsyncClient(base_url=gw.bound.http_url, timeout=10) as http:
        for name in ("ts.m3u8", "cmaf.m3u8"):
            text = (await http.get(f"/live/cam/{name}")).text
            listing = m3u8.loads(text)
            assert listing.segments and all(
                s.uri.startswith(f"{base}/live/cam/") for s in listing.segments
            ), text
            if name == "cmaf.m3u8":
                # EXT-X-MAP too; parts and the preload hint stay with the gateway (origin).
                assert listing.segments[0].init_section.uri.startswith(f"{base}/live/cam/init-")
                assert "#EXT-X-PART:" in text and 'URI="' in text
                parts = [p.uri for s in listing.segments for p in s.parts]
                assert parts and not any(p.startswith("http") for p in parts)
                assert '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="' in text
                assert f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{base}' not in text

    # Real players: FFmpeg reads each playlist from the gateway, the segments from the bucket.
    ffmpeg = imageio_ffmpeg_exe()
    outputs = {}
    async with trio.open_nursery() as players:
        for name, muxer in (("ts.m3u8", "mpegts"), ("cmaf.m3u8", "mp4")):
            out = tmp_path / f"{name}.{muxer}"
            outputs[name] = out
            args = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
                    "-i", f"{gw.bound.http_url}/live/cam/{name}",
                    "-map", "0", "-c", "copy", "-f", muxer, str(out)]  # fmt: skip
            players.start_soon(_play, args)
    for name, out in outputs.items():
        args = [apt_ffprobe_exe(), "-v", "error", "-count_frames", "-select_streams", "v:0",
                "-show_entries", "stream=codec_name,nb_read_frames",
                "-of", "json", str(out)]  # fmt: skip
        probe = await run_client(args, timeout=60)
        assert probe.returncode == 0, probe.stderr.decode(errors="replace")
        stream = json.loads(probe.stdout)["streams"][0]
        assert stream["codec_name"] == "h264", name
        assert int(stream["nb_read_frames"]) >= 60, (name, stream)  # at least 2 s at 30 fps
    gets = [e for e in moto.recorder.snapshot() if e.method == "GET" and e.phase == "end"]
    fetched = {e.key for e in gets if e.status < 300 and e.bucket == bucket}
    # A segment is listed with its bucket URI only once it is there (before, the gateway
    # serves it): no player was ever sent to the bucket for something it did not hold.
    assert [e.key for e in gets if e.status >= 300] == []
    assert any(k.endswith(".ts") for k in fetched), "the TS player fetched from the bucket"
    assert any(k.endswith(".m4s") for k in fetched), "the CMAF player fetched from the bucket"
    assert any(k.endswith(".mp4") for k in fetched), "the init segment came from the bucket"


async def _play(args: list[str]) -> None:
    result = await run_client(args, timeout=60)
    assert result.returncode == 0, result.stderr.decode(errors="replace")


async def test_a_graceful_stop_leaves_the_ended_playlists_in_the_bucket(moto: MotoS3) -> None:
    bucket = "stop-" + secrets.token_hex(4)
    moto.create_bucket(bucket)
    settings = test_settings(
        hls_s3_url=f"s3://{bucket}/hls",
        s3_endpoint_url=moto.endpoint,
        hls_target_duration=1.0,
        hls_end_grace=600.0,  # only the shutdown ends the playlists
    )
    async with trio.open_nursery() as nursery:
        gw, stop = await start_gateway(nursery, settings)
        await publish(gw, "cam", seconds=3)
        await wait_for(
            lambda: "#EXTINF" in (bucket_playlist(moto, bucket, "hls/live/cam/ts.m3u8") or ""),
            "a segment listed in the bucket",
        )
        stop.set()  # the gateway returns once the uploads drained (within shutdown_timeout)
    for name in ("ts.m3u8", "cmaf.m3u8"):
        text = bucket_playlist(moto, bucket, f"hls/live/cam/{name}")
        assert text is not None and "#EXT-X-ENDLIST" in text, name
        assert missing_from_bucket(moto, bucket, "hls/live/cam", text, "") == set()
    assert out_of_order(moto.recorder.snapshot(), bucket) == []
