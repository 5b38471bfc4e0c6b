"""LivePlaylist: every rendered rule is checked by reading the text back with m3u8.loads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import m3u8
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segmenter.playlist import (
    MAX_WINDOW_SEGMENTS,
    LivePlaylist,
    PartEntry,
    PlaylistEndedError,
    SegmentEntry,
    parse_resume_state,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)


def seg(i: int, duration: float = 2.0, **kw: object) -> SegmentEntry:
    return SegmentEntry(f"s{i}.ts", duration, **kw)  # type: ignore[arg-type]


def fill(pl: LivePlaylist, durations: list[float], start: int = 0) -> list[str]:
    removed: list[str] = []
    now = 0.0
    for i, d in enumerate(durations, start):
        now += d
        removed += pl.add_segment(seg(i, d), now)
    return removed


def tag_lines(text: str, tag: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(tag)]


# -- header tags --------------------------------------------------------------------------------


def test_header_tags_round_trip() -> None:
    pl = LivePlaylist(4, 6)
    fill(pl, [3.5, 4.0, 3.9])
    text = pl.render()
    parsed = m3u8.loads(text)
    assert text.startswith("#EXTM3U\n")
    assert parsed.version == 3
    assert parsed.target_duration == 4
    assert tag_lines(text, "#EXT-X-TARGETDURATION") == ["#EXT-X-TARGETDURATION:4"]
    assert parsed.is_independent_segments is True
    assert parsed.playlist_type is None
    assert "#EXT-X-PLAYLIST-TYPE" not in text
    assert parsed.is_endlist is False
    assert "#EXT-X-ENDLIST" not in text
    assert tag_lines(text, "#EXT-X-MEDIA-SEQUENCE") == ["#EXT-X-MEDIA-SEQUENCE:0"]
    # No discontinuity ever: no discontinuity sequence tag.
    assert "#EXT-X-DISCONTINUITY" not in text
    assert [s.uri for s in parsed.segments] == ["s0.ts", "s1.ts", "s2.ts"]


def test_independent_segments_can_be_off() -> None:
    pl = LivePlaylist(2, 3, independent_segments=False)
    fill(pl, [2.0])
    text = pl.render()
    assert "#EXT-X-INDEPENDENT-SEGMENTS" not in text
    assert not m3u8.loads(text).is_independent_segments


def test_extinf_has_three_decimals() -> None:
    pl = LivePlaylist(2, 10)
    fill(pl, [0.6000000000000001 * 3, 2.0, 1.23456, 0.0005, 1.9999])
    text = pl.render()
    assert tag_lines(text, "#EXTINF") == [
        "#EXTINF:1.800,",
        "#EXTINF:2.000,",
        "#EXTINF:1.235,",
        "#EXTINF:0.001,",
        "#EXTINF:2.000,",
    ]
    assert [s.duration for s in m3u8.loads(text).segments] == [1.8, 2.0, 1.235, 0.001, 2.0]


def test_target_duration_never_changes() -> None:
    pl = LivePlaylist(6, 3)
    for i in range(20):
        pl.add_segment(seg(i, 0.5 + (i % 12) * 0.5), float(i))
        assert tag_lines(pl.render(), "#EXT-X-TARGETDURATION") == ["#EXT-X-TARGETDURATION:6"]
    assert pl.target_duration == 6


def test_program_date_time_with_milliseconds_and_zone() -> None:
    pl = LivePlaylist(2, 3)
    pl.add_segment(seg(0, program_date_time=T0), 0.0)
    pl.add_segment(seg(1), 2.0)
    other_zone = datetime(2024, 5, 1, 14, 0, 4, tzinfo=timezone(timedelta(hours=2)))
    pl.add_segment(seg(2, discontinuity=True, program_date_time=other_zone), 4.0)
    text = pl.render()
    assert tag_lines(text, "#EXT-X-PROGRAM-DATE-TIME") == [
        "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:00.123+00:00",
        "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T14:00:04.000+02:00",
    ]
    parsed = m3u8.loads(text)
    assert [s.program_date_time for s in parsed.segments] == [T0, None, other_zone]


def test_endlist_after_end() -> None:
    pl = LivePlaylist(2, 3)
    fill(pl, [2.0, 2.0])
    assert not pl.ended
    pl.end()
    pl.end()  # idempotent
    assert pl.ended
    text = pl.render()
    assert text.rstrip("\n").endswith("#EXT-X-ENDLIST")
    assert tag_lines(text, "#EXT-X-ENDLIST") == ["#EXT-X-ENDLIST"]
    parsed = m3u8.loads(text)
    assert parsed.is_endlist is True
    assert parsed.playlist_type is None
    with pytest.raises(PlaylistEndedError):
        pl.add_segment(seg(9), 10.0)
    assert [s.uri for s in pl.segments] == ["s0.ts", "s1.ts"]


def test_empty_playlist_renders() -> None:
    parsed = m3u8.loads(LivePlaylist(2, 3).render())
    assert parsed.target_duration == 2
    assert list(parsed.segments) == []


# -- sequence numbers and window ------------------------------------------------------------------


def test_media_sequence_counts_removed_segments() -> None:
    pl = LivePlaylist(2, 4)
    now = 0.0
    for i in range(100):
        now += 2.0
        removed = pl.add_segment(seg(i), now)
        parsed = m3u8.loads(pl.render())
        assert pl.next_media_sequence == i + 1
        assert pl.media_sequence == max(0, i + 1 - 4)
        assert int(parsed.media_sequence or 0) == pl.media_sequence
        # The first listed URI is the one whose sequence number is EXT-X-MEDIA-SEQUENCE.
        assert parsed.segments[0].uri == f"s{pl.media_sequence}.ts"
        assert removed == ([f"s{i - 4}.ts"] if i >= 4 else [])


def test_media_sequence_start_value() -> None:
    pl = LivePlaylist(2, 3, media_sequence=1000, discontinuity_sequence=7)
    assert pl.next_media_sequence == 1000
    fill(pl, [2.0] * 5)
    assert pl.media_sequence == 1002
    assert pl.next_media_sequence == 1005
    parsed = m3u8.loads(pl.render())
    assert parsed.media_sequence == 1002
    # A non-zero discontinuity sequence is always shown.
    assert parsed.discontinuity_sequence == 7


def test_window_is_window_segments_when_long_enough() -> None:
    pl = LivePlaylist(2, 5)
    fill(pl, [2.0] * 30)
    assert len(pl.segments) == 5


def test_window_grows_to_cover_three_target_durations() -> None:
    pl = LivePlaylist(4, 3)
    fill(pl, [1.0] * 40)
    # 3 x 4 s = 12 s of 1 s segments: 12 listed although window_segments is 3.
    assert len(pl.segments) == 12
    assert pl.total_duration == pytest.approx(12.0)
    total = sum(s.duration for s in m3u8.loads(pl.render()).segments)
    assert total >= 3 * 4


def test_window_never_below_three_target_durations_with_mixed_durations() -> None:
    pl = LivePlaylist(6, 2)
    durations = [0.5, 6.0, 1.0, 5.9, 0.1, 3.3, 6.4, 2.2] * 10
    now = 0.0
    removed_any = False
    for i, d in enumerate(durations):
        now += d
        removed_any |= bool(pl.add_segment(seg(i, d), now))
        if removed_any:
            assert pl.total_duration >= 18 - 1e-9
    assert removed_any


def test_duration_limit_value_errors() -> None:
    pl = LivePlaylist(2, 3)
    pl.add_segment(seg(0, 2.499), 0.0)  # rounds to 2
    with pytest.raises(ValueError, match="target duration"):
        pl.add_segment(seg(1, 2.5), 1.0)  # nearest integer is 3 (half up, as clients round)
    with pytest.raises(ValueError, match="target duration"):
        pl.add_segment(seg(1, 2.4996), 1.0)  # renders as 2.500
    with pytest.raises(ValueError, match="target duration"):
        pl.add_segment(seg(1, 7.0), 1.0)
    # A rejected add changes nothing.
    assert [s.uri for s in pl.segments] == ["s0.ts"]
    assert pl.next_media_sequence == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"uri": "", "duration": 1.0},
        {"uri": "a b.ts", "duration": 1.0},
        {"uri": "a\n#EXT-X-ENDLIST", "duration": 1.0},
        {"uri": "a.ts", "duration": -1.0},
        {"uri": "a.ts", "duration": float("nan")},
        {"uri": "a.ts", "duration": float("inf")},
        {"uri": "a.ts", "duration": 1.0, "program_date_time": datetime(2024, 1, 1)},
    ],
)
def test_segment_entry_value_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SegmentEntry(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "args, kwargs",
    [
        ((0, 3), {}),
        ((2, 0), {}),
        ((2, MAX_WINDOW_SEGMENTS + 1), {}),
        ((2.5, 3), {}),
        ((True, 3), {}),
        ((2, 3), {"media_sequence": -1}),
        ((2, 3), {"discontinuity_sequence": -1}),
    ],
)
def test_constructor_value_errors(args: tuple[object, ...], kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        LivePlaylist(*args, **kwargs)  # type: ignore[arg-type]


# -- discontinuities ------------------------------------------------------------------------------


def test_discontinuity_tags_and_sequence() -> None:
    pl = LivePlaylist(2, 3)
    now = 0.0
    disc_at = {2, 3, 7}
    history: list[int] = []
    for i in range(14):
        now += 2.0
        removed = pl.add_segment(seg(i, discontinuity=i in disc_at), now)
        text = pl.render()
        parsed = m3u8.loads(text)
        if i < 2:
            assert "#EXT-X-DISCONTINUITY-SEQUENCE" not in text
        else:
            # Present from the first discontinuity on, even while its value is 0.
            assert len(tag_lines(text, "#EXT-X-DISCONTINUITY-SEQUENCE:")) == 1
        expected = sum(1 for r in range(i + 1 - len(parsed.segments)) if r in disc_at)
        assert pl.discontinuity_sequence == expected
        assert int(parsed.discontinuity_sequence or 0) == expected
        # Increments exactly when (and by as many as) discontinuity entries leave.
        left = [int(u[1:-3]) for u in removed]
        prev = history[-1] if history else 0
        assert expected - prev == sum(1 for r in left if r in disc_at)
        history.append(expected)
        listed = [int(s.uri[1:-3]) for s in parsed.segments]
        assert [s.discontinuity for s in parsed.segments] == [r in disc_at for r in listed]
    assert history[-1] == 3


def test_discontinuity_number_of_each_segment_is_stable() -> None:
    """RFC 8216 §4.3.3.3: a segment's discontinuity number must not change across reloads."""
    pl = LivePlaylist(2, 3)
    seen: dict[str, int] = {}
    for i in range(30):
        pl.add_segment(seg(i, discontinuity=i % 4 == 1), float(i))
        parsed = m3u8.loads(pl.render())
        number = int(parsed.discontinuity_sequence or 0)
        for s in parsed.segments:
            if s.discontinuity:
                number += 1
            assert seen.setdefault(s.uri, number) == number


