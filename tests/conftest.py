from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial

import pytest
import trio

from gateway.app import Gateway, run_gateway
from gateway.config import Settings
from segmenter import native


def pytest_report_header(config: pytest.Config) -> list[str]:
    # An edited, not rebuilt checkout runs its compiled modules from source (segmenter/native.py):
    # said once at the top, as `gateway run` logs it.
    fallback = native.fallback_warning()
    if fallback:
        return [fallback]
    return [f"compiled modules: {len(native.COMPILED) - len(native.interpreted())}"
            f" of {len(native.COMPILED)}"]  # fmt: skip


def test_settings(**overrides: object) -> Settings:
    base: dict[str, object] = {"host": "127.0.0.1", "rtmp_port": 0, "http_port": 0, "rtmps_port": 0}
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


test_settings.__test__ = False  # type: ignore[attr-defined]  # a factory, not a test


async def start_gateway(nursery: trio.Nursery, settings: Settings) -> tuple[Gateway, trio.Event]:
    stop = trio.Event()
    gw: Gateway = await nursery.start(
        partial(run_gateway, settings, stop=stop, handle_signals=False)
    )
    return gw, stop


@pytest.fixture
async def gateway(nursery: trio.Nursery) -> AsyncIterator[Gateway]:
    gw, stop = await start_gateway(nursery, test_settings())
    yield gw
    stop.set()
