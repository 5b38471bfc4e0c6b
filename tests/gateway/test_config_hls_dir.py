"""An hls_dir the gateway cannot create or write is refused at start, naming it and the cause.

The tests run as root, where permission bits stop no write: the unwritable directories here are a
path under a regular file, a path in /proc and a directory with the immutable attribute."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_settings


def refusal(hls_dir: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(env={}, overrides={"hls_dir": str(hls_dir)})
    return str(caught.value)


def test_a_path_under_a_regular_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    target = tmp_path / "file" / "hls"
    assert refusal(target) == f"hls_dir: cannot write {target}: Not a directory"


def test_a_regular_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    assert (
        refusal(tmp_path / "file") == f"hls_dir: cannot write {tmp_path / 'file'}: Not a directory"
    )


def test_a_directory_that_cannot_be_created_is_refused() -> None:
    assert refusal(Path("/proc/gateway-hls")).startswith(
        "hls_dir: cannot write /proc/gateway-hls: "
    )


@pytest.fixture
def immutable_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "frozen"
    directory.mkdir()
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(directory)]).returncode != 0:
        pytest.skip("cannot make a read-only directory here (chattr +i failed)")
    try:
        yield directory
    finally:
        subprocess.run([chattr, "-i", str(directory)], check=True)


def test_a_read_only_directory_is_refused(immutable_dir: Path) -> None:
    assert refusal(immutable_dir) == (
        f"hls_dir: cannot write {immutable_dir}: Operation not permitted"
    )


def test_a_missing_directory_is_made_and_the_probe_removed(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    assert load_settings(env={}, overrides={"hls_dir": str(target)}).hls_dir == str(target)
    assert target.is_dir() and list(target.iterdir()) == []
