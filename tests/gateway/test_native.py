"""The mypyc build of the per-message modules (gateway/native.py, setup.py)."""

from __future__ import annotations

import importlib.machinery
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import cli, native

SO = importlib.machinery.EXTENSION_SUFFIXES[0]


def test_per_message_modules_run_compiled() -> None:
    # `make setup` compiles them; a compile that failed quietly (the extensions are optional so
    # that an install without a C compiler still works) would cost ingest a third more CPU.
    # GATEWAY_PURE_PYTHON=1 asks the build for plain Python instead.
    expected = list(native.COMPILED) if os.environ.get("GATEWAY_PURE_PYTHON") else []
    assert native.interpreted() == expected
    assert native.stale() == []


@pytest.fixture
def checkout(tmp_path: Path) -> Iterator[Path]:
    """A source checkout with one package module, ``nativecheck.mod``; the compiled file is
    an empty stand-in (find_spec only looks at names)."""
    (tmp_path / "setup.py").write_text("")
    pkg = tmp_path / "nativecheck"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text("")
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith("nativecheck")]:
            del sys.modules[name]


def _touch(path: Path, mtime: float) -> None:
    path.touch()
    os.utime(path, (mtime, mtime))


def test_source_only_module_is_interpreted(checkout: Path) -> None:
    assert native.interpreted(("nativecheck.mod",)) == ["nativecheck.mod"]
    assert native.stale(("nativecheck.mod",)) == []


def test_compiled_module_newer_than_source_is_current(checkout: Path) -> None:
    _touch(checkout / "nativecheck" / "mod.py", 1_000_000)
    _touch(checkout / "nativecheck" / f"mod{SO}", 2_000_000)
    assert native.interpreted(("nativecheck.mod",)) == []
    assert native.stale(("nativecheck.mod",)) == []


def test_source_edited_after_build_is_stale(checkout: Path) -> None:
    _touch(checkout / "nativecheck" / f"mod{SO}", 1_000_000)
    _touch(checkout / "nativecheck" / "mod.py", 2_000_000)
    assert native.stale(("nativecheck.mod",)) == ["nativecheck.mod"]


def test_installed_package_is_never_stale(checkout: Path) -> None:
    # site-packages: no setup.py beside the package, and a wheel's file times mean nothing.
    (checkout / "setup.py").unlink()
    _touch(checkout / "nativecheck" / f"mod{SO}", 1_000_000)
    _touch(checkout / "nativecheck" / "mod.py", 2_000_000)
    assert native.stale(("nativecheck.mod",)) == []


def test_run_refuses_to_start_on_stale_compiled_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(native, "stale", lambda: ["segmenter.cutter"])
    assert cli.main(["run"]) == 2
    err = capsys.readouterr().err
    assert "segmenter.cutter is older than its source" in err
    assert "make setup" in err
