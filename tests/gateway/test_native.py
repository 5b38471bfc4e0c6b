"""The mypyc build of the per-message modules (segmenter/native.py, setup.py): compiled by
default, from source on request (RTMP_HLS_PURE_PYTHON) or where a compiled module is older than
its source."""

from __future__ import annotations

import importlib.machinery
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from segmenter import native

SO = importlib.machinery.EXTENSION_SUFFIXES[0]
ROOT = Path(__file__).resolve().parents[2]


def test_per_message_modules_run_compiled() -> None:
    # `make setup` compiles them; a compile that failed quietly (the extensions are optional so
    # that an install without a C compiler still works) would cost ingest a third more CPU.
    # RTMP_HLS_PURE_PYTHON=1 asks for plain Python instead. A stale build runs from source too,
    # which this test reports: CI tests the compiled code.
    expected = list(native.COMPILED) if native.pure_requested() else []
    assert native.interpreted() == expected
    assert native.stale() == []


@pytest.mark.parametrize(
    ("value", "pure"), [(None, False), ("", False), ("0", False), ("1", True), ("yes", True)]
)
def test_pure_switch_values(value: str | None, pure: bool) -> None:
    environ = {} if value is None else {native.PURE_ENV: value}
    assert native.pure_requested(environ) is pure
    assert not native.PURE_ENV.startswith("GATEWAY_")  # not mistaken for a setting


@pytest.fixture
def checkout(tmp_path: Path) -> Iterator[Path]:
    """A source checkout with one package module, ``nativecheck.mod``; the compiled file is
    an empty stand-in (find_spec and stale only look at names and times)."""
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
    assert native.stale(("nativecheck.mod",), checkout) == []


def test_compiled_module_newer_than_source_is_current(checkout: Path) -> None:
    _touch(checkout / "nativecheck" / "mod.py", 1_000_000)
    _touch(checkout / "nativecheck" / f"mod{SO}", 2_000_000)
    assert native.interpreted(("nativecheck.mod",)) == []
    assert native.stale(("nativecheck.mod",), checkout) == []


def test_source_edited_after_build_is_stale(checkout: Path) -> None:
    _touch(checkout / "nativecheck" / f"mod{SO}", 1_000_000)
    _touch(checkout / "nativecheck" / "mod.py", 2_000_000)
    assert native.stale(("nativecheck.mod",), checkout) == ["nativecheck.mod"]


def test_installed_package_is_never_stale(checkout: Path) -> None:
    # site-packages: no setup.py beside the package, and a wheel's file times mean nothing.
    (checkout / "setup.py").unlink()
    _touch(checkout / "nativecheck" / f"mod{SO}", 1_000_000)
    _touch(checkout / "nativecheck" / "mod.py", 2_000_000)
    assert native.stale(("nativecheck.mod",), checkout) == []


# --- the real build, copied: which files a fresh interpreter imports ---------------------------

PROBE = """
import sys
import gateway.rtmp.connection, segmenter.live
from segmenter import native
mods = [sys.modules[name] for name in native.COMPILED]
print(" ".join("so" if m.__file__.endswith(".so") else "py" for m in mods))
print(getattr(sys.modules["segmenter.cutter"], "EDITED_AFTER_BUILD", False))
print(native.GROUP + "__mypyc" in sys.modules)
print(native.fallback_warning())
"""


@pytest.fixture
def built_copy(tmp_path: Path) -> Path:
    """The checkout's packages with their compiled modules (as `make setup` built them), copied
    with file times kept, and setup.py beside them as in a checkout."""
    assert native.stale() == [], "the checkout's own build is stale: run `make setup` first"
    skip = shutil.ignore_patterns("node_modules", "__pycache__")
    for package in ("gateway", "segmenter", "web"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=skip)
    shutil.copy2(ROOT / "setup.py", tmp_path / "setup.py")
    (group,) = ROOT.glob(f"{native.GROUP}__mypyc.*.so")
    shutil.copy2(group, tmp_path / group.name)
    for name in native.COMPILED:
        assert (tmp_path / (name.replace(".", "/") + SO)).is_file(), f"{name} not built"
    return tmp_path


def _probe(root: Path, **env: str) -> list[str]:
    environ = {k: v for k, v in os.environ.items() if k != native.PURE_ENV}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=root, env={**environ, **env},
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return out.stdout.splitlines()


def _edit_after_build(root: Path) -> None:
    source = root / "segmenter" / "cutter.py"
    built = root / "segmenter" / f"cutter{SO}"
    source.write_text(source.read_text() + "\nEDITED_AFTER_BUILD = True\n")
    later = built.stat().st_mtime + 10
    os.utime(source, (later, later))


def test_copied_build_runs_compiled(built_copy: Path) -> None:
    kinds, edited, group_loaded, warning = _probe(built_copy)
    assert kinds.split() == ["so"] * len(native.COMPILED)
    assert (edited, group_loaded, warning) == ("False", "True", "None")


def test_source_edited_after_build_runs_every_module_from_source(built_copy: Path) -> None:
    _edit_after_build(built_copy)
    kinds, edited, group_loaded, warning = _probe(built_copy)
    # All from source, not only the edited one: the compiled modules share one library.
    assert kinds.split() == ["py"] * len(native.COMPILED)
    assert (edited, group_loaded) == ("True", "False")
    assert warning.startswith("compiled segmenter.cutter older than the source: running all")


def test_pure_switch_runs_a_built_checkout_from_source(built_copy: Path) -> None:
    kinds, edited, group_loaded, warning = _probe(built_copy, **{native.PURE_ENV: "1"})
    assert kinds.split() == ["py"] * len(native.COMPILED)
    assert (edited, group_loaded, warning) == ("False", "False", "None")


async def test_gateway_run_warns_once_and_serves_from_a_stale_build(built_copy: Path) -> None:
    _edit_after_build(built_copy)
    log = built_copy / "gateway.log"
    environ = {k: v for k, v in os.environ.items() if k != native.PURE_ENV}
    with log.open("wb") as sink:
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "gateway.cli", "run", "--host", "127.0.0.1",
             "--rtmp-port", "0", "--http-port", "0"],
            cwd=built_copy, env=environ, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            with trio.fail_after(30):
                while b"gateway listening" not in log.read_bytes():
                    await trio.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            with trio.fail_after(15):
                code = await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
    text = log.read_text()
    assert code == 0, text
    warnings = [line for line in text.splitlines() if "older than the source" in line]
    assert len(warnings) == 1, text
    assert "compiled segmenter.cutter older than the source" in warnings[0]
    assert "per-message modules run as pure Python" not in text
