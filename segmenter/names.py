"""The one definition of what an app or stream name may be.

Names travel from an RTMP publish (or an auth hook's answer) into store paths ``<app>/<key>/``
and URLs, so they keep to a bounded alphabet with nothing a path or URL treats specially: ASCII
letters, digits, ``_`` and ``-``. Every layer checks against this module: the hub at publish,
access control for hook answers and signed links, the HTTP side's URL converters.
"""

from __future__ import annotations

import re
from typing import Final

# Longest app or stream name, in characters.
MAX_NAME_LENGTH: Final = 128
NAME_PATTERN: Final = rf"[A-Za-z0-9_-]{{1,{MAX_NAME_LENGTH}}}"
_NAME_RE: Final = re.compile(NAME_PATTERN)


def valid_name(name: str) -> bool:
    """Whether ``name`` may be an app or stream name."""
    return _NAME_RE.fullmatch(name) is not None
