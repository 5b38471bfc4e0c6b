"""HLS viewers: distinct playback sessions per stream over a sliding window.

HTTP has no connection per viewer: a player reloads the playlist every target duration or so
and fetches segments, over one or several connections. A viewer is counted by its client
address and User-Agent, which every request of a playback session carries alike. Players
behind one NAT with the same player and version count as one, so the figure is a lower bound.

The playback token of ``read_auth`` is not used: it is renewed on every playlist load, and a
client that presents its original credential again on each reload (FFmpeg given a URL with a
JWT does) gets a new token session each time, which would count one viewer many times.

A session counts while it fetched a playlist, segment or part of the stream with success within
the last ``window`` seconds. At most ``max_sessions`` sessions are tracked at once (memory is
bounded whatever the clients send); past it new sessions are not counted until others expire.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["MAX_SESSIONS", "Viewers", "session_of"]

MAX_SESSIONS = 100_000  # sessions tracked at once, all streams together (~200 bytes each)
_USER_AGENT_CHARS = 200  # of a User-Agent kept in a session key (bounded memory per session)


def session_of(ip: str, user_agent: str | None) -> str:
    """The key a request's playback session is counted by (see the module docstring)."""
    return f"{ip} {(user_agent or '')[:_USER_AGENT_CHARS]}"


class Viewers:
    def __init__(
        self,
        window: float,
        *,
        max_sessions: int = MAX_SESSIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self.max_sessions = max_sessions
        self._clock = clock
        # Per stream path: session -> last seen, oldest first (expiry pops from the front).
        self._streams: dict[str, OrderedDict[str, float]] = {}
        self._tracked = 0

    def seen(self, path: str, session: str) -> None:
        """A request of ``session`` for a file of stream ``path`` was answered with success."""
        now = self._clock()
        sessions = self._streams.get(path)
        if sessions is not None:
            if session in sessions:
                sessions.move_to_end(session)
                sessions[session] = now
                return
            self._expire(path, sessions, now)
        if self._tracked >= self.max_sessions:
            self.counts()  # expire every stream's old sessions; rare (the cap is generous)
            if self._tracked >= self.max_sessions:
                return
        self._streams.setdefault(path, OrderedDict())[session] = now
        self._tracked += 1

    def count(self, path: str) -> int:
        """Sessions of stream ``path`` seen within the window."""
        sessions = self._streams.get(path)
        if sessions is None:
            return 0
        self._expire(path, sessions, self._clock())
        return len(sessions)

    def counts(self) -> dict[str, int]:
        """Every stream with viewers now, by path."""
        return {path: n for path in list(self._streams) if (n := self.count(path))}

    def _expire(self, path: str, sessions: OrderedDict[str, float], now: float) -> None:
        while sessions:
            session, last = next(iter(sessions.items()))
            if now - last <= self.window:
                break
            del sessions[session]
            self._tracked -= 1
        if not sessions:
            self._streams.pop(path, None)
