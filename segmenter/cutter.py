"""Pure timing logic of the segmenter: session timelines, A/V interleaving and cut decisions.

No I/O and no clock: every timestamp is a millisecond int from the publisher's FLV clock.

Long-GOP policy (decided here, applied by live.py)
-------------------------------------------------
RFC 8216 §4.3.3.1 / §6.2.1: EXT-X-TARGETDURATION never changes during a stream and every EXTINF
rounded to the nearest integer is <= it; a segment must start with an IDR to be decodable alone
(EXT-X-INDEPENDENT-SEGMENTS). The keyframe interval is the publisher's choice and is only known
after the fact, and x264's scene-cut IDRs make GOPs irregular (with keyint 2 s and target 2 s a
segment can last almost 4 s). A target duration derived from the first GOP would therefore be
broken by a later, longer one. So:

1. TARGETDURATION is fixed once per playlist, when its first segment closes, from what the
   publisher has shown by then: the longest keyframe gap rounded to the nearest second (EXTINF
   rounds the same way), at least ``ceil(target_duration)`` and at most
   ``ceil(max_segment_duration)``. A steady 2 s keyframe interval gives TARGETDURATION 2, so
   players holding back three target durations stay ~6 s behind (not the ~12 s a TARGETDURATION of
   4 would cost). Until then, and for an encoder that sends no keyframe within
   ``max_segment_duration`` (OBS "auto" is 250 frames: 8.3 s at 30 fps), the ceiling
   ``ceil(max_segment_duration)`` (default 10) applies.
2. The cutter cuts at the first video keyframe at or after ``target_duration`` (default 2 s):
   segments are as short as the keyframes allow. It also cuts EARLY at a keyframe when waiting
   for the next one (expected one longest keyframe gap later) would make the segment round above
   TARGETDURATION: x264's scene-cut IDRs restart its keyframe interval, so after a scene cut at
   1.5 s of a 2 s interval the next keyframe comes at 3.5 s. Cutting at the scene cut keeps
   every segment within the target duration without dropping anything. Audio-only streams cut
   on any frame once the target is reached; video-only streams cut like A/V.
3. A GOP so long that the segment would round above TARGETDURATION is force-cut without a keyframe
   at ``limit`` (TARGETDURATION + 0.5 s minus ``FORCED_CUT_HEADROOM_MS``); video frames are then
   dropped until the next keyframe, so the new segment (audio first) still starts its video with
   an IDR. Never cutting a GOP would break the TARGETDURATION rule; cutting it at a non-IDR would
   make segments undecodable for players joining there. The dropped video is the visible price,
   paid only by a misconfigured encoder, and live.py reports it as a warning (stats and a log
   line) naming the measured keyframe interval as the cause.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from segmenter.records import record

Kind = Literal["video", "audio"]
VIDEO: Final = "video"
AUDIO: Final = "audio"

# A forced cut happens this long before a segment would round above TARGETDURATION, so the sample
# that triggers it (up to ~200 ms after the limit at 5 fps) still lands below the rounding point.
FORCED_CUT_HEADROOM_MS = 200
# A sample more than this ahead of the newest timestamp of any track is a publisher clock jump
# (or an unhandled 32-bit wrap): the timeline is rebased to stay continuous instead. Relative to
# all tracks, so one track resuming after a long gap (the others went on) is not a jump.
MAX_TIMESTAMP_JUMP_MS = 10_000
# A track's timestamp going back more than this is a clock reset (an encoder restarted its clock,
# concatenated inputs), also rebased: refusing the samples as late would drop everything until
# the clock caught up again, up to MAX_TIMESTAMP_JUMP_MS of frozen picture and silence. Within a
# track a DTS never goes back by more than jitter; smaller steps back are late samples.
MAX_TIMESTAMP_BACKSTEP_MS = 1_000
# After a rebase, samples of the tracks that have not jumped yet still carry the old clock (RTMP
# interleaves audio and video only roughly): for this long on the output timeline a sample that
# fits its track under the previous offset is mapped with it, instead of being taken as a jump.
STRAGGLER_MS = 1_000
# Frame steps above this are gaps, not a track's cadence, and are not used to predict its next DTS.
MAX_PREDICTED_STEP_MS = 250
# Each publish session starts this far after the previous session's end on the output timeline,
# so timestamps never decrease across reconnects and early audio never maps below zero.
SESSION_GAP_MS = 1_000


@record
class Sample:
    """One access unit on the output timeline (ms); ``data`` is raw AVCC H.264 or raw AAC."""

    kind: Kind
    dts: int
    pts: int
    keyframe: bool
    data: bytes


class Timeline:
    """Maps one publish session's FLV timestamps onto the continuous output timeline.

    Rebases the first timestamp to ``start``, keeps each track's DTS strictly increasing (late
    samples are refused), rebases over clock jumps (forward past every track, or back within a
    track), and delays every PTS by ``cts_shift`` when the publisher sends negative composition
    times so that PTS >= DTS holds (ISO/IEC 13818-1 §2.7.5). One offset serves all tracks, so a
    rebase keeps them in sync; stragglers of the old clock keep the previous offset.
    """

    def __init__(
        self,
        start: int,
        max_jump_ms: int = MAX_TIMESTAMP_JUMP_MS,
        max_backstep_ms: int = MAX_TIMESTAMP_BACKSTEP_MS,
        on_jump: Callable[[Kind, int], None] | None = None,
    ) -> None:
        self._start = start
        self._on_jump = on_jump  # (track, jump in ms): told of each rebase
        self._max_jump = max_jump_ms
        self._max_back = max_backstep_ms
        self._offset: int | None = None
        # The offset before the last rebase and the output DTS until which it may still serve.
        self._previous: tuple[int, int] | None = None
        self._last: dict[str, int] = {}
        self._step: dict[str, int] = {}
        self._newest = start  # the highest DTS of any track
        self.cts_shift = 0
        self.jumps = 0
        self.late = 0
        self.end = start  # the highest output PTS seen (for the next session's start)

    def anchor(self, timestamp: int) -> None:
        """Fix the offset at ``timestamp`` unless a sample already did (the renditions of a
        multitrack publish share it: the same FLV time is the same output time in each)."""
        if self._offset is None:
            self._offset = self._start - timestamp

    def follow(self, other: Timeline) -> None:
        """Map as ``other`` does: its start and offset (a rendition of the same publish)."""
        self._start, self._offset, self._newest = other._start, other._offset, other._newest
        self.end = max(self.end, other._start)

    def map(self, kind: Kind, timestamp: int, cts: int = 0) -> tuple[int, int] | None:
        """Return (dts, pts) on the output timeline, or None for a late (non-increasing) sample."""
        if self._offset is None:
            self._offset = self._start - timestamp
        dts = timestamp + self._offset
        last = self._last.get(kind)
        if last is not None and (
            self._previous is not None or not last < dts <= self._newest + self._max_jump
        ):
            dts = self._off_clock(kind, timestamp, dts, last)
        if dts < 0 or (last is not None and dts <= last):
            self.late += 1
            return None
        if last is not None:
            self._step[kind] = dts - last
        self._last[kind] = dts
        if dts > self._newest:
            self._newest = dts
        if cts + self.cts_shift < 0:
            self.cts_shift = -cts
        if kind == AUDIO:
            dts += self.cts_shift  # audio PTS == DTS: shift both to stay in sync with video
            pts = dts
        else:
            pts = dts + cts + self.cts_shift
        self.end = max(self.end, pts + self._step.get(kind, 0))
        return dts, pts

    def _off_clock(self, kind: Kind, timestamp: int, dts: int, last: int) -> int:
        """The DTS of a sample that does not plainly follow its track under the current offset,
        or comes soon after a rebase: mapped with the previous offset (a straggler of the old
        clock: the nearer fit), as is (it follows, or is late: refused by the caller), or
        rebased (a clock jump)."""
        assert self._offset is not None
        ceiling = self._newest + self._max_jump
        previous = self._previous
        if previous is not None:
            if self._newest > previous[1]:
                self._previous = None
            else:
                old = timestamp + previous[0]
                if last < old <= ceiling and (old < dts or dts <= last):
                    return old
        if last - self._max_back <= dts <= ceiling:
            return dts
        step = self._step.get(kind, 1)
        rebased = last + step
        self._previous = (self._offset, rebased + STRAGGLER_MS)
        self._offset += rebased - dts
        self.jumps += 1
        if self._on_jump is not None:
            self._on_jump(kind, dts - last)
        return rebased


class Interleaver:
    """A small reorder buffer releasing samples of several tracks in DTS order.

    RTMP carries audio and video on separate chunk streams: they arrive only roughly in DTS order.
    A sample is released once nothing earlier can come: every expected track has a sample waiting,
    or a track's next sample is predicted to come later (its last DTS plus its shortest frame step
    seen, e.g. ~23 ms for AAC at 44.1 kHz: publishers that interleave in DTS order then get every
    sample, a segment-closing keyframe included, out at once instead of one audio frame later). It
    is also released when the buffer spans more than ``max_delay_ms`` or holds ``max_samples`` (a
    stalled track). A sample that beats its prediction only lands a few ms out of order.
    """

    def __init__(self, tracks: set[str], max_delay_ms: int = 500, max_samples: int = 256) -> None:
        self.tracks = set(tracks)
        self._max_delay = max_delay_ms
        self._max_samples = max_samples
        self._heap: list[tuple[int, int, Sample]] = []
        self._pending: dict[str, int] = dict.fromkeys(self.tracks, 0)
        self._last: dict[str, int] = {}  # DTS of the newest sample per track
        self._step: dict[str, int] = {}  # shortest frame step seen per track (prediction)
        self._newest = 0
        self._seq = itertools.count()

    def push(self, sample: Sample) -> list[Sample]:
        kind, dts = sample.kind, sample.dts
        heap = self._heap
        heapq.heappush(heap, (dts, next(self._seq), sample))
        self._pending[kind] = self._pending.get(kind, 0) + 1
        last = self._last.get(kind)
        if last is not None and 0 < dts - last <= MAX_PREDICTED_STEP_MS:
            self._step[kind] = min(dts - last, self._step.get(kind, MAX_PREDICTED_STEP_MS))
        if last is None or dts > last:
            self._last[kind] = dts
        if dts > self._newest:
            self._newest = dts
        out: list[Sample] = []
        while heap:
            first = heap[0][0]
            if not (
                self._covered(first)
                or self._newest - first > self._max_delay
                or len(heap) > self._max_samples
            ):
                break
            out.append(self._pop())
        return out

    def _covered(self, dts: int) -> bool:
        """Whether no track can still deliver a sample before ``dts`` (waiting or predicted)."""
        for track in self.tracks:
            if not self._pending[track]:
                step = self._step.get(track)
                if step is None or self._last[track] + step < dts:
                    return False
        return True

    def flush(self) -> list[Sample]:
        return [self._pop() for _ in range(len(self._heap))]

    def _pop(self) -> Sample:
        sample = heapq.heappop(self._heap)[2]
        self._pending[sample.kind] -= 1
        return sample

    def __len__(self) -> int:
        return len(self._heap)


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one sample: ``cut`` closes the open segment before it; ``keep`` writes it."""

    keep: bool
    cut: bool = False
    forced: bool = False
    # When cut: the closed segment's (start, end) on the output timeline in ms.
    closed: tuple[int, int] | None = None


