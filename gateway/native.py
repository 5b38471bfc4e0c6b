"""Modules that ``setup.py`` compiles with mypyc, and whether this process runs them compiled.

Only plain, fully typed, synchronous code is on the list: the sans-IO RTMP decoder and the
segmenter, which every media message passes through. Left out on purpose: modules with
``async`` code (trio drives those), ``messages`` (mypyc mistakes its ``ClassVar`` constants in
dataclasses for fields) and ``amf0``, whose recursion over nested AMF values must stay bounded by
Python's recursion limit (compiled calls do not count towards it).

No imports from the project here: ``setup.py`` reads this file before anything is installed.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path

COMPILED: tuple[str, ...] = (
    "gateway.rtmp.chunk",
    "gateway.rtmp.connection",
    "gateway.rtmp.events",
    "gateway.rtmp.commands",
    "gateway.rtmp.handshake",
    "segmenter.flv",
    "segmenter.cutter",
    "segmenter.codecs",
    "segmenter.mux",
    "segmenter.live",
    "segmenter.keeper",
    "segmenter.fmp4",
    "segmenter.outputs",
)
# Name of the shared library mypyc puts the compiled code of all of them in.
GROUP = "gateway_native"
_EXTENSIONS = tuple(importlib.machinery.EXTENSION_SUFFIXES)


def _spec_origin(name: str) -> str:
    spec = importlib.util.find_spec(name)
    return (spec.origin or "") if spec is not None else ""


def interpreted(names: tuple[str, ...] = COMPILED) -> list[str]:
    """Modules of ``names`` that this interpreter imports from source, not compiled."""
    return [n for n in names if not _spec_origin(n).endswith(_EXTENSIONS)]


def stale(names: tuple[str, ...] = COMPILED) -> list[str]:
    """Compiled modules of a source checkout whose ``.py`` changed after they were built.

    Python imports the compiled file first, so such a checkout would run the old code. Only
    checked where the package sits in a checkout (``setup.py`` beside it): an installed wheel's
    file times say nothing about the build.
    """
    out = []
    for name in names:
        origin = Path(_spec_origin(name))
        if not origin.name.endswith(_EXTENSIONS):
            continue
        source = origin.with_name(name.rpartition(".")[2] + ".py")
        root = origin.parents[name.count(".")]
        if not (root / "setup.py").is_file() or not source.is_file():
            continue
        if source.stat().st_mtime > origin.stat().st_mtime:
            out.append(name)
    return out
