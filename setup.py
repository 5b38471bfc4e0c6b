"""Compiles the per-message modules listed in segmenter/native.py with mypyc (metadata is in
pyproject.toml). Without a C compiler, or with RTMP_HLS_PURE_PYTHON=1, the package installs as
plain Python: the same code, whose hot path takes about 1.5 times as long."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

from setuptools import Extension, setup

HERE = Path(__file__).parent


def native_extensions() -> list[Extension]:
    native = runpy.run_path(str(HERE / "segmenter" / "native.py"))
    if native["pure_requested"]():
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("setup.py: mypyc is not installed; installing pure Python", file=sys.stderr)
        return []
    paths = [name.replace(".", "/") + ".py" for name in native["COMPILED"]]
    # Third-party packages (PyAV) may be absent from an isolated build environment: typed as Any
    # there, which compiles to the same generic calls.
    flags = ["--ignore-missing-imports", "--no-warn-unused-ignores"]
    extensions = mypycify(flags + paths, opt_level="3", group_name=native["GROUP"])
    for ext in extensions:
        ext.optional = True  # a failed compile leaves the pure-Python module in place
    return extensions


setup(ext_modules=native_extensions())
