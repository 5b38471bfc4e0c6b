"""``record``: immutable value classes of the per-message path at the cost of plain ones.

A frozen dataclass sets each field through ``object.__setattr__``; each RTMP media message makes
a few of these objects (RawMessage, Media), so the runtime guard would be paid per message.
``record`` makes a slotted, hashable dataclass that type checkers treat as frozen (PEP 681
``frozen_default``): assigning to a field stays a mypy error. The segmenter has the same three
lines (``segmenter.records``): the RTMP core imports nothing outside ``gateway.rtmp``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from typing_extensions import dataclass_transform

_T = TypeVar("_T")


@dataclass_transform(frozen_default=True)
def record(cls: type[_T]) -> type[_T]:
    return dataclass(slots=True, unsafe_hash=True)(cls)
