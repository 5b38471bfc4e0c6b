"""HLS viewers: distinct playback sessions per stream over a sliding window (web.viewers)."""

from __future__ import annotations

from web.viewers import Viewers, session_of


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_session_counts_once_while_it_keeps_requesting() -> None:
    clock = Clock()
    viewers = Viewers(30.0, clock=clock)
    for t in range(0, 100, 2):  # a player reloading every 2 s for 100 s
        clock.now = t
        viewers.seen("live/a", "one")
        assert viewers.count("live/a") == 1
    viewers.seen("live/a", "two")
    viewers.seen("live/b", "one")  # the same session on another stream counts there too
    assert viewers.counts() == {"live/a": 2, "live/b": 1}


def test_a_session_stops_counting_a_window_after_its_last_request() -> None:
    clock = Clock()
    viewers = Viewers(30.0, clock=clock)
    viewers.seen("live/a", "gone")
    clock.now = 20.0
    viewers.seen("live/a", "stays")
    clock.now = 30.0
    assert viewers.count("live/a") == 2  # within the window (inclusive)
    clock.now = 30.5
    assert viewers.count("live/a") == 1
    clock.now = 51.0
    assert viewers.count("live/a") == 0 and viewers.counts() == {}
    viewers.window = 60.0  # a reload widens the window: sessions seen from now on
    viewers.seen("live/a", "new")
    clock.now = 100.0
    assert viewers.count("live/a") == 1


def test_sessions_tracked_at_once_are_capped() -> None:
    clock = Clock()
    viewers = Viewers(10.0, max_sessions=3, clock=clock)
    for n in range(5):
        viewers.seen("live/a", f"a:{n}")
    assert viewers.count("live/a") == 3  # the cap: memory is bounded whatever clients send
    clock.now = 11.0
    viewers.seen("live/b", "a:late")  # the stale ones expire and make room
    assert viewers.counts() == {"live/b": 1}


def test_session_key_is_address_and_user_agent() -> None:
    assert session_of("10.0.0.1", "hls.js") == "10.0.0.1 hls.js"
    assert session_of("10.0.0.1", "Safari") != session_of("10.0.0.1", "hls.js")
    assert session_of("10.0.0.1", None) == "10.0.0.1 "
    assert session_of("10.0.0.1", "x" * 1000) == "10.0.0.1 " + "x" * 200  # bounded memory
