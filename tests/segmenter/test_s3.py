"""segmenter.s3: the S3 store's pure rules (URL, order, expiry, retry schedule), no server."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from segmenter.s3 import (
    INIT,
    PLAYLIST,
    SEGMENT,
    Operation,
    S3Location,
    UploadQueue,
    backoff_delay,
    kind_of,
    parse_s3_url,
)


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [
        ("s3://media", "media", ""),
        ("s3://media/", "media", ""),
        ("s3://media/hls", "media", "hls"),
        ("s3://my.bucket-1/live/edge_2/", "my.bucket-1", "live/edge_2"),
    ],
)
def test_parse_s3_url(url: str, bucket: str, prefix: str) -> None:
    location = parse_s3_url(url)
    assert location == S3Location(bucket, prefix)
    assert location.key("live/cam/seg-1.ts") == (
        f"{prefix}/live/cam/seg-1.ts" if prefix else "live/cam/seg-1.ts"
    )


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://media/hls", "must start with s3://"),
        ("media/hls", "must start with s3://"),
        ("s3://Media", "invalid bucket name"),
        ("s3://ab", "invalid bucket name"),
        ("s3://a..b", "invalid bucket name"),
        ("s3://media:9000/x", "without user, port"),
        ("s3://key@media/x", "without user, port"),
        ("s3://media/x?versionId=1", "without user, port"),
        ("s3://media/../x", "invalid key prefix"),
        ("s3://media/a b", "invalid key prefix"),
        ("s3://media/a//b", "invalid key prefix"),
    ],
)
def test_parse_s3_url_refuses(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why.replace(".", r"\.")):
        parse_s3_url(url)


def test_kinds() -> None:
    assert kind_of("live/a/cmaf.m3u8") == PLAYLIST
    assert kind_of("live/a/index.m3u8") == PLAYLIST
    assert kind_of("live/a/s1-4.ts") == SEGMENT
    assert kind_of("live/a/s1-4.m4s") == SEGMENT
    assert kind_of("live/a/init-0123456789ab.mp4") == INIT


def test_backoff_grows_to_the_cap_with_full_jitter() -> None:
    top = [backoff_delay(n, 0.2, 10.0, lambda: 0.999999) for n in range(1, 12)]
    assert top[:6] == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 6.4], rel=1e-5)
    assert top[6:] == pytest.approx([10.0] * 5, rel=1e-5)
    assert backoff_delay(3, 0.2, 10.0, lambda: 0.0) == 0.0
    assert backoff_delay(3, 0.2, 10.0, lambda: 0.5) == pytest.approx(0.4)
    assert backoff_delay(0, 0.2, 10.0, lambda: 0.5) == 0.0
    assert backoff_delay(10_000, 0.2, 10.0, lambda: 0.5) == pytest.approx(5.0)  # no overflow


def names(ops: list[Operation]) -> list[str]:
    return [op.name for op in ops]


def test_segments_go_up_together_a_playlist_only_after_them() -> None:
    q = UploadQueue()
    q.put("a/b/init-1.mp4", b"i")
    q.put("a/b/s-0.m4s", b"s0")
    q.put("a/b/cmaf.m3u8", b"p0")
    q.put("a/b/s-1.m4s", b"s1")
    first = q.ready(0.0, 8)
    # The playlist waits; the segment after it does not (the playlist does not name it).
    assert names(first) == ["a/b/init-1.mp4", "a/b/s-0.m4s", "a/b/s-1.m4s"]
    assert q.ready(0.0, 8) == []
    q.done(first[0])
    assert q.ready(0.0, 8) == []  # s-0 still in flight
    q.done(first[1])
    assert names(q.ready(0.0, 8)) == ["a/b/cmaf.m3u8"]


def test_in_flight_bound() -> None:
    q = UploadQueue()
    for n in range(5):
        q.put(f"a/b/s-{n}.ts", b"x")
    assert len(q.ready(0.0, 2)) == 2
    assert q.ready(0.0, 2) == []
    assert q.running == 2


def test_a_playlist_rewritten_before_it_went_up_is_replaced_at_the_end() -> None:
    q = UploadQueue()
    q.put("a/b/s-0.ts", b"s0")
    q.put("a/b/ts.m3u8", b"v1")
    q.put("a/b/s-1.ts", b"s1")
    q.put("a/b/ts.m3u8", b"v2")
    assert [op.data for op in q] == [b"s0", b"s1", b"v2"]
    assert q.superseded == 1
    assert q.pending_bytes == 6


def test_a_playlist_rewritten_while_in_flight_goes_up_again_after_it() -> None:
    q = UploadQueue()
    q.put("a/b/ts.m3u8", b"v1")
    (v1,) = q.ready(0.0, 8)
    q.put("a/b/ts.m3u8", b"v2")
    assert q.ready(0.0, 8) == []  # same name: after v1
    q.done(v1)
    (v2,) = q.ready(0.0, 8)
    assert v2.data == b"v2"


def test_an_expired_object_not_yet_uploaded_is_never_sent() -> None:
    q = UploadQueue()
    q.put("a/b/s-0.ts", b"12345")
    assert q.delete("a/b/s-0.ts") is None
    assert len(q) == 0 and q.pending_bytes == 0 and q.skipped == 1


def test_delete_of_an_uploaded_object_waits_for_the_playlist_before_it() -> None:
    q = UploadQueue()
    q.put("a/b/s-0.ts", b"s0")
    (s0,) = q.ready(0.0, 8)
    q.done(s0)
    assert q.stored("a/b/s-0.ts")
    q.put("a/b/ts.m3u8", b"without s-0")
    delete = q.delete("a/b/s-0.ts")
    assert delete is not None and delete.is_delete
    (playlist,) = q.ready(0.0, 8)  # the delete waits for the playlist that dropped s-0
    assert playlist.kind == PLAYLIST
    q.done(playlist)
    assert q.ready(0.0, 8) == [delete]
    q.done(delete)
    assert not q.stored("a/b/s-0.ts")


def test_delete_while_the_upload_runs_follows_it() -> None:
    q = UploadQueue()
    q.put("a/b/s-0.ts", b"s0")
    (put,) = q.ready(0.0, 8)
    delete = q.delete("a/b/s-0.ts")
    assert delete is not None
    assert q.ready(0.0, 8) == []
    q.done(put)
    assert q.ready(0.0, 8) == [delete]


def test_delete_of_something_never_uploaded_sends_nothing() -> None:
    q = UploadQueue()
    assert q.delete("a/b/s-9.ts") is None
    assert len(q) == 0


def test_failed_operation_is_retried_in_place_after_its_delay() -> None:
    q = UploadQueue()
    q.put("a/b/s-0.ts", b"s0")
    q.put("a/b/ts.m3u8", b"p")
    (s0,) = q.ready(0.0, 8)
    q.failed(s0, retry_at=5.0)
    assert q.next_retry() == 5.0
    assert q.ready(1.0, 8) == []  # not yet, and the playlist still waits for it
    assert q.ready(5.0, 8) == [s0]
    assert s0.attempts == 1
    q.done(s0)
    assert names(q.ready(5.0, 8)) == ["a/b/ts.m3u8"]
    assert q.next_retry() is None


def test_outage_recovery_uploads_the_window_skips_expired_then_playlists() -> None:
    """The store is down while six segments are cut (each followed by a playlist rewrite) and
    the two oldest expire: once it answers, the four left go up, then one playlist."""
    q = UploadQueue()
    for n in range(6):
        q.put(f"a/b/s-{n}.ts", b"x" * 10)
        q.put("a/b/ts.m3u8", f"playlist {n}".encode())
        for op in q.ready(float(n), 8):
            q.failed(op, retry_at=100.0)  # down
    for n in range(2):
        q.delete(f"a/b/s-{n}.ts")
    assert q.skipped == 2
    assert [op.name for op in q] == [f"a/b/s-{n}.ts" for n in range(2, 6)] + ["a/b/ts.m3u8"]
    up = q.ready(100.0, 8)
    assert names(up) == [f"a/b/s-{n}.ts" for n in range(2, 6)]
    for op in up:
        q.done(op)
    (playlist,) = q.ready(100.0, 8)
    assert playlist.data == b"playlist 5"


def test_a_failed_old_version_is_dropped_when_a_newer_one_waits() -> None:
    q = UploadQueue()
    q.put("a/b/ts.m3u8", b"v1")
    (v1,) = q.ready(0.0, 8)
    q.put("a/b/ts.m3u8", b"v2")
    q.failed(v1, retry_at=1.0)
    assert [op.data for op in q] == [b"v2"]
    assert q.pending_bytes == 2


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["put", "delete", "start", "ok", "fail"]),
            st.sampled_from(["s-0.ts", "s-1.ts", "s-2.ts", "init-1.mp4", "ts.m3u8", "cmaf.m3u8"]),
        ),
        max_size=60,
    )
)
def test_no_playlist_ever_goes_up_before_what_was_queued_ahead_of_it(
    steps: list[tuple[str, str]],
) -> None:
    """Whatever happens, a playlist starts only when every operation queued before it finished,
    the bytes add up, and a name never has two operations in flight."""
    q = UploadQueue()
    running: list[Operation] = []
    version = 0
    for action, name in steps:
        if action == "put":
            version += 1
            q.put(f"a/b/{name}", str(version).encode())
        elif action == "delete":
            q.delete(f"a/b/{name}")
        elif action == "start":
            before = list(q)
            for op in q.ready(0.0, 3):
                if op.kind == PLAYLIST:
                    ahead = before[: before.index(op)]
                    assert ahead == [], "a playlist started before what was queued ahead of it"
                running.append(op)
        elif running:
            op = running.pop(0)
            if action == "ok":
                q.done(op)
            else:
                q.failed(op, 0.0)
        flying = [op.name for op in q if op.running]
        assert len(flying) == len(set(flying)) and len(flying) <= 3
        assert q.pending_bytes == sum(op.size for op in q if not op.is_delete)
