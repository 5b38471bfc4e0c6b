"""Where segments and playlists live: a tiny interface with a memory and a disk implementation.

Names are relative paths of the form ``<app>/<key>/<file>``; only the segmenter writes, readers (the
HTTP side) only read. A writer replaces a playlist in one step, so a reader always sees a complete
segment and a consistent playlist.
"""

from __future__ import annotations

from typing import Protocol


class Store(Protocol):
    """Storage for HLS objects; every method is synchronous and must not block for long."""

    def put(self, name: str, data: bytes) -> None:
        """Store ``data`` under ``name`` atomically (readers see the old or the new bytes)."""

    def get(self, name: str) -> bytes | None:
        """Return the bytes stored under ``name``, or None."""

    def delete(self, name: str) -> None:
        """Remove ``name``; removing a missing name is not an error."""

    def names(self, prefix: str = "") -> list[str]:
        """Names currently stored that start with ``prefix``."""


class MemoryStore:
    """The embedded default: a dict of immutable bytes."""

    def __init__(self) -> None:
        self._objects: dict[str, bytes] = {}

    def put(self, name: str, data: bytes) -> None:
        self._objects[name] = bytes(data)

    def get(self, name: str) -> bytes | None:
        return self._objects.get(name)

    def delete(self, name: str) -> None:
        self._objects.pop(name, None)

    def names(self, prefix: str = "") -> list[str]:
        return [n for n in self._objects if n.startswith(prefix)]

    @property
    def total_bytes(self) -> int:
        return sum(len(v) for v in self._objects.values())