# -- removal grace ---------------------------------------------------------------------------------


def test_expiry_waits_for_duration_plus_longest_playlist() -> None:
    pl = LivePlaylist(2, 3)
    now = 0.0
    for i in range(3):
        now += 2.0
        assert pl.add_segment(seg(i), now) == []
    # Longest playlist that contained s0 lasted 6 s; s0 lasts 2 s: deletable 8 s after removal.
    assert pl.add_segment(seg(3), 10.0) == ["s0.ts"]
    assert pl.pending_removals == 1
    assert pl.expired(10.0) == []
    assert pl.expired(17.999) == []
    assert pl.expired(18.0) == ["s0.ts"]
    assert pl.expired(100.0) == []  # forgotten once returned
    assert pl.pending_removals == 0


def test_expiry_uses_the_longest_playlist_that_listed_the_segment() -> None:
    pl = LivePlaylist(10, 2)
    # Short segments: the window grows to 30 s worth, so s0 was in a 30 s playlist.
    now = 0.0
    removed: list[str] = []
    for i in range(31):
        now += 1.0
        removed = pl.add_segment(seg(i, 1.0), now)
    assert removed == ["s0.ts"]
    removed_at = now
    assert pl.expired(removed_at + 1.0 + 30.0 - 0.001) == []
    assert pl.expired(removed_at + 1.0 + 30.0) == ["s0.ts"]


