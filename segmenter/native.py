"""Modules that ``setup.py`` compiles with mypyc, and whether this process runs them compiled.

Only plain, fully typed, synchronous code is on the list: the sans-IO RTMP decoder and the
segmenter, which every media message passes through. Left out on purpose: modules with
``async`` code (trio drives those), ``messages`` (mypyc mistakes its ``ClassVar`` constants in
dataclasses for fields) and ``amf0``, whose recursion over nested AMF values must stay bounded by
Python's recursion limit (compiled calls do not count towards it).

``RTMP_HLS_PURE_PYTHON=1`` (outside the ``GATEWAY_`` settings namespace: it is about the build,
not a setting) makes ``setup.py`` compile nothing, and makes a process import these modules from
their sources even where compiled ones exist. A source checkout whose compiled modules are older
than a source does the same on its own (see ``stale``), so an edit is never hidden by an old build.

No imports from the project here: ``setup.py`` reads this file before anything is installed, and
both packages' ``__init__`` call ``select`` before any of the modules is imported.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Mapping, Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

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
# Set to anything but "" or "0": build and run the modules above as plain Python.
PURE_ENV = "RTMP_HLS_PURE_PYTHON"
_EXTENSIONS = tuple(importlib.machinery.EXTENSION_SUFFIXES)
# Where gateway/ and segmenter/ sit: a checkout's root, or site-packages.
_ROOT = Path(__file__).resolve().parents[1]


def pure_requested(environ: Mapping[str, str] | None = None) -> bool:
    value = (os.environ if environ is None else environ).get(PURE_ENV, "")
    return value not in ("", "0")


def _spec_origin(name: str) -> str:
    spec = importlib.util.find_spec(name)
    return (spec.origin or "") if spec is not None else ""


def interpreted(names: tuple[str, ...] = COMPILED) -> list[str]:
    """Modules of ``names`` that this interpreter imports from source, not compiled."""
    return [n for n in names if not _spec_origin(n).endswith(_EXTENSIONS)]


def stale(names: Sequence[str] = COMPILED, root: Path = _ROOT) -> list[str]:
    """Compiled modules of a source checkout whose ``.py`` changed after they were built.

    Python imports the compiled file first, so such a checkout would run the old code. Only
    checked where the packages sit in a checkout (``setup.py`` beside them): an installed
    wheel's file times say nothing about the build. Looks at files only, imports nothing.
    """
    if not (root / "setup.py").is_file():
        return []
    out = []
    for name in names:
        *package, stem = name.split(".")
        folder = root.joinpath(*package)
        source = folder / f"{stem}.py"
        built = [folder / f"{stem}{suffix}" for suffix in _EXTENSIONS]
        built = [path for path in built if path.is_file()]
        if source.is_file() and built and source.stat().st_mtime > built[0].stat().st_mtime:
            out.append(name)
    return out


class _SourceFinder:
    """Finds the listed modules' ``.py`` files first, ahead of their compiled files."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = frozenset(names)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname not in self.names or not path:
            return None
        stem = fullname.rpartition(".")[2]
        for entry in path:
            source = Path(entry) / f"{stem}.py"
            if source.is_file():
                return importlib.util.spec_from_file_location(fullname, source)
        return None


# What ``select`` decided: None before it ran, else the stale modules ([] when none).
_stale_found: list[str] | None = None
_from_source = False


def select() -> None:
    """Import the compiled modules from source where asked (``PURE_ENV``) or where a compiled
    one is stale. All of them or none: mypyc compiles them into one library whose modules call
    each other directly, so a mix would hold two copies of each class. Runs once, at the first
    import of either package, before any of the modules is imported."""
    global _stale_found, _from_source
    if _stale_found is not None:
        return
    _stale_found = stale()
    _from_source = bool(_stale_found) or pure_requested()
    if _from_source:
        sys.meta_path.insert(0, _SourceFinder(COMPILED))


def fallback_warning() -> str | None:
    """The one line to log when stale compiled modules were passed over, else None."""
    if not _stale_found:
        return None
    return (
        f"compiled {', '.join(_stale_found)} older than the source: running all "
        f"{len(COMPILED)} compiled modules from source (rebuild with `make setup`)"
    )
