"""The reload diff (gateway.reload) and reconfiguring a running gateway in process."""

from __future__ import annotations

import dataclasses
import logging
from functools import partial
from typing import Any

import httpx
import pytest
import trio

from gateway.app import Gateway, reload_settings
from gateway.config import ConfigError, Settings
from gateway.pull import parse_pull
from gateway.reload import RELOADABLE, RESTART_ONLY, plan_reload, split_changes
from tests.clients import imageio_ffmpeg_exe, publish_args, run_client
from tests.conftest import start_gateway, test_settings
from tests.e2e.test_relay import poll, segment_uris


def test_unchanged_settings_plan_nothing() -> None:
    plan = plan_reload(Settings(), Settings())
    assert plan.settings == Settings() and plan.applied == () and plan.needs_restart == ()


def test_reloadable_settings_apply_and_restart_only_ones_keep_their_running_value() -> None:
    running = Settings(http_port=8080, hls_dir="", log_level="info")
    loaded = Settings(
        http_port=9090, hls_dir="/srv/hls", log_level="debug", api_token="t", hls_window=8
    )
    plan = plan_reload(running, loaded)
    assert plan.applied == ("log_level", "api_token", "hls_window")  # in the fields' order
    assert plan.needs_restart == ("http_port", "hls_dir")
    assert (plan.settings.http_port, plan.settings.hls_dir) == (8080, "")
    assert (plan.settings.log_level, plan.settings.api_token, plan.settings.hls_window) == (
        "debug",
        "t",
        8,
    )


def test_every_setting_is_either_reloadable_or_restart_only() -> None:
    """A new setting must be placed: applied by Gateway.reconfigure, or kept until a restart."""
    assert not RESTART_ONLY & RELOADABLE
    assert {f.name for f in Settings.fields()} == RESTART_ONLY | RELOADABLE


@pytest.mark.parametrize("name", sorted(RESTART_ONLY))
def test_each_restart_only_setting_is_kept(name: str) -> None:
    f = next(f for f in Settings.fields() if f.name == name)
    other: Any = {str: "x", int: 1, float: 1.5}[type(f.default)]
    loaded = dataclasses.replace(Settings(), **{name: other})
    plan = plan_reload(Settings(), loaded)
    assert plan.needs_restart == (name,) and plan.applied == ()
    assert plan.settings == Settings()


def test_split_changes_keeps_what_stays() -> None:
    old = parse_pull("live/a=rtmp://h/app/a live/b=rtmp://h/app/b")
    new = parse_pull("live/b=rtmp://h/app/b, live/c=rtmp://h/app/c live/a=rtmp://h/app/other")
    stop, start = split_changes(old, new)
    assert [(r.app, r.key, r.target.name) for r in stop] == [("live", "a", "a")]
    assert [(r.app, r.key, r.target.name) for r in start] == [
        ("live", "c", "c"),
        ("live", "a", "other"),
    ]
    assert split_changes(old, old) == ([], [])


