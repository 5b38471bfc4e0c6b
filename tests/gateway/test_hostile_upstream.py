"""A pull source that accepts and then stalls: trickling handshake bytes (each within
idle_timeout) must fail the attempt at setup_timeout, not hold the pull in "connecting"."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from gateway.config import Settings
from gateway.hub import Hub
from gateway.pull import Pull, PullFailed, parse_pull
from gateway.relay_config import Target


async def test_source_trickling_its_handshake_fails_at_setup_timeout(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    settings = Settings(setup_timeout=5.0, idle_timeout=30.0, pull="live/p=rtmp://src/live/x")

    async def trickle(stream: trio.abc.Stream) -> None:
        try:
            while True:  # S0 is 0x03; the rest of S0+S1+S2 never completes in time
                await stream.send_all(b"\x03")
                await trio.sleep(1)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def opener(target: Target) -> trio.abc.Stream:
        ours, theirs = trio.testing.memory_stream_pair()
        nursery.start_soon(trickle, theirs)
        return ours

    (rule,) = parse_pull(settings.pull)
    pull = Pull(rule, Hub(), settings, connection_id=-1, opener=opener)
    start = trio.current_time()
    with pytest.raises(PullFailed, match="no RTMP handshake and connect within 5 s"):
        await pull._attempt()
    assert trio.current_time() - start == pytest.approx(5.0, abs=0.01)
