"""Shared fixtures for the web tests: an app over a MemoryStore and a scripted StatusSource."""

from __future__ import annotations

from typing import Any

import prometheus_client
import pytest
from quart_trio import QuartTrio

from segmenter.store import MemoryStore
from web.app import WebConfig, create_app

PLAYLIST = (
    "#EXTM3U\n"
    "#EXT-X-VERSION:3\n"
    "#EXT-X-TARGETDURATION:2\n"
    "#EXT-X-MEDIA-SEQUENCE:7\n"
    + "".join(f"#EXTINF:2.000,\nab12-{n:05d}.ts\n" for n in range(7, 19))
).encode()
SEGMENT = bytes(range(256)) * 8  # 2048 bytes, every offset distinguishable


def stream_info(app: str = "live", key: str = "cam1", state: str = "live") -> dict[str, Any]:
    return {
        "app": app,
        "key": key,
        "state": state,
        "publisher": "127.0.0.1:50000" if state == "live" else None,
        "started_at": "2024-05-01T12:00:00+00:00" if state != "waiting" else None,
        "codecs": ["avc1.64001f", "mp4a.40.2"],
        "width": 1280,
        "height": 720,
        "frame_rate": 30.0,
        "video_bitrate": 2_500_000,
        "audio_bitrate": 128_000,
        "keyframe_interval": 2.0,
        "segment_count": 6,
        "newest_segment_age": 0.4,
        "dropped": 0,
        "late": 0,
        "warnings": [],
    }


class FakeStatus:
    """A StatusSource whose streams the test sets directly."""

    def __init__(self) -> None:
        self.infos: dict[tuple[str, str], dict[str, Any]] = {}

    def set(self, info: dict[str, Any]) -> None:
        self.infos[(info["app"], info["key"])] = info

    def streams(self) -> list[dict[str, Any]]:
        return list(self.infos.values())

    def stream(self, app: str, key: str) -> dict[str, Any] | None:
        return self.infos.get((app, key))


@pytest.fixture
def store() -> MemoryStore:
    s = MemoryStore()
    s.put("live/cam1/index.m3u8", PLAYLIST)
    s.put("live/cam1/ab12-00012.ts", SEGMENT)
    return s


@pytest.fixture
def status() -> FakeStatus:
    s = FakeStatus()
    s.set(stream_info())
    return s


@pytest.fixture
def registry() -> prometheus_client.CollectorRegistry:
    return prometheus_client.CollectorRegistry()


@pytest.fixture
def config() -> WebConfig:
    return WebConfig()


@pytest.fixture
def app(
    store: MemoryStore,
    status: FakeStatus,
    config: WebConfig,
    registry: prometheus_client.CollectorRegistry,
) -> QuartTrio:
    return create_app(store, status, config=config, registry=registry)