@pytest.mark.e2e  # real FFmpeg and two gateways
async def test_reload_adds_then_removes_a_push_relay_without_touching_the_publish(
    nursery: trio.Nursery,
) -> None:
    """FFmpeg publishes to A; a reload adds a push rule to B (B gets the stream), another
    removes it (B's publisher goes); A's publish session stays the same throughout."""
    b, _ = await start_gateway(nursery, test_settings())
    a, _ = await start_gateway(nursery, test_settings())
    assert a.bound is not None and b.bound is not None
    url = f"rtmp://127.0.0.1:{a.bound.rtmp_port}/live/cam"
    args = publish_args(imageio_ffmpeg_exe(), url, seconds=25)
    nursery.start_soon(partial(run_client, args, timeout=60))
    async with httpx.AsyncClient(timeout=5) as http:
        await poll(segment_uris(a.bound.http_url, "live/cam", http), timeout=15, what="A's HLS")
        push = f"live=rtmp://127.0.0.1:{b.bound.rtmp_port}/live/{{key}}"
        plan = a.reconfigure(dataclasses.replace(a.settings, push=push))
        assert plan.applied == ("push",)
        await poll(segment_uris(b.bound.http_url, "live/cam", http), timeout=15, what="B's HLS")
        assert [r["state"] for r in a.relays.relays_for("live/cam")] == ["publishing"]

        # The same rule again: the relay is the same object, its connection untouched.
        relay = a.relays.relays("live/cam")[0]
        a.reconfigure(dataclasses.replace(a.settings, push=push, hls_window=7))
        assert a.relays.relays("live/cam") == [relay] and not relay.scope.cancel_called

        a.reconfigure(dataclasses.replace(a.settings, push=""))
        assert a.relays.relays_for("live/cam") == [] and relay.scope.cancel_called

        async def b_lost_its_publisher() -> bool:
            info = (await http.get(f"{b.bound.http_url}/api/streams/live/cam")).json()
            return info.get("publisher") is None

        await poll(b_lost_its_publisher, timeout=10, what="B's publisher to go")
        a_info = (await http.get(f"{a.bound.http_url}/api/streams/live/cam")).json()
        assert a_info["sessions"] == 1 and a_info["state"] == "live"
    assert a.lives["live/cam"].config.window_segments == 6  # running streams keep their HLS
    # A stream published after the reload gets the reloaded HLS settings.
    new = publish_args(imageio_ffmpeg_exe(), url.replace("/cam", "/new"), seconds=3)
    nursery.start_soon(partial(run_client, new, timeout=30))
    with trio.fail_after(15):
        while "live/new" not in a.lives:
            await trio.sleep(0.1)
    assert a.lives["live/new"].config.window_segments == 7


@pytest.mark.e2e  # real FFmpeg and two gateways
async def test_reload_adds_then_removes_a_pull(nursery: trio.Nursery) -> None:
    """A pulls B's stream once a reload names it, and stops when a reload removes the entry;
    the other pull, unchanged, keeps its task and state."""
    b, _ = await start_gateway(nursery, test_settings())
    assert b.bound is not None
    source = f"rtmp://127.0.0.1:{b.bound.rtmp_port}/live"
    kept = f"live/other={source}/nobody"  # a source nobody publishes: keeps retrying
    a, _ = await start_gateway(nursery, test_settings(pull=kept))
    assert a.bound is not None
    args = publish_args(imageio_ffmpeg_exe(), f"{source}/cam", seconds=25)
    nursery.start_soon(partial(run_client, args, timeout=60))
    async with httpx.AsyncClient(timeout=5) as http:
        await poll(segment_uris(b.bound.http_url, "live/cam", http), timeout=15, what="B's HLS")
        (other,) = a.pulls.pulls
        plan = a.reconfigure(
            dataclasses.replace(a.settings, pull=f"{kept} live/mirror={source}/cam")
        )
        assert plan.applied == ("pull",)
        assert a.pulls.pulls[0] is other and len(a.pulls.pulls) == 2
        await poll(segment_uris(a.bound.http_url, "live/mirror", http), timeout=15, what="A's pull")

        a.reconfigure(dataclasses.replace(a.settings, pull=kept))
        assert a.pulls.pulls == [other] and not other.scope.cancel_called

        def a_lost_its_publisher() -> bool:
            stream = a.hub.get("live", "mirror")
            return stream is None or stream.publisher is None

        with trio.fail_after(10):
            while not a_lost_its_publisher():
                await trio.sleep(0.1)
        b_info = (await http.get(f"{b.bound.http_url}/api/streams/live/cam")).json()
        assert b_info["sessions"] == 1 and b_info["state"] == "live"


async def test_reload_logs_names_not_secrets_and_a_refused_load_changes_nothing(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s" * 40
    caplog.set_level(logging.INFO)
    plan = reload_settings(
        gateway, lambda: dataclasses.replace(gateway.settings, playback_secret=secret, hls_window=9)
    )
    assert plan is not None and plan.needs_restart == ("playback_secret",)
    assert gateway.settings.hls_window == 9 and gateway.settings.playback_secret == ""
    assert "playback_secret changed but needs a restart" in caplog.text
    assert secret not in caplog.text

    def broken() -> Settings:
        raise ConfigError("hls_windw (from g.toml): unknown setting (did you mean 'hls_window'?)")

    running = gateway.settings
    assert reload_settings(gateway, broken) is None
    assert gateway.settings is running
    (refusal,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "reload refused" in refusal.getMessage() and "hls_windw" in refusal.getMessage()