def test_expiry_and_clean_up_name_stored_objects_only_not_parts() -> None:
    # Parts live in the segmenter's memory, never in the store: nothing to delete there.
    pl = LivePlaylist(2, 3, part_target=0.2)
    now = 0.0
    for i in range(4):
        now += 2.0
        parts = tuple(PartEntry(f"s{i}.{n}.m4s", 0.2, n == 0) for n in range(10))
        pl.add_part(parts[0], "init.mp4")
        pl.add_segment(SegmentEntry(f"s{i}.m4s", 2.0, init_uri="init.mp4", parts=parts), now)
    assert pl.listed_uris() == ["s1.m4s", "init.mp4", "s2.m4s", "s3.m4s"]
    assert pl.expired(1000.0) == ["s0.m4s"]


def test_expiry_order_and_partial() -> None:
    pl = LivePlaylist(2, 3)
    now = 0.0
    for i in range(10):
        now += 2.0
        pl.add_segment(seg(i), now)
    # s0..s6 removed at t=8,10,...,20, each due 8 s later.
    assert pl.expired(19.0) == ["s0.ts", "s1.ts"]
    assert pl.expired(24.0) == ["s2.ts", "s3.ts", "s4.ts"]
    assert pl.expired(1000.0) == ["s5.ts", "s6.ts"]


