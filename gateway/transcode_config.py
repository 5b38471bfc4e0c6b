"""Transcoding ladder configuration, pure: the ``transcode`` setting's rules and rungs.

Grammar of ``Settings.transcode``: entries ``SELECTOR=WxH@BITRATE[,WxH@BITRATE...]`` separated
by whitespace or commas (an item with ``=`` starts an entry, the items after it up to the next
such are its rungs). SELECTOR is an app (every key of it; ``app/*`` says the same) or
``app/key``, as for ``push``; a rung is a bounding box in pixels and a bitrate in bit/s with an
optional ``k`` or ``M`` suffix, e.g. ``live=1280x720@2500k,640x360@800k``. An ``app/key`` rule
wins over an ``app`` rule. Errors are ConfigError naming the entry, so
``gateway run`` fails at start (gateway.config calls :func:`parse_transcode`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.errors import ConfigError
from gateway.relay_config import ENTRY_SPLIT
from segmenter.names import valid_name

__all__ = ["Rung", "TranscodeRule", "parse_transcode", "rule_for"]

# Bounds of a rung: H.264 level 6.2 tops out at 8192x4320; below 32 px x264 has nothing to
# encode worth a rendition; bitrates are those of a sane ABR ladder.
MIN_SIDE = 32
MAX_SIDE = 8192
MIN_BITRATE = 50_000
MAX_BITRATE = 100_000_000
_RUNG = re.compile(r"(\d{1,5})x(\d{1,5})@(\d{1,9})([kKmM]?)")
_UNITS = {"": 1, "k": 1000, "m": 1_000_000}


@dataclass(frozen=True)
class Rung:
    """One extra rendition: encoded to fit in ``width`` x ``height`` (aspect kept) at
    ``bitrate`` bit/s."""

    width: int
    height: int
    bitrate: int

    def label(self) -> str:
        return f"{self.width}x{self.height}@{self.bitrate // 1000}k"


@dataclass(frozen=True)
class TranscodeRule:
    app: str
    key: str | None  # None: every key of the app
    rungs: tuple[Rung, ...]

    def matches(self, app: str, key: str) -> bool:
        return self.app == app and self.key in (None, key)


def parse_rung(text: str) -> Rung:
    match = _RUNG.fullmatch(text)
    if match is None:
        raise ValueError(f"rung {text!r} is not WxH@BITRATE, e.g. 640x360@800k")
    width, height = int(match[1]), int(match[2])
    bitrate = int(match[3]) * _UNITS[match[4].lower()]
    for side in (width, height):
        if not MIN_SIDE <= side <= MAX_SIDE:
            raise ValueError(f"rung {text!r}: sides must be {MIN_SIDE}..{MAX_SIDE} pixels")
    if not MIN_BITRATE <= bitrate <= MAX_BITRATE:
        raise ValueError(f"rung {text!r}: bitrate must be {MIN_BITRATE // 1000}k..100M")
    return Rung(width, height, bitrate)


def parse_transcode(text: str, *, max_rungs: int) -> list[TranscodeRule]:
    """Parse and validate ``Settings.transcode`` (grammar in the module docstring)."""
    rules: list[TranscodeRule] = []
    seen: set[tuple[str, str | None]] = set()
    for entry in _entries(text):
        where = f"transcode: entry {entry!r}"
        selector, sep, ladder = entry.partition("=")
        if not sep or not ladder:
            raise ConfigError(f"{where}: expected SELECTOR=WxH@BITRATE[,WxH@BITRATE...]")
        app, _, key = selector.partition("/")
        key = "" if key == "*" else key  # app/* = app
        if not valid_name(app) or (key and not valid_name(key)):
            raise ConfigError(f"{where}: selector must be APP, APP/* or APP/KEY (A-Z a-z 0-9 _ -)")
        if (app, key or None) in seen:
            raise ConfigError(f"{where}: {selector!r} has a ladder already")
        seen.add((app, key or None))
        try:
            rungs = tuple(parse_rung(r) for r in ladder.split(","))
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if len(rungs) > max_rungs:
            raise ConfigError(
                f"{where}: {len(rungs)} rungs, transcode_max_rungs allows {max_rungs}"
            )
        if len(set(rungs)) != len(rungs):
            raise ConfigError(f"{where}: a rung is listed twice")
        rules.append(TranscodeRule(app, key or None, rungs))
    return rules


def _entries(text: str) -> list[str]:
    """``a=1,2 b=3,c=4`` -> [``a=1,2``, ``b=3``, ``c=4``]: rungs join the entry before them."""
    entries: list[str] = []
    for item in ENTRY_SPLIT.split(text.strip()):
        if not item:
            continue
        if "=" in item or not entries:
            entries.append(item)
        else:
            entries[-1] += "," + item
    return entries


def rule_for(rules: list[TranscodeRule], app: str, key: str) -> TranscodeRule | None:
    """The rule for a stream: its own ``app/key`` rule, else its app's, else None."""
    exact = [r for r in rules if r.key is not None and r.matches(app, key)]
    if exact:
        return exact[0]
    return next((r for r in rules if r.matches(app, key)), None)
