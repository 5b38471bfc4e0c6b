"""FLV tag model: the unit the RTMP side hands to the segmenter (FLV spec v10.1, annex E.4.1).

Only the tag model lives here for now; body parsing (AVC/AAC/Enhanced RTMP headers) is added
alongside it. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class TagType(IntEnum):
    """FLV TagType values; identical to the RTMP message type ids (RTMP 1.0 §7.1)."""

    AUDIO = 8
    VIDEO = 9
    SCRIPT = 18


@dataclass(frozen=True, slots=True)
class FlvTag:
    """One audio, video or script-data tag.

    ``timestamp`` is the publisher's millisecond clock already unwrapped from RTMP's 32 bits into
    an unbounded int (so it never wraps); it is NOT rebased: the consumer rebases per session.
    ``body`` is the tag body exactly as carried by the RTMP message (for SCRIPT tags: the AMF0
    ``onMetaData`` name and value, with any ``@setDataFrame`` prefix already stripped).
    """

    type: TagType
    timestamp: int
    body: bytes
