"""The only names the HTTP side will look up in the store.

Every path component a request can reach the store with must match one of these patterns, checked
twice: by the URL converters (so a bad path never matches a route) and again before the store
lookup (so a future route cannot forget). No pattern admits '/', '\\', NUL, '%', or a leading dot,
hence no request can name anything outside ``<app>/<key>/``.
"""

from __future__ import annotations

import re

from werkzeug.routing import BaseConverter

from segmenter.names import MAX_NAME_LENGTH, NAME_PATTERN

# app and stream key: what the gateway accepts at publish (segmenter.names).
COMPONENT_PATTERN = NAME_PATTERN
# A file: starts with a letter/digit/underscore (no ".", so never "." or ".."), dots allowed inside.
_FILE_STEM = rf"[A-Za-z0-9_][A-Za-z0-9_.-]{{0,{MAX_NAME_LENGTH - 6}}}"
PLAYLIST_PATTERN = _FILE_STEM + r"\.m3u8"
SEGMENT_PATTERN = _FILE_STEM + r"\.(?:ts|m4s|mp4)"

# MIME types, RFC 8216 §4 and the Apple HLS authoring spec (fMP4 parts for later LL-HLS use).
PLAYLIST_MIME = "application/vnd.apple.mpegurl"
SEGMENT_MIME = {
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
}

_COMPONENT_RE = re.compile(COMPONENT_PATTERN)
_PLAYLIST_RE = re.compile(PLAYLIST_PATTERN)
_SEGMENT_RE = re.compile(SEGMENT_PATTERN)


def is_component(name: str) -> bool:
    return _COMPONENT_RE.fullmatch(name) is not None


def is_playlist(name: str) -> bool:
    return _PLAYLIST_RE.fullmatch(name) is not None


def is_segment(name: str) -> bool:
    return _SEGMENT_RE.fullmatch(name) is not None


def segment_mime(name: str) -> str:
    return SEGMENT_MIME[name[name.rindex(".") :]]


def store_name(app: str, key: str, file: str) -> str | None:
    """The store name for a request, or None when any component is not one we produce."""
    if not (is_component(app) and is_component(key)):
        return None
    if not (is_playlist(file) or is_segment(file)):
        return None
    return f"{app}/{key}/{file}"


class ComponentConverter(BaseConverter):
    regex = COMPONENT_PATTERN


class PlaylistConverter(BaseConverter):
    regex = PLAYLIST_PATTERN


class SegmentConverter(BaseConverter):
    regex = SEGMENT_PATTERN


CONVERTERS: dict[str, type[BaseConverter]] = {
    "name": ComponentConverter,
    "playlist": PlaylistConverter,
    "segment": SegmentConverter,
}


# App names that collide with the gateway's own URL space; the RTMP side should refuse to publish
# under them (a stream "static/x" would be served, but "api/streams" could never be).
RESERVED_APP_NAMES = frozenset({"api", "static", "metrics", "healthz"})
