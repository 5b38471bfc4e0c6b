"""One rung of the transcoding ladder: a publisher's track-0 video in, one more H.264 track out.

Synchronous and single-threaded (gateway.transcode runs one per worker thread): FLV video tags of
track 0 (legacy AVC, Enhanced RTMP avc1 or hvc1) are decoded with PyAV (FFmpeg), scaled to fit the
rung's box and encoded with libx264. What comes out are the tags a multitrack publisher (OBS
Enhanced Broadcasting) would send for track ``track_id``: Enhanced RTMP v2 Multitrack OneTrack
bodies around an ``avc1`` SequenceStart (avcC) or CodedFrames, so the segmenter cannot tell the
track was made here (docs/protocol.md, Enhanced RTMP v2 Multitrack).

Alignment: a source keyframe forces an IDR on the same picture, and the output's timestamps are
the source's: the i-th output picture (presentation order) gets the i-th source DTS and its own
PTS. For a source with closed GOPs, an IDR's decode and presentation indexes are equal, so its
DTS and PTS are exactly the source keyframe's, and segments and parts cut at the same instants
in every rendition. x264 runs without B-frames and without lookahead (``tune=zerolatency``), so
each picture comes out as soon as it goes in. Not compiled by mypyc (PyAV objects throughout).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import av.codec.context
from av.video.frame import PictureType

from segmenter.codecs import MediaError
from segmenter.flv import (
    AVC,
    HEVC,
    FlvTag,
    SequenceHeader,
    TagType,
    Track,
    VideoFrame,
    join_tracks,
    parse_video,
    split_multitrack,
)

__all__ = [
    "RungSpec",
    "RungTranscoder",
    "annexb_to_avcc_record",
    "annexb_to_lengths",
    "fit",
    "sequence_end_tag",
]

_DECODERS = {AVC: "h264", HEVC: "hevc"}  # source FourCC -> FFmpeg decoder
_MS = Fraction(1, 1000)  # FLV timestamps are milliseconds
DEFAULT_FPS = 30  # x264's rate control needs a frame rate; used when the SPS has no timing info
# Enhanced RTMP ExVideoTagHeader: IsExHeader bit, FrameType (1 key, 2 inter), PacketType.
_EX_HEADER = 0x80
_KEY, _INTER = 1, 2
_SEQUENCE_START, _CODED_FRAMES, _SEQUENCE_END = 0, 1, 2
_HIGH_PROFILES = frozenset({100, 110, 122, 144})  # profile_idc whose avcC has the extension


@dataclass(frozen=True)
class RungSpec:
    track_id: int  # the Multitrack trackId of the output (1..n; 0 is the publisher's)
    width: int  # the box the picture is scaled to fit in
    height: int
    bitrate: int  # bit/s
    preset: str = "veryfast"


def fit(src_width: int, src_height: int, box_width: int, box_height: int) -> tuple[int, int]:
    """The largest even size within the box with the source's aspect; never above the source
    (upscaling only spends bits)."""
    scale = min(box_width / src_width, box_height / src_height, 1.0)
    width = max(2, int(src_width * scale + 0.5) & ~1)
    height = max(2, int(src_height * scale + 0.5) & ~1)
    return width, height


def _annexb_nals(data: bytes) -> list[bytes]:
    """NAL units of an Annex-B byte stream (start codes 00 00 01 / 00 00 00 01)."""
    nals: list[bytes] = []
    starts: list[int] = []
    i, n = 0, len(data)
    while i + 3 <= n:
        if data[i] == 0 and data[i + 1] == 0 and data[i + 2] == 1:
            starts.append(i + 3)
            i += 3
        else:
            i += 1
    for k, start in enumerate(starts):
        end = starts[k + 1] - 3 if k + 1 < len(starts) else n
        nal = data[start:end]
        while nal.endswith(b"\x00"):  # trailing zero bytes belong to the next start code
            nal = nal[:-1]
        if nal:
            nals.append(nal)
    return nals


def annexb_to_lengths(data: bytes) -> bytes:
    """Annex-B access unit -> 4-byte length-prefixed NAL units (ISO/IEC 14496-15 §5.3.2, the
    format FLV carries); data already length-prefixed is returned as is."""
    if not (data.startswith(b"\x00\x00\x01") or data.startswith(b"\x00\x00\x00\x01")):
        return data
    return b"".join(len(nal).to_bytes(4, "big") + nal for nal in _annexb_nals(data))


def annexb_to_avcc_record(extradata: bytes) -> bytes:
    """x264's global header (Annex-B SPS + PPS) -> AVCDecoderConfigurationRecord (ISO/IEC
    14496-15 §5.3.3.1); a record already in avcC form is returned as is."""
    if extradata[:1] == b"\x01":
        return extradata
    nals = _annexb_nals(extradata)
    sps = [n for n in nals if n[0] & 0x1F == 7]
    pps = [n for n in nals if n[0] & 0x1F == 8]
    if not sps or not pps or len(sps[0]) < 4:
        raise MediaError("encoder extradata has no SPS/PPS")
    out = bytearray((1, sps[0][1], sps[0][2], sps[0][3], 0xFF, 0xE0 | len(sps)))
    for nal in sps:
        out += len(nal).to_bytes(2, "big") + nal
    out.append(len(pps))
    for nal in pps:
        out += len(nal).to_bytes(2, "big") + nal
    if sps[0][1] in _HIGH_PROFILES:
        # §5.3.3.1.2: High profiles add chroma_format and bit depths; the rungs are always
        # encoded as 8-bit 4:2:0 (chroma_format_idc 1), no SPS extensions.
        out += bytes((0xFC | 1, 0xF8 | 0, 0xF8 | 0, 0))
    return bytes(out)


def _track_tag(
    track_id: int, timestamp: int, frame_type: int, packet_type: int, data: bytes
) -> FlvTag:
    body = bytes((_EX_HEADER | frame_type << 4 | packet_type,)) + AVC.encode("latin-1") + data
    return FlvTag(
        TagType.VIDEO, timestamp, join_tracks(TagType.VIDEO, [Track(track_id, AVC, body)])
    )


def sequence_end_tag(track_id: int, timestamp: int) -> FlvTag:
    """The Multitrack OneTrack avc1 SequenceEnd that says track ``track_id`` ends."""
    return _track_tag(track_id, timestamp, _KEY, _SEQUENCE_END, b"")


class RungTranscoder:
    """Feed it track-0 video tags in order; it returns the rung's tags (maybe none yet)."""

    def __init__(self, spec: RungSpec) -> None:
        self.spec = spec
        self._decoder: Any = None
        self._source: tuple[str, bytes] | None = None  # (FourCC, sequence header) decoding
        self._encoder: Any = None
        self._size: tuple[int, int] | None = None  # source picture size the encoder was made for
        self._sent_config: bytes | None = None  # the avcC last sent
        self._started = False  # a source keyframe was seen since the decoder was made
        self._dts: deque[int] = deque()  # source DTS of frames fed, not yet decoded
        self._key_pts: set[int] = set()  # source PTS of keyframes fed, not yet decoded
        self._pending: dict[int, int] = {}  # output PTS -> DTS, frames in the encoder
        self.frames_in = 0
        self.frames_out = 0
        self.output_size: tuple[int, int] | None = None

    # --- input ---------------------------------------------------------------------------------
    def feed(self, tag: FlvTag) -> list[FlvTag]:
        """One video tag of the publisher's track 0; other tags are ignored. Raises MediaError
        for a sequence header of a codec this rung cannot decode (AV1, VP9)."""
        if tag.type is not TagType.VIDEO:
            return []
        try:
            if split_multitrack(tag.type, tag.body) is not None:
                return []
            packet = parse_video(tag.body)
        except MediaError:
            return []  # a malformed tag: the segmenter counts it, the rung skips it
        if isinstance(packet, SequenceHeader):
            if packet.codec not in _DECODERS:
                raise MediaError(f"cannot transcode {packet.codec} video")
            if self._source != (packet.codec, packet.config):
                out = self._drain_decoder()
                self._open_decoder(packet.codec, packet.config)
                return out
            return []
        if not isinstance(packet, VideoFrame) or self._decoder is None:
            return []
        if not self._started:
            if not packet.keyframe:
                return []  # nothing decodes before the first keyframe
            self._started = True
        self.frames_in += 1
        pts = tag.timestamp + packet.composition_time
        if packet.keyframe:
            self._key_pts.add(pts)
        self._dts.append(tag.timestamp)
        pkt = av.Packet(packet.data)
        pkt.pts, pkt.dts, pkt.time_base = pts, tag.timestamp, _MS
        try:
            frames = self._decoder.decode(pkt)
        except av.error.FFmpegError:
            self._dts.pop()  # no picture from this one (the decoder reports, it does not crash)
            self._key_pts.discard(pts)
            return []
        return self._encode_all(frames)

    def flush(self) -> list[FlvTag]:
        """The frames still in the decoder and encoder (the publisher left)."""
        out = self._drain_decoder()
        return out + self._drain_encoder()

    # --- decoder -------------------------------------------------------------------------------
    def _open_decoder(self, fourcc: str, config: bytes) -> None:
        decoder = av.CodecContext.create(_DECODERS[fourcc], "r")
        decoder.extradata = config
        decoder.thread_count = 1  # one thread per rung; frame threads would add delay too
        self._decoder = decoder
        self._source = (fourcc, config)
        self._started = False
        self._dts.clear()
        self._key_pts.clear()

    def _drain_decoder(self) -> list[FlvTag]:
        if self._decoder is None:
            return []
        try:
            frames = self._decoder.decode(None)
        except av.error.FFmpegError:
            frames = []
        self._decoder = None
        return self._encode_all(frames)

    # --- encoder -------------------------------------------------------------------------------
    def _encode_all(self, frames: list[Any]) -> list[FlvTag]:
        out: list[FlvTag] = []
        for frame in frames:
            out += self._encode(frame)
        return out

    def _encode(self, frame: Any) -> list[FlvTag]:
        pts = frame.pts
        dts = self._dts.popleft() if self._dts else pts
        if pts is None:
            pts = dts
        dts = min(dts, pts)  # a valid stream never needs this; a broken one must not go backwards
        key = pts in self._key_pts
        self._key_pts.discard(pts)
        out: list[FlvTag] = []
        if self._size != (frame.width, frame.height):
            if not key:
                return []  # a new picture size starts at a keyframe
            out += self._drain_encoder()
            self._open_encoder(frame.width, frame.height)
        assert self._encoder is not None and self.output_size is not None
        width, height = self.output_size
        scaled = frame.reformat(width=width, height=height, format="yuv420p")
        scaled.pts, scaled.time_base = pts, _MS
        scaled.pict_type = PictureType.I if key else PictureType.NONE
        self._pending[pts] = dts
        out += self._packets(self._encoder.encode(scaled))
        return out

    def _open_encoder(self, src_width: int, src_height: int) -> None:
        spec = self.spec
        width, height = fit(src_width, src_height, spec.width, spec.height)
        encoder = av.CodecContext.create("libx264", "w")
        encoder.width, encoder.height = width, height
        encoder.pix_fmt = "yuv420p"
        encoder.time_base = _MS
        rate = self._decoder.framerate if self._decoder is not None else None
        encoder.framerate = rate if rate else Fraction(DEFAULT_FPS)
        encoder.bit_rate = spec.bitrate
        encoder.thread_count = 1
        encoder.flags |= av.codec.context.Flags.global_header  # SPS/PPS in extradata: the avcC
        kbps = spec.bitrate // 1000
        encoder.options = {
            "preset": spec.preset,
            "tune": "zerolatency",  # no B-frames, no lookahead: a picture out per picture in
            "forced-idr": "1",  # a forced keyframe is an IDR: a segment starts there
            # Keyframes only where the source has them; VBV so BANDWIDTH holds per segment.
            "x264-params": (
                f"keyint=infinite:scenecut=0:bframes=0:vbv-maxrate={kbps}:vbv-bufsize={kbps * 2}"
            ),
        }
        encoder.open()
        self._encoder = encoder
        self._size = (src_width, src_height)
        self.output_size = (width, height)

    def _drain_encoder(self) -> list[FlvTag]:
        if self._encoder is None:
            return []
        out = self._packets(self._encoder.encode(None))
        self._encoder = None
        self._size = None
        self._pending.clear()
        return out

    def _packets(self, packets: list[Any]) -> list[FlvTag]:
        out: list[FlvTag] = []
        track = self.spec.track_id
        for packet in packets:
            pts = packet.pts
            dts = self._pending.pop(pts, pts)
            config = annexb_to_avcc_record(bytes(self._encoder.extradata))
            if config != self._sent_config:
                # Before the first picture and again whenever the encoder's SPS/PPS change.
                out.append(_track_tag(track, dts, _KEY, _SEQUENCE_START, config))
                self._sent_config = config
            cts = (pts - dts).to_bytes(3, "big", signed=True)
            data = annexb_to_lengths(bytes(packet))
            kind = _KEY if packet.is_keyframe else _INTER
            out.append(_track_tag(track, dts, kind, _CODED_FRAMES, cts + data))
            self.frames_out += 1
        return out
