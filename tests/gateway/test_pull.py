"""Pull relay configuration grammar (pure)."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, load_settings
from gateway.pull import parse_pull


def test_entries_parse_with_targets() -> None:
    rules = parse_pull(
        "live/cam=rtmp://camera.local/live/main, tv/one=rtmps://cdn.example:8443/a/b?k=1"
    )
    assert [(r.app, r.key) for r in rules] == [("live", "cam"), ("tv", "one")]
    assert rules[0].target.port == 1935 and rules[0].target.name == "main"
    assert rules[1].target.scheme == "rtmps" and rules[1].target.name == "b?k=1"
    assert parse_pull("") == [] and parse_pull("  ") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("live=rtmp://h/live/x", "expected APP/KEY=rtmp://host/app/name"),
        ("live/../x=rtmp://h/live/x", "expected APP/KEY"),
        ("live/cam", "expected APP/KEY"),
        ("live/cam=http://h/live/x", "only rtmp:// and rtmps://"),
        ("live/cam=rtmp://h/x", "the path must be /APP/STREAM"),
        ("live/cam=rtmp://h/a/b live/cam=rtmp://h/a/c", "pulled twice"),
    ],
)
def test_bad_entries_name_the_entry(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match="pull: entry") as info:
        parse_pull(text)
    assert message in str(info.value)


def test_settings_validate_pull_at_load() -> None:
    with pytest.raises(ConfigError, match="pull: entry 'nope'"):
        load_settings(env={"GATEWAY_PULL": "nope"})
