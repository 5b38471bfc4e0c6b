"""gateway.readmux: the shared reader's tick, registration and timer."""

from __future__ import annotations

import os
import socket
import time

import pytest
import trio

from gateway import readmux
from gateway.readmux import ReadMux, TickPolicy, periodic_timerfd


async def test_timerfd_ticks_at_its_interval() -> None:
    fd = periodic_timerfd(0.01)
    assert fd is not None
    try:
        start = trio.current_time()
        expiries = 0
        while expiries < 10:
            await trio.lowlevel.wait_readable(fd)
            expiries += int.from_bytes(os.read(fd, 8), "little")
        elapsed = trio.current_time() - start
        # The kernel counts every expiry however late the reader runs, so the count follows the
        # interval on a loaded machine too: no wall-clock margin.
        assert elapsed >= 0.09
        assert int(elapsed / 0.01) - 1 <= expiries <= int(elapsed / 0.01) + 1
    finally:
        os.close(fd)


@pytest.mark.parametrize("timer", ["timerfd", "trio-sleep"])
async def test_readers_run_only_while_registered_and_readable(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch, timer: str
) -> None:
    if timer == "trio-sleep":
        monkeypatch.setattr(readmux, "periodic_timerfd", lambda interval: None)
    mux = ReadMux(0.002)
    nursery.start_soon(mux.run)
    a, b = socket.socketpair()
    b.setblocking(False)
    got: list[bytes] = []

    def reader() -> None:
        got.append(b.recv(100))

    mux.add(b.fileno(), reader)
    await trio.sleep(0.05)
    assert got == []  # nothing to read: never called
    a.send(b"one")
    with trio.fail_after(2):
        while not got:
            await trio.sleep(0.001)
    assert got == [b"one"]
    mux.remove(b.fileno())
    mux.remove(b.fileno())  # idempotent
    a.send(b"two")
    await trio.sleep(0.05)
    assert got == [b"one"]
    a.close()
    b.close()


async def test_frequent_arrivals_are_batched_into_ticks(nursery: trio.Nursery) -> None:
    # Data every ~1 ms with a 20 ms interval: the mux switches to ticking and each reader call
    # takes many writes at once; without ticks it would be about one call per write.
    mux = ReadMux(0.02)
    nursery.start_soon(mux.run)
    a, b = socket.socketpair()
    b.setblocking(False)
    calls, received = 0, 0

    def reader() -> None:
        nonlocal calls, received
        calls += 1
        received += len(b.recv(1 << 20))

    mux.add(b.fileno(), reader)

    def send() -> None:
        for _ in range(300):
            a.send(b"x")
            time.sleep(0.001)

    await trio.to_thread.run_sync(send)
    with trio.fail_after(2):
        while received < 300:
            await trio.sleep(0.01)
    assert calls < 100, calls
    mux.remove(b.fileno())
    a.close()
    b.close()


def test_one_publisher_never_ticks() -> None:
    # A 720p30 publisher: a frame every 33 ms in up to three parts 0.1 ms apart, audio every
    # 21 ms; ~120 readiness wake-ups a second are cheaper than 200 ticks at 5 ms.
    policy = TickPolicy(0.005)
    arrivals = sorted(
        [f / 30 + part * 0.0001 for f in range(300) for part in range(3)]
        + [a * 1024 / 48000 for a in range(470)]
    )
    assert not any(policy.woke(t, 1) for t in arrivals)


def test_many_publishers_tick_until_ticks_find_little() -> None:
    policy = TickPolicy(0.005)
    now = 0.0
    wakes = 0
    while not policy.woke(now, 1):  # ten publishers: a wake-up every ~0.8 ms
        now += 0.0008
        wakes += 1
    assert wakes < 20
    for _ in range(200):  # each tick finds several sockets: keeps ticking
        now += 0.005
        assert policy.woke(now, 5)
    # Load falls to one socket every other tick: ticks no longer save wake-ups.
    left = next(i for i in range(100) if not policy.woke(now + i * 0.005, i % 2))
    assert left < 40
    assert not policy.ticking
