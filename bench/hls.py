"""Watching live playlists: when each segment appeared, which are late or missing, and whether
what a player would fetch is valid HLS (RFC 8216)."""

from __future__ import annotations

import io
import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import httpx
import m3u8

# A segment is late if it appears more than this many seconds after target duration past the
# previous one (issue 6).
LATE_SLACK = 1.0
# Segments per sampled stream downloaded and opened by the validity check.
VALIDATE_SEGMENTS = 2
# Seconds an HTTP request of the bench may take.
HTTP_TIMEOUT = 10.0


@dataclass
class Seen:
    seq: int
    uri: str
    duration: float
    at: float  # monotonic time the bench first saw it listed
    discontinuity: bool


@dataclass
class PlaylistTracker:
    """Feeds on successive playlist texts of one stream; remembers every segment once."""

    target_duration: float
    first_at: float | None = None  # first time a playlist with a segment was seen
    segments: dict[int, Seen] = field(default_factory=dict)
    ended: bool = False
    parse_errors: int = 0
    _last_text: str = ""

    def update(self, text: str, now: float) -> list[Seen]:
        """Record segments new in ``text``; return them (oldest first)."""
        if text == self._last_text:
            return []
        self._last_text = text
        try:
            pl = m3u8.loads(text)
        except Exception:  # a torn or malformed playlist is a finding, not a crash
            self.parse_errors += 1
            return []
        new = []
        seq0 = pl.media_sequence or 0
        for i, seg in enumerate(pl.segments):
            seq = seq0 + i
            if seg.uri is None:  # LL-HLS: the parts of the segment being made, not a segment
                continue
            if seq not in self.segments:
                s = Seen(seq, seg.uri, float(seg.duration), now, bool(seg.discontinuity))
                self.segments[seq] = s
                new.append(s)
        if pl.segments and self.first_at is None:
            self.first_at = now
        self.ended = bool(pl.is_endlist)
        return new

    def summary(self, start: float, end: float) -> dict[str, Any]:
        """Figures for segments that appeared in [start, end]."""
        seqs = sorted(self.segments)
        inside = [self.segments[s] for s in seqs if start <= self.segments[s].at <= end]
        late = 0
        gaps = []
        for prev, cur in itertools.pairwise(seqs):
            c = self.segments[cur]
            if not start <= c.at <= end:
                continue
            gap = c.at - self.segments[prev].at
            gaps.append(gap)
            if gap > self.target_duration + LATE_SLACK:
                late += 1
        missing = 0
        if seqs:
            lo = min((s.seq for s in inside), default=seqs[0])
            hi = max((s.seq for s in inside), default=seqs[-1])
            missing = sum(1 for q in range(lo, hi + 1) if q not in self.segments)
        return {
            "segments": len(inside),
            "late": late,
            "missing": missing,
            "discontinuities": sum(1 for s in inside if s.discontinuity),
            "parse_errors": self.parse_errors,
            "max_interval_s": round(max(gaps), 3) if gaps else None,
            "mean_duration_s": (
                round(sum(s.duration for s in inside) / len(inside), 3) if inside else None
            ),
        }


@dataclass
class FileWatcher:
    """Reads a playlist file only when its stat changed (cheap enough to poll 100 streams)."""

    path: Path
    _sig: tuple[int, int] | None = None

    def read_if_changed(self) -> str | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        sig = (st.st_mtime_ns, st.st_size)
        if sig == self._sig:
            return None
        try:
            text = self.path.read_text()
        except OSError:
            return None
        self._sig = sig
        return text


def probe_segment(data: bytes, fmt: str = "mpegts") -> dict[str, Any]:
    """Open a segment with PyAV (FFmpeg's demuxers), count its streams and packets. An fMP4
    segment (``fmt="mp4"``) must come with its init segment in front."""
    with av.open(io.BytesIO(data), mode="r", format=fmt) as container:
        kinds = sorted(s.type for s in container.streams)
        packets = len([p for p in container.demux() if p.size])
    return {"streams": kinds, "packets": packets}


async def validate(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    """Fetch the playlist at ``url``, parse it, download and open its newest segments."""
    result: dict[str, Any] = {"url": url, "ok": False}
    try:
        r = await client.get(url, timeout=HTTP_TIMEOUT)
        result["status"] = r.status_code
        if r.status_code != 200:
            return result
        pl = m3u8.loads(r.text, uri=url)
        result["segments_listed"] = len(pl.segments)
        result["target_duration"] = pl.target_duration
        probes = []
        inits: dict[str, bytes] = {}
        for seg in [s for s in pl.segments if s.uri is not None][-VALIDATE_SEGMENTS:]:
            sr = await client.get(seg.absolute_uri, timeout=HTTP_TIMEOUT)
            if sr.status_code != 200:
                probes.append({"uri": seg.uri, "status": sr.status_code})
                continue
            data, fmt = sr.content, "mpegts"
            if seg.init_section is not None:  # fMP4 (CMAF): init segment + media segment
                init_uri = seg.init_section.absolute_uri
                if init_uri not in inits:
                    ir = await client.get(init_uri, timeout=HTTP_TIMEOUT)
                    inits[init_uri] = ir.content if ir.status_code == 200 else b""
                data, fmt = inits[init_uri] + data, "mp4"
            probes.append({"uri": seg.uri, "bytes": len(sr.content), **probe_segment(data, fmt)})
        result["probes"] = probes
        result["ok"] = bool(probes) and all(p.get("packets", 0) > 0 for p in probes)
    except Exception as exc:  # the check reports failures, it does not stop the bench
        result["error"] = f"{type(exc).__name__}: {exc}"
    return result