def test_pending_removals_stay_bounded_in_real_time() -> None:
    pl = LivePlaylist(2, 3)
    now = 0.0
    released: list[str] = []
    for i in range(500):
        now += 2.0
        pl.add_segment(seg(i), now)
        released += pl.expired(now)
        assert pl.pending_removals <= len(pl.segments) + 2
    # Everything removed is released exactly once, in order.
    assert released == [f"s{i}.ts" for i in range(len(released))]
    assert len(released) + pl.pending_removals + len(pl.segments) == 500


def test_pending_removals_bounded_even_with_a_runaway_clock() -> None:
    pl = LivePlaylist(2, 3)
    for i in range(1000):
        pl.add_segment(seg(i), 0.0)  # the clock never advances
    # Nothing is leaked: the overflow is released early, not forgotten.
    due = pl.expired(0.0)
    assert len(due) + pl.pending_removals + len(pl.segments) == 1000
    assert pl.pending_removals <= 2 * len(pl.segments) + 16
    assert due == [f"s{i}.ts" for i in range(len(due))]


# -- resume ----------------------------------------------------------------------------------------


def test_parse_resume_state_continues_numbering() -> None:
    pl = LivePlaylist(2, 3)
    for i in range(9):
        pl.add_segment(seg(i, discontinuity=i in (4, 7)), float(i))
    text = pl.render()
    state = parse_resume_state(text)
    assert state == (9, pl.discontinuity_sequence + 1)  # s7 is still listed with its tag
    old_last_number = pl.discontinuity_sequence + 1
    resumed = LivePlaylist(2, 3, media_sequence=state[0], discontinuity_sequence=state[1])
    resumed.add_segment(SegmentEntry("r0.ts", 2.0, discontinuity=True, program_date_time=T0), 0.0)
    parsed = m3u8.loads(resumed.render())
    assert parsed.media_sequence == 9
    # The first new segment's discontinuity number follows the old last one.
    assert int(parsed.discontinuity_sequence or 0) + 1 == old_last_number + 1


def test_parse_resume_state_of_ended_and_fresh_playlists() -> None:
    pl = LivePlaylist(2, 3)
    pl.add_segment(seg(0), 0.0)
    pl.end()
    assert parse_resume_state(pl.render()) == (1, 0)
    assert parse_resume_state(LivePlaylist(2, 3, media_sequence=5).render()) == (5, 0)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\nlow.m3u8\n",
        "#EXTM3U\n#EXTINF:1,\na.ts\n",  # no target duration: not a media playlist we wrote
    ],
)
def test_parse_resume_state_rejects_non_media_playlists(text: str) -> None:
    assert parse_resume_state(text) is None


# -- invariants under random use ------------------------------------------------------------------

adds = st.lists(
    st.tuples(st.floats(min_value=0.05, max_value=4.4), st.booleans()),
    min_size=1,
    max_size=120,
)


