"""Low-Latency HLS delivery: blocking playlist reload and preload-hinted parts
(draft-pantos-hls-rfc8216bis §6.2.5.2, §6.2.6).

The segmenter keeps each live stream's LL-HLS playlist (``segmenter.playlist.LivePlaylist`` with
a part target) and its parts in memory and calls ``Waiters.notify(path)`` after every part,
segment and EXT-X-ENDLIST; ``cmaf.m3u8`` (and each multitrack rendition's ``cmaf-v<ID>.m3u8`` /
``cmaf-a<ID>.m3u8``) is answered from there while the stream is made here
(the store's copy lists whole segments only). A request that asks for what does not exist yet
parks on the stream's ``trio.lowlevel.ParkingLot``: each waiting viewer is woken once per part
and answered as soon as what it asked for exists, without polling. Nothing here writes; the
parsing and the decisions are plain functions (``parse_reload``, ``reload_ready``, ``part_wanted``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar
from urllib.parse import parse_qsl

import trio

from segmenter.playlist import LivePlaylist, Position

# rfc8216bis §6.2.5.2: a blocked request gets 503 after three target durations.
BLOCK_TARGET_DURATIONS = 3
# Digits accepted in _HLS_msn / _HLS_part (a media sequence number is a decimal-integer,
# 0 to 2^64-1: 20 digits).
MAX_NUMBER_DIGITS = 20
# A query longer than this is not a player's: ignored whole (bounds the parsing work).
MAX_QUERY_LENGTH = 512
# Part file names: "<prefix>-<msn>.<part>.m4s" (segmenter.outputs.CmafOutput).
_PART_NAME = re.compile(r"(.+)-(\d{1,20})\.(\d{1,9})\.m4s")


class LiveSource(Protocol):
    """Where the web side finds a stream's LL-HLS playlist and parts while this process makes
    them (they are kept in memory; the store has the whole segments)."""

    def live_playlist(self, app: str, key: str, file: str) -> LivePlaylist | None:
        """The stream's low-latency playlist ``file`` (cmaf.m3u8, or a multitrack rendition's
        cmaf-v1.m3u8...), or the one part ``file`` belongs to; None when not made here."""
        ...

    def live_part(self, app: str, key: str, file: str) -> bytes | None:
        """The bytes of part ``file`` of the stream, or None."""
        ...

    def missing_reason(self, app: str, key: str, file: str) -> str | None:
        """Why ``file`` of the stream is not made at all (the 404 says it), or None."""
        ...

    def made_elsewhere(self, app: str, key: str) -> bool:
        """Another worker process makes the stream: a file it has listed may still be on its
        way here (gateway.cluster), so a miss is worth a short wait (:func:`await_copy`)."""
        ...


class Waiters:
    """One parking lot per stream path: a request for a future part or playlist version waits
    there and is woken by ``notify`` (sync, called from the segmenter in the publisher's task)."""

    def __init__(self) -> None:
        self._lots: dict[str, trio.lowlevel.ParkingLot] = {}

    def notify(self, path: str) -> None:
        lot = self._lots.get(path)
        if lot is not None:
            lot.unpark_all()

    async def wait(self, path: str) -> None:
        """Until the next ``notify(path)``; the caller bounds it with its own deadline."""
        lot = self._lots.get(path)
        if lot is None:
            lot = self._lots[path] = trio.lowlevel.ParkingLot()
        try:
            await lot.park()
        finally:
            if not lot and self._lots.get(path) is lot:
                del self._lots[path]  # no one waits on this stream any more

    def waiting(self, path: str) -> int:
        lot = self._lots.get(path)
        return len(lot) if lot is not None else 0


T = TypeVar("T")

# Seconds a request for a file of a stream another worker makes waits for the file's copy.
COPY_WAIT = 0.5


async def await_copy(
    source: LiveSource, waiters: Waiters, app: str, key: str, read: Callable[[], T | None]
) -> T | None:
    """``read()`` again each time a copy of the stream arrives, for at most COPY_WAIT seconds,
    if another worker makes the stream: a player that got a playlist from the owner may ask
    this worker for a segment a moment before its copy lands."""
    if not source.made_elsewhere(app, key):
        return None
    with trio.move_on_after(COPY_WAIT):
        while True:
            await waiters.wait(f"{app}/{key}")
            data = read()
            if data is not None:
                return data
    return None


class BadRequest(ValueError):
    """A blocking request the spec calls invalid (-> 400 with this message)."""


@dataclass(frozen=True, slots=True)
class Reload:
    """What a playlist request asks for: a version holding segment ``msn`` (its part ``part``
    when given), and a delta update (``skip``)."""

    msn: int | None
    part: int | None
    skip: bool


def _number(name: str, value: str) -> int:
    if not value.isascii() or not value.isdigit() or len(value) > MAX_NUMBER_DIGITS:
        raise BadRequest(f"{name} must be a decimal integer, got {value[:40]!r}")
    return int(value)


def parse_reload(query: str) -> Reload:
    """The LL-HLS delivery directives of a playlist request's query (rfc8216bis §6.2.5)."""
    if not query or len(query) > MAX_QUERY_LENGTH:
        return Reload(None, None, False)
    values = dict(parse_qsl(query, keep_blank_values=True))
    msn = part = None
    if "_HLS_msn" in values:
        msn = _number("_HLS_msn", values["_HLS_msn"])
    if "_HLS_part" in values:
        if msn is None:
            raise BadRequest("_HLS_part without _HLS_msn")  # §6.2.5.2
        part = _number("_HLS_part", values["_HLS_part"])
    skip = values.get("_HLS_skip") in ("YES", "v2")  # §6.2.5.1
    return Reload(msn, part, skip)


def advance_part_limit(part_target: float) -> int:
    """rfc8216bis §6.2.5.2: how far past the last part an _HLS_part may ask (3 / part target
    below one second, else 3)."""
    return int(3 / part_target) if part_target < 1 else 3


def reload_ready(reload: Reload, position: Position, part_target: float) -> bool:
    """Whether the playlist at ``position`` answers ``reload`` now; BadRequest when it never
    can be answered (§6.2.5.2: more than two segments ahead, or parts past the limit)."""
    if reload.msn is None or position.ended:
        return True
    last_msn = position.msn - 1  # the last complete segment
    if reload.msn > last_msn + 2:
        raise BadRequest(
            f"_HLS_msn={reload.msn} is more than two segments past the last one ({last_msn})"
        )
    if reload.part is None:
        return reload.msn <= last_msn
    if reload.msn == position.msn and reload.part >= position.parts + advance_part_limit(
        part_target
    ):
        raise BadRequest(
            f"_HLS_part={reload.part} is too far past the last part ({position.parts - 1})"
        )
    return reload.msn < position.msn or (
        reload.msn == position.msn and reload.part < position.parts
    )


def part_wanted(file: str, playlist: LivePlaylist) -> bool | None:
    """For a part that is not stored: True when it is coming (the hinted part or a little
    after it, so worth waiting for), False when it will never exist, None when ``file`` is no
    part of this playlist's current session."""
    hint = playlist.preload_hint
    match = _PART_NAME.fullmatch(file)
    hint_match = _PART_NAME.fullmatch(hint) if hint else None
    if match is None or hint_match is None or match[1] != hint_match[1]:
        return None
    msn, part = int(match[2]), int(match[3])
    position = playlist.position
    if position.ended or msn < position.msn:
        return False  # that segment is complete: a part it does not have never comes
    limit = advance_part_limit(playlist.part_target or 1.0)
    return msn <= position.msn + 1 and part < position.parts + limit


def deadline_seconds(playlist: LivePlaylist) -> float:
    return BLOCK_TARGET_DURATIONS * playlist.target_duration
