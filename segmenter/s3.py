"""The pure half of the S3-compatible store: where objects go, in which order, when to retry.

Sans-IO: nothing here sends a request or reads a clock. The uploader (``gateway.s3store``) asks
:class:`UploadQueue` which operations may start, carries them out over HTTP and reports back;
the rules that keep the bucket consistent for whoever reads it (a CDN pulling segments, or the
bucket's own copy of the playlists) live here, where they are tested without a server:

- A playlist is uploaded only once every operation queued before it is done, so it never names
  a segment, init segment or playlist the bucket does not hold yet. Segments and init segments
  do not wait for each other: they go up ``max_in_flight`` at a time.
- A delete waits for the playlists queued before it (the ones that stopped listing the object),
  and for any earlier operation on the same name.
- A playlist rewritten while its previous version still waits replaces that version (only the
  newest text matters; it is queued after everything the newer one names).
- A delete of an object whose upload has not started cancels the upload (it expired while the
  store was down or slow): nothing is sent for it at all.
- A failed operation stays where it is and is retried after an exponential backoff with full
  jitter (:func:`backoff_delay`), unless a later operation on the same name made it moot.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from segmenter.store import Data, size_of

# Bucket names: 3-63 lower-case letters, digits, dots and hyphens, starting and ending with a
# letter or digit (the S3 naming rules; MinIO and others follow them).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# Key prefix components: what store names are made of (segmenter.store), so a prefix never
# needs escaping in a URL path and never looks like a parent directory.
_PREFIX_COMPONENT = re.compile(r"[A-Za-z0-9._-]+")

PLAYLIST = "playlist"
SEGMENT = "segment"
INIT = "init"


@dataclass(frozen=True, slots=True)
class S3Location:
    """``s3://bucket/prefix``: objects are stored under ``prefix/<store name>``."""

    bucket: str
    prefix: str  # without leading or trailing "/"; "" = the bucket's root

    def key(self, name: str) -> str:
        """The object key of a store name (``app/key/file``)."""
        return f"{self.prefix}/{name}" if self.prefix else name


def parse_s3_url(url: str) -> S3Location:
    """``s3://bucket`` or ``s3://bucket/some/prefix`` (a trailing ``/`` is fine); ValueError
    naming what is wrong otherwise."""
    parts = urlsplit(url)
    if parts.scheme != "s3":
        raise ValueError(f"must start with s3://, got {url!r}")
    if parts.query or parts.fragment or "@" in parts.netloc or ":" in parts.netloc:
        raise ValueError(f"s3://bucket/prefix without user, port, query or fragment, got {url!r}")
    bucket = parts.netloc
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ValueError(f"invalid bucket name {bucket!r} (3-63 of a-z 0-9 . -)")
    prefix = parts.path.strip("/")
    for component in prefix.split("/") if prefix else ():
        if component in (".", "..") or not _PREFIX_COMPONENT.fullmatch(component):
            raise ValueError(f"invalid key prefix {prefix!r} (components of A-Z a-z 0-9 . _ -)")
    return S3Location(bucket, prefix)


def kind_of(name: str) -> str:
    """PLAYLIST, SEGMENT (MPEG-TS or CMAF media) or INIT (fMP4 init segment) for a store name."""
    if name.endswith(".m3u8"):
        return PLAYLIST
    if name.endswith(".mp4"):
        return INIT
    return SEGMENT


def backoff_delay(attempt: int, base: float, cap: float, random: Callable[[], float]) -> float:
    """Seconds to wait before retry number ``attempt`` (1 = the first retry): "full jitter",
    uniform in [0, min(cap, base * 2**(attempt-1))), so clients that failed together (every
    stream when the store went down) do not retry in lockstep. ``random()`` is in [0, 1)."""
    if attempt < 1:
        return 0.0
    ceiling = min(cap, base * float(2 ** min(attempt - 1, 62)))
    return ceiling * random()


@dataclass(slots=True)
class Operation:
    """One queued PUT (``data`` set) or DELETE (``data`` None) of a store name."""

    serial: int  # queue order
    name: str
    data: Data | None
    kind: str
    size: int
    attempts: int = 0  # failed attempts so far
    not_before: float = 0.0  # retry time (the caller's clock)
    running: bool = False

    @property
    def is_delete(self) -> bool:
        return self.data is None