@settings(max_examples=200, deadline=None)
@given(
    target=st.integers(min_value=1, max_value=4),
    window=st.integers(min_value=1, max_value=8),
    steps=adds,
)
def test_invariants_hold_for_random_adds(
    target: int, window: int, steps: list[tuple[float, bool]]
) -> None:
    pl = LivePlaylist(target, window)
    minimum = 3 * target
    now = 0.0
    last_msn = 0
    last_dsn = 0
    full = False
    disc_numbers: dict[str, int] = {}
    for i, (raw, disc) in enumerate(steps):
        duration = min(raw, target + 0.499)
        now += duration
        removed = pl.add_segment(SegmentEntry(f"u{i}.ts", duration, disc), now)
        added = i + 1
        pl.expired(now)
        text = pl.render()
        parsed = m3u8.loads(text)
        msn = int(parsed.media_sequence or 0)
        dsn = int(parsed.discontinuity_sequence or 0)
        assert msn >= last_msn and dsn >= last_dsn
        assert msn - last_msn == len(removed)
        last_msn, last_dsn = msn, dsn
        assert msn + len(parsed.segments) == added == pl.next_media_sequence
        assert parsed.target_duration == target
        assert all(round(s.duration) <= target for s in parsed.segments)
        total = sum(s.duration for s in parsed.segments)
        full = full or bool(removed)
        if full:
            # Never shorter than 3 x target once the window has started sliding ...
            assert total >= minimum - 1e-6
            # ... and exactly window_segments long unless it needs more to cover 3 x target.
            assert len(parsed.segments) >= window
            head_removable = total - parsed.segments[0].duration >= minimum - 1e-6
            assert not (len(parsed.segments) > window and head_removable)
        else:
            assert len(parsed.segments) == added
        if any(s.discontinuity for s in parsed.segments) or dsn:
            assert "#EXT-X-DISCONTINUITY-SEQUENCE:" in text
        number = dsn
        for s in parsed.segments:
            number += 1 if s.discontinuity else 0
            assert disc_numbers.setdefault(s.uri, number) == number
        assert pl.pending_removals <= 2 * len(parsed.segments) + 16


def test_uri_base_makes_segment_and_map_uris_absolute_parts_and_hint_stay() -> None:
    base = "https://cdn.example.com/hls/live/cam/"
    playlist = LivePlaylist(2, 6, part_target=0.2, uri_base=base)
    parts = tuple(PartEntry(f"s0.{n}.m4s", 0.2, n == 0) for n in range(10))
    playlist.add_segment(SegmentEntry("s-0.m4s", 2.0, init_uri="init-a.mp4", parts=parts), 0.0)
    playlist.add_part(PartEntry("s1.0.m4s", 0.2, True), "init-b.mp4")
    playlist.set_preload_hint("s1.1.m4s")
    text = playlist.render()
    parsed = m3u8.loads(text)
    assert parsed.segments[0].uri == base + "s-0.m4s"
    assert parsed.segments[0].init_section.uri == base + "init-a.mp4"
    assert f'#EXT-X-MAP:URI="{base}init-b.mp4"' in text  # the open segment's new init
    assert [p.uri for p in parsed.segments[0].parts][:2] == ["s0.0.m4s", "s0.1.m4s"]
    assert 'URI="s1.0.m4s"' in text and 'PRELOAD-HINT:TYPE=PART,URI="s1.1.m4s"' in text
    stored = m3u8.loads(playlist.render(low_latency=False))
    assert [s.uri for s in stored.segments] == [base + "s-0.m4s"]
    # What the store deletes stays a store name.
    assert playlist.listed_uris() == ["s-0.m4s", "init-a.mp4"]


def test_uri_base_only_for_published_objects_until_refreshed() -> None:
    base = "https://cdn.example.com/hls/live/cam/"
    up: set[str] = {"init-a.mp4"}
    playlist = LivePlaylist(2, 6, part_target=0.2, uri_base=base, published=up.__contains__)
    playlist.add_segment(SegmentEntry("s-0.m4s", 2.0, init_uri="init-a.mp4"), 0.0)
    parsed = m3u8.loads(playlist.render())
    assert parsed.segments[0].uri == "s-0.m4s"  # not in the bucket yet: from the origin
    assert parsed.segments[0].init_section.uri == base + "init-a.mp4"
    assert playlist.names("s-0.m4s") and playlist.names("init-a.mp4")
    assert not playlist.names("s-1.m4s")
    up.add("s-0.m4s")
    assert m3u8.loads(playlist.render()).segments[0].uri == "s-0.m4s"  # cached until refresh
    playlist.refresh()
    assert m3u8.loads(playlist.render()).segments[0].uri == base + "s-0.m4s"
