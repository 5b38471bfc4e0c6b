"""Where segments and playlists live: a tiny interface with a memory and a disk implementation.

Names are relative paths of the form ``<app>/<key>/<file>``; only the segmenter writes, readers (the
HTTP side) only read. A writer replaces a playlist in one step, so a reader always sees a complete
segment and a consistent playlist.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
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


# A name is '/'-separated components of these characters only: nothing a shell, URL or
# filesystem treats specially, so a valid name can never reach outside the store's root.
_NAME_COMPONENT = re.compile(r"[A-Za-z0-9._-]+")
# Temp files carry '~', which no valid name contains, so they can never collide with or be
# listed as stored objects, and leftovers from a crash are recognisable.
_TEMP_MARK = ".tmp~"
_TEMP_NAME = re.compile(r".*\.tmp~[0-9a-f]{16}")
# Longest accepted name (a safe bound well below PATH_MAX on every platform we run on).
MAX_NAME_LENGTH = 1024
# Longest component: NAME_MAX is 255 bytes and the temp file adds 21 characters to it.
MAX_COMPONENT_LENGTH = 200


def validate_name(name: str) -> str:
    """Return ``name`` if it is a safe relative store name, else raise ValueError."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"invalid store name {name!r}")
    for part in name.split("/"):
        bad = part in (".", "..") or len(part) > MAX_COMPONENT_LENGTH
        if bad or not _NAME_COMPONENT.fullmatch(part):
            raise ValueError(f"invalid store name {name!r}")
    return name


class DiskStore:
    """Objects as files under ``root``; ``put`` is write-to-temp then ``os.replace`` (atomic).

    A reader opening a name sees either the previous complete file or the new complete file,
    never a partial one. ``fsync=True`` also makes a put durable across power loss (slower).
    """

    def __init__(self, root: Path, *, fsync: bool = False) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self._root = root.resolve()
        self._fsync = fsync
        self._remove_leftover_temps()

    @property
    def root(self) -> Path:
        return self._root

    def _path(self, name: str) -> Path:
        return self._root.joinpath(*validate_name(name).split("/"))

    def _inside_root(self, directory: Path) -> bool:
        # A symlinked directory planted under root must not lead us outside it.
        return directory.resolve().is_relative_to(self._root)

    def _make_parents(self, path: Path) -> None:
        # One level at a time, refusing symlinks, so mkdir never creates anything outside root.
        current = self._root
        for part in path.relative_to(self._root).parts[:-1]:
            current = current / part
            with contextlib.suppress(FileExistsError):
                os.mkdir(current)
            if current.is_symlink() or not current.is_dir():
                raise ValueError(f"store path {current} is not a plain directory")

    def put(self, name: str, data: bytes) -> None:
        path = self._path(name)
        self._make_parents(path)
        temp = path.with_name(f"{path.name}{_TEMP_MARK}{secrets.token_hex(8)}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                if self._fsync:
                    f.flush()
                    os.fsync(f.fileno())
            # rename(2) replaces the directory entry in one step (and never follows a symlink
            # at the destination), so readers see old or new bytes.
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise

    def get(self, name: str) -> bytes | None:
        path = self._path(name)
        try:
            if not self._inside_root(path.parent):
                return None
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # the name is a symlink: not one of ours
                return None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        with os.fdopen(fd, "rb") as f:
            return f.read()

    def delete(self, name: str) -> None:
        path = self._path(name)
        if not self._inside_root(path.parent):
            return
        with contextlib.suppress(FileNotFoundError, NotADirectoryError, IsADirectoryError):
            os.unlink(path)

    def names(self, prefix: str = "") -> list[str]:
        return sorted(n for n, _ in self._walk() if n.startswith(prefix))

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self._walk())

    def _walk(self) -> Iterator[tuple[str, int]]:
        """(name, size) of every stored regular file; temps and symlinks are skipped."""
        stack = [(self._root, "")]
        while stack:
            directory, rel = stack.pop()
            try:
                entries = list(os.scandir(directory))
            except (FileNotFoundError, NotADirectoryError):
                continue  # removed while we walked
            for entry in entries:
                name = f"{rel}{entry.name}"
                if entry.is_dir(follow_symlinks=False):
                    stack.append((Path(entry.path), f"{name}/"))
                elif entry.is_file(follow_symlinks=False) and _is_valid_name(name):
                    with contextlib.suppress(FileNotFoundError):
                        yield name, entry.stat(follow_symlinks=False).st_size

    def _remove_leftover_temps(self) -> None:
        """Delete temp files a crashed writer left behind (ours by their ``.tmp~`` mark)."""
        for dirpath, _dirnames, filenames in os.walk(self._root):
            for filename in filenames:
                if _TEMP_NAME.fullmatch(filename):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(dirpath, filename))


def _is_valid_name(name: str) -> bool:
    try:
        validate_name(name)
    except ValueError:
        return False
    return True
