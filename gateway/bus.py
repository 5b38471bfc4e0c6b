"""The link between the supervisor and its worker processes, as bytes (sans-IO).

Each worker has one stream socket to the supervisor. A frame is a 4-byte big-endian length of
what follows, the addressee and the sender (signed 16-bit each), then the message pickled. The
supervisor routes frames by the addressee without unpickling them (it rewrites the sender, so a
worker cannot speak for another) and reads only the frames addressed to itself. Pickle is safe
here: both ends are this program, and the socket pair is made by the supervisor and inherited
by the worker it starts, never reachable from outside.

The messages are the dataclasses below; ``gateway.cluster`` (worker side) and
``gateway.supervisor`` act on them.
"""

from __future__ import annotations

import pickle
import struct
from dataclasses import dataclass, field
from typing import Any

from gateway.config import Settings
from segmenter.playlist import LivePlaylist

_HEADER = struct.Struct(">Ihh")
HEADER_SIZE = _HEADER.size
# Addressees besides a worker's index.
SUPERVISOR = -1
OTHERS = -2  # every worker but the sender
# A frame bigger than this is a bug (a segment is a few MB): the link is closed.
MAX_FRAME = 256 << 20


# The supervisor's heartbeat and a worker's answer (sent by the worker's event loop: a loop
# that is stuck does not answer).
PING = "ping"
PONG = "pong"


class BusError(Exception):
    """The peer sent something that is not a frame of this protocol."""


def frame(to: int, sender: int, body: bytes) -> bytes:
    return _HEADER.pack(len(body) + 4, to, sender) + body


def encode(to: int, sender: int, message: object) -> bytes:
    return frame(to, sender, pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def decode(body: bytes) -> object:
    return pickle.loads(body)


@dataclass(frozen=True)
class Frame:
    to: int
    sender: int
    body: bytes

    def readdressed(self, sender: int) -> bytes:
        """The frame as the supervisor forwards it: the sender is who really sent it."""
        return frame(self.to, sender, self.body)


class Deframer:
    """Bytes in, frames out; keeps a partial frame until the rest arrives."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buffer = bytearray()
        self._max = max_frame

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        out: list[Frame] = []
        view = self._buffer
        start = 0
        while len(view) - start >= HEADER_SIZE:
            length, to, sender = _HEADER.unpack_from(view, start)
            if length < 4 or length > self._max:
                raise BusError(f"frame of {length} bytes (at most {self._max})")
            end = start + 4 + length
            if len(view) < end:
                break
            out.append(Frame(to, sender, bytes(view[start + HEADER_SIZE : end])))
            start = end
        if start:
            del self._buffer[:start]
        return out

    @property
    def buffered(self) -> int:
        return len(self._buffer)


# --- supervisor -> worker -----------------------------------------------------------------------
@dataclass(frozen=True)
class Start:
    """The first message a worker gets: who it is and what it runs with."""

    index: int
    count: int
    settings: Settings
    owners: dict[str, int]  # stream path -> owning worker, as the supervisor knows them


@dataclass(frozen=True)
class Reload:
    """SIGHUP reached the supervisor: the settings it loaded again."""

    settings: Settings


@dataclass(frozen=True)
class Owner:
    """Who owns a stream path now (-1: nobody). From a worker to the supervisor it is a claim
    (``live``: a publisher is on it) or a release; the supervisor tells everyone the result."""

    path: str
    worker: int
    live: bool = False


@dataclass(frozen=True)
class Evict:
    """Supervisor -> worker: another worker's publisher holds ``path``; drop yours."""

    path: str
    holder: int


@dataclass(frozen=True)
class Joined:
    """Supervisor -> workers: worker ``index`` (re)started; send it copies of your streams."""

    index: int


@dataclass(frozen=True)
class Died:
    """Supervisor -> workers: worker ``index`` died holding ``paths``; ``adopter`` ends their
    playlists and later removes them, as the dead worker would have."""

    index: int
    paths: tuple[str, ...]
    adopter: int


# --- worker -> workers: the copies of every stream's HLS --------------------------------------
@dataclass(frozen=True)
class Put:
    name: str
    data: bytes


@dataclass(frozen=True)
class Delete:
    name: str


@dataclass(frozen=True)
class LiveState:
    """A stream's LL-HLS state after an update: its playlists, the parts the receiver does not
    have yet, and which parts are still listed (the others are forgotten)."""

    path: str
    playlists: dict[str, LivePlaylist]
    new_parts: dict[str, bytes]
    parts: frozenset[str]
    missing: dict[str, str] = field(default_factory=dict)  # file -> why it is not made


@dataclass(frozen=True)
class Gone:
    """The stream's LL-HLS state is no longer made (ended and closed, or moved)."""

    path: str


@dataclass(frozen=True)
class WantLive:
    """A worker asked for the stream's LL-HLS playlists or parts: send it LiveStates."""

    path: str


@dataclass(frozen=True)
class UnwantLive:
    """No one asked that worker for the stream's LL-HLS files for a while: stop."""

    path: str


# --- RTMP players on a worker that does not own the stream -----------------------------------
@dataclass(frozen=True)
class Subscribe:
    path: str


@dataclass(frozen=True)
class Unsubscribe:
    path: str


@dataclass(frozen=True)
class Relayed:
    """Hub items of a subscribed stream: FLV tags, or a session start/end."""

    path: str
    items: tuple[Any, ...]


# --- whole-gateway answers (/api, /metrics) ---------------------------------------------------
@dataclass(frozen=True)
class Ask:
    request: int
    what: str  # "streams" | "metrics" | "stream" (the one ``path``)
    path: str = ""


@dataclass(frozen=True)
class Answer:
    request: int
    value: Any