# The decisions without a cut, shared: one per sample would be an allocation per tag.
_KEEP = Decision(keep=True)
_DROP = Decision(keep=False)


class Cutter:
    """Cut decisions for one track configuration (see the module docstring for the policy)."""

    def __init__(
        self, target_ms: int, target_duration_s: int, has_video: bool, fixed: bool = False
    ) -> None:
        self.target_ms = target_ms
        self.limit_ms = target_duration_s * 1000 + 500 - FORCED_CUT_HEADROOM_MS
        # The playlist's TARGETDURATION once fixed (rule 1); until then a provisional one is
        # derived from the keyframe gaps seen (rule 2).
        self._fixed_td = target_duration_s if fixed else None
        self._min_td = max(1, -(-target_ms // 1000))
        self._last_key: int | None = None
        self.max_key_gap = 0  # longest keyframe gap seen (PTS, ms)
        self.has_video = has_video
        self.start: int | None = None  # start of the open segment (PTS of its first sample)
        self._end = 0  # end of the open segment so far (last PTS + that track's frame step)
        self._last_dts: dict[str, int] = {}
        self._step: dict[str, int] = {}
        self._need_key = has_video  # drop video until a keyframe (session start, forced cut)
        self._kept = 0  # samples kept in the open segment

    def decide(self, sample: Sample) -> Decision:
        key = sample.kind == VIDEO and sample.keyframe
        if self._need_key and sample.kind == VIDEO and not key:
            return _DROP
        if self.start is None:
            if self.has_video and not key:
                return _DROP  # the first segment starts with an IDR
            self._open(sample.pts, sample)
            return _KEEP
        elapsed = sample.pts - self.start
        if key:
            last, self._last_key = self._last_key, sample.pts
            if last is not None and sample.pts > last:
                self.max_key_gap = max(self.max_key_gap, sample.pts - last)
        if self._kept == 0:
            # Empty since a forced cut dropped video: never cut an empty segment; if no media came
            # for longer than the limit (video-only), start it at this sample instead.
            if max(elapsed, sample.dts - self.start) >= self.limit_ms:
                self.start = self._end = sample.pts
            self._need_key = self._need_key and not key
            self._track(sample)
            return _KEEP
        if elapsed >= self.target_ms and (key or not self.has_video):
            rounds_above = self.limit_ms + FORCED_CUT_HEADROOM_MS  # ceiling + 0.5 s
            if key and elapsed >= rounds_above > sample.dts - self.start:
                # A keyframe shown later than decoded (B-frames) would end the segment past the
                # limit: end it at the keyframe's DTS, which no earlier sample let us cut at.
                return self._cut(sample.dts, sample, forced=False)
            return self._cut(sample.pts, sample, forced=False)
        if key and elapsed > 0 and self._overflows(elapsed + self.max_key_gap):
            return self._cut(sample.pts, sample, forced=False)  # rule 2: early cut
        if max(elapsed, sample.dts - self.start) >= self.limit_ms:
            # Forced cut (module docstring, rule 3) at the DTS: B-frame PTS jump ahead.
            self._need_key = self.has_video
            self._last_dts.pop(VIDEO, None)  # the frame step must not span the dropped frames
            if sample.kind == VIDEO:
                closed = (self.start, sample.dts)
                self.start = self._end = sample.dts
                self._kept = 0
                return Decision(keep=False, cut=True, forced=True, closed=closed)
            return self._cut(sample.dts, sample, forced=True)
        if key:
            self._need_key = False
        self._track(sample)
        return _KEEP

    def set_target_duration(self, target_duration_s: int) -> None:
        """The playlist fixed its TARGETDURATION (rule 1): force-cut below it from now on."""
        self.limit_ms = target_duration_s * 1000 + 500 - FORCED_CUT_HEADROOM_MS
        self._fixed_td = target_duration_s

    def _overflows(self, duration_ms: int) -> bool:
        """Whether a segment of ``duration_ms`` would round above TARGETDURATION (RFC 8216
        §4.3.3.1), the fixed one or, before the playlist exists, the one rule 1 would fix."""
        td = self._fixed_td
        if td is None:
            td = max(self._min_td, (self.max_key_gap + 500) // 1000)
        return (duration_ms + 500) // 1000 > td

    def _open(self, start: int, sample: Sample) -> None:
        self.start = self._end = start
        self._kept = 0
        if sample.kind == VIDEO and sample.keyframe:
            self._need_key = False
        self._track(sample)

    def _cut(self, boundary: int, sample: Sample, forced: bool) -> Decision:
        assert self.start is not None
        closed = (self.start, boundary)
        self._open(boundary, sample)
        return Decision(keep=True, cut=True, forced=forced, closed=closed)

    def _track(self, sample: Sample) -> None:
        self._kept += 1
        last = self._last_dts.get(sample.kind)
        if last is not None and sample.dts > last:
            self._step[sample.kind] = sample.dts - last
        self._last_dts[sample.kind] = sample.dts
        self._end = max(self._end, sample.pts + self._step.get(sample.kind, 0))

    def finish(self) -> tuple[int, int] | None:
        """Close the open segment at the end of the media; returns its (start, end) or None."""
        if self.start is None or self._kept == 0:
            self.start = None
            self._need_key = self.has_video
            return None
        closed = (self.start, max(self._end, self.start + 1))
        self.start = None
        self._need_key = self.has_video
        self._last_dts.clear()
        return closed