class UploadQueue:
    """The operations waiting for the bucket, in the order the segmenter made them (see the
    module's rules). Bytes of waiting and running puts are counted for back-pressure."""

    def __init__(self) -> None:
        self._ops: dict[int, Operation] = {}  # by serial; dicts keep insertion (queue) order
        self._serials = itertools.count()
        self._stored: set[str] = set()  # names the bucket holds (put done, not deleted since)
        self.pending_bytes = 0
        self.skipped = 0  # uploads cancelled by a delete (expired before they went up)
        self.superseded = 0  # playlist versions replaced by a newer one before they went up

    def __len__(self) -> int:
        return len(self._ops)

    def __iter__(self) -> itertools.chain[Operation]:
        return itertools.chain(self._ops.values())

    @property
    def running(self) -> int:
        return sum(1 for op in self._ops.values() if op.running)

    def stored(self, name: str) -> bool:
        """The bucket holds ``name`` (as far as this process knows)."""
        return name in self._stored

    def put(self, name: str, data: Data) -> Operation:
        kind = kind_of(name)
        waiting = self._waiting(name)
        if waiting is not None and not waiting.is_delete:
            # An older version nobody has sent yet: the new one replaces it, at the end of the
            # queue (after whatever the new version names).
            self._drop(waiting)
            if kind == PLAYLIST:
                self.superseded += 1
        return self._append(name, data, kind)

    def delete(self, name: str) -> Operation | None:
        """Queue the removal of ``name``; None when nothing needs sending (its upload had not
        started, or it never reached the bucket)."""
        waiting = self._waiting(name)
        if waiting is not None and not waiting.is_delete:
            self._drop(waiting)
            self.skipped += 1
        elif waiting is not None:
            return None  # a delete of it already waits
        if name not in self._stored and not self._busy(name):
            return None
        return self._append(name, None, kind_of(name))

    def ready(self, now: float, max_in_flight: int) -> list[Operation]:
        """Operations that may start now (marked running), oldest first."""
        slots = max_in_flight - self.running
        started: list[Operation] = []
        earlier_unfinished = False  # any operation before this one not done
        earlier_playlist = False  # a playlist before this one not done
        names_before: set[str] = set()
        for op in self._ops.values():
            if slots <= 0:
                break
            blocked = op.name in names_before or (
                (op.kind == PLAYLIST and earlier_unfinished) or (op.is_delete and earlier_playlist)
            )
            if not op.running and not blocked and op.not_before <= now:
                op.running = True
                started.append(op)
                slots -= 1
            earlier_unfinished = True
            earlier_playlist = earlier_playlist or op.kind == PLAYLIST
            names_before.add(op.name)
        return started

    def next_retry(self) -> float | None:
        """The earliest retry time among waiting operations that failed (None: none did)."""
        times = [op.not_before for op in self._ops.values() if op.attempts and not op.running]
        return min(times) if times else None

    def done(self, op: Operation) -> None:
        """``op`` succeeded."""
        if self._ops.pop(op.serial, None) is None:
            return
        op.running = False
        if op.is_delete:
            self._stored.discard(op.name)
        else:
            self._stored.add(op.name)
            self.pending_bytes -= op.size

    def failed(self, op: Operation, retry_at: float) -> None:
        """``op`` failed: retried at ``retry_at``, unless a later operation on its name (a newer
        version, or its delete) made it pointless."""
        op.running = False
        op.attempts += 1
        op.not_before = retry_at
        later = [o for o in self._ops.values() if o.name == op.name and o.serial > op.serial]
        if later and op.serial in self._ops:
            self._drop(op)

    def _append(self, name: str, data: Data | None, kind: str) -> Operation:
        size = size_of(data) if data is not None else 0
        op = Operation(next(self._serials), name, data, kind, size)
        self._ops[op.serial] = op
        self.pending_bytes += size
        return op

    def _drop(self, op: Operation) -> None:
        del self._ops[op.serial]
        if not op.is_delete:
            self.pending_bytes -= op.size

    def _waiting(self, name: str) -> Operation | None:
        """The last queued operation on ``name`` if it has not started, else None."""
        last = None
        for op in self._ops.values():
            if op.name == name:
                last = op
        return last if last is not None and not last.running else None

    def _busy(self, name: str) -> bool:
        return any(op.name == name for op in self._ops.values())
