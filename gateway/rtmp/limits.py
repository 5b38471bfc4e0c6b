"""Limits of one RTMP connection's protocol layer (deadlines and counts are the server's job)."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.rtmp.amf0 import AmfLimits

__all__ = ["Limits"]

MIB = 1 << 20


@dataclass(frozen=True, slots=True)
class Limits:
    """Every bound the sans-IO core enforces, with safe defaults.

    Sizes are checked against the DECLARED length in a chunk header, so memory is refused
    before it is buffered.
    """

    # Largest message (§5.3.1.2.1 length is u24, so 16 MiB - 1 at most). A 1080p keyframe at
    # 20 Mbit/s is ~0.5-2 MB and a 4K one ~4 MB; 8 MiB leaves headroom and halves the worst case.
    max_message_size: int = 8 * MIB
    # Distinct chunk stream ids with state. OBS uses 2..7, FFmpeg 2..9; 64 is generous.
    max_chunk_streams: int = 64
    # Inbound Set Chunk Size bounds (§5.4.1). The spec allows 1, but every real encoder sends
    # >= 128 (the default) and tiny chunks cost one Python iteration each: refuse below 128.
    min_chunk_size: int = 128
    # Above a message's u24 length a chunk size means nothing; some clients send 0xFFFFFF.
    max_chunk_size: int = 16 * MIB
    # AMF decoding bounds for command and data bodies.
    amf: AmfLimits = field(default_factory=AmfLimits)
    # Payload held in unfinished messages across all chunk streams (audio and video interleave,
    # so two large partial messages may coexist).
    max_buffered_bytes: int = 16 * MIB
    # Window Acknowledgement Size we announce (§5.4.4) and Set Peer Bandwidth we send (§5.4.5);
    # 2.5 MB is what FFmpeg, librtmp and nginx-rtmp use.
    window_ack_size: int = 2_500_000
    # Chunk size we announce for outbound messages before the connect _result (§5.4.1).
    out_chunk_size: int = 4096
    # Message streams a client may create with createStream (ids 1..N); publishers use one.
    max_message_streams: int = 8
