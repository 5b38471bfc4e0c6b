"""The ``transcode`` setting's grammar (gateway.transcode_config) and its validation at start."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, load_settings
from gateway.transcode_config import Rung, TranscodeRule, parse_rung, parse_transcode, rule_for


def test_entries_and_rungs() -> None:
    rules = parse_transcode(
        "live=1280x720@2500k,640x360@800k, live/cam=320x240@300000 tv/*=1920x1080@6M",
        max_rungs=4,
    )
    assert rules == [
        TranscodeRule("live", None, (Rung(1280, 720, 2_500_000), Rung(640, 360, 800_000))),
        TranscodeRule("live", "cam", (Rung(320, 240, 300_000),)),
        TranscodeRule("tv", None, (Rung(1920, 1080, 6_000_000),)),
    ]


def test_empty_is_off() -> None:
    assert parse_transcode("", max_rungs=4) == []
    assert parse_transcode("  \n ", max_rungs=4) == []
    assert load_settings(env={}).transcode == ""


def test_app_key_rule_wins_over_app_rule() -> None:
    rules = parse_transcode("live=640x360@800k live/cam=320x240@300k", max_rungs=4)
    assert rule_for(rules, "live", "cam") == rules[1]
    assert rule_for(rules, "live", "other") == rules[0]
    assert rule_for(rules, "other", "cam") is None


def test_rung_label() -> None:
    assert parse_rung("640x360@800k").label() == "640x360@800k"
    assert parse_rung("640x360@1M").bitrate == 1_000_000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("live", "entry 'live': expected SELECTOR=WxH@BITRATE"),
        ("live=", "entry 'live=': expected SELECTOR=WxH@BITRATE"),
        ("li.ve=640x360@800k", "selector must be APP, APP/* or APP/KEY"),
        ("live/a/b=640x360@800k", "selector must be APP, APP/* or APP/KEY"),
        ("live=640x360", "rung '640x360' is not WxH@BITRATE"),
        ("live=640*360@800k", "rung '640*360@800k' is not WxH@BITRATE"),
        ("live=640x360@800kbps", "is not WxH@BITRATE"),
        ("live=16x360@800k", "rung '16x360@800k': sides must be 32..8192 pixels"),
        ("live=640x9000@800k", "sides must be 32..8192 pixels"),
        ("live=640x360@10k", "rung '640x360@10k': bitrate must be 50k..100M"),
        ("live=640x360@200M", "bitrate must be 50k..100M"),
        ("live=640x360@800k,640x360@800k", "a rung is listed twice"),
        ("live=640x360@800k live/*=320x240@300k", "'live/*' has a ladder already"),
        ("live=64x64@100k,96x96@100k,128x128@100k", "3 rungs, transcode_max_rungs allows 2"),
    ],
)
def test_bad_entries_name_the_entry(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"^transcode: entry ") as info:
        parse_transcode(text, max_rungs=2)
    assert message in str(info.value)


def test_settings_refuse_a_bad_ladder_at_start() -> None:
    with pytest.raises(ConfigError, match="transcode: entry 'live=640x360'"):
        load_settings(env={"GATEWAY_TRANSCODE": "live=640x360"})
    with pytest.raises(ConfigError, match="allows 1"):
        load_settings(
            env={
                "GATEWAY_TRANSCODE": "live=640x360@800k,320x180@300k",
                "GATEWAY_TRANSCODE_MAX_RUNGS": "1",
            }
        )
    with pytest.raises(ConfigError, match="transcode_preset: one of ultrafast, "):
        load_settings(env={"GATEWAY_TRANSCODE_PRESET": "fastest"})
    with pytest.raises(ConfigError, match="transcode_queue"):
        load_settings(env={"GATEWAY_TRANSCODE_QUEUE": "1"})
    with pytest.raises(ConfigError, match="transcode: live/cam has 2 rungs, hls_max_renditions"):
        load_settings(
            env={
                "GATEWAY_TRANSCODE": "live/cam=640x360@800k,320x180@300k",
                "GATEWAY_HLS_MAX_RENDITIONS": "1",
            }
        )
    ok = load_settings(env={"GATEWAY_TRANSCODE": "live=640x360@800k"})
    assert ok.transcode == "live=640x360@800k"
