"""An hls_dir the gateway cannot create or write is refused at start, naming it and the cause.

The tests run as root, where permission bits stop no write: the unwritable directories here are a
path under a regular file, a path in /proc and a directory with the immutable attribute."""

from __future__ import annotations

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


def test_an_existing_directory_that_takes_no_files_is_refused() -> None:
    # /proc/sys exists and is a directory, but no file can be made in it, even as root (the
    # tests run as root, which permission bits do not stop).
    assert Path("/proc/sys").is_dir()
    assert refusal(Path("/proc/sys")).startswith("hls_dir: cannot write /proc/sys: ")


def test_a_missing_directory_is_made_and_the_probe_removed(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    assert load_settings(env={}, overrides={"hls_dir": str(target)}).hls_dir == str(target)
    assert target.is_dir() and list(target.iterdir()) == []
