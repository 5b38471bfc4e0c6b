"""Child processes the bench owns, and what /proc says about the server's cost.

Every process started through :class:`Procs` is terminated when its ``async with`` block ends, also
on Ctrl-C or an exception, so no publisher or server outlives a run.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

import trio

# Seconds a process gets to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 5.0
# Seconds a server gets to accept TCP connections after it was started.
READY_TIMEOUT = 20.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Procs:
    """Owner of child processes: ``async with Procs() as procs: await procs.start(...)``."""

    running: list[trio.Process] = field(default_factory=list)
    _logs: list[IO[bytes]] = field(default_factory=list)

    async def start(
        self, args: list[str], *, log: Path | None = None, env: dict[str, str] | None = None
    ) -> trio.Process:
        """Start ``args``; ``env`` is added to the bench's own environment."""
        out: IO[bytes] | int = subprocess.DEVNULL
        if log is not None:
            out = log.open("ab")
            self._logs.append(out)
        proc = await trio.lowlevel.open_process(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env={**os.environ, **env} if env else None,
        )
        self.running.append(proc)
        return proc

    async def stop(self, proc: trio.Process, sig: int = signal.SIGTERM) -> int | None:
        """Signal ``proc`` and wait for it (killed after STOP_TIMEOUT); returns its exit code."""
        if proc.returncode is None:
            proc.send_signal(sig)
            with trio.move_on_after(STOP_TIMEOUT):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        if proc in self.running:
            self.running.remove(proc)
        return proc.returncode

    async def stop_all(self) -> None:
        procs = list(self.running)
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        with trio.CancelScope(shield=True):
            for proc in procs:
                await self.stop(proc)
            for f in self._logs:
                f.close()
            self._logs.clear()

    async def __aenter__(self) -> Procs:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop_all()


def free_port() -> int:
    """A TCP port free on loopback right now (the server binds it a moment later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_tcp(port: int, proc: trio.Process) -> None:
    """Wait until something accepts on 127.0.0.1:port; fail early if ``proc`` died."""
    with trio.fail_after(READY_TIMEOUT):
        while True:
            if proc.returncode is not None:
                raise RuntimeError(f"server exited with {proc.returncode} before listening")
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(0.05)
                continue
            await stream.aclose()
            return


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children, ...): a gateway with
    ``workers`` > 1 is a supervisor and its worker processes, and whatever those start."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        parents.setdefault(int(fields[1]), []).append(int(entry))
    out: list[int] = []
    todo = [pid]
    while todo:
        below = parents.get(todo.pop(), [])
        out += below
        todo += below
    return out


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of ``pids`` (proc(5) fields 14 and 15), in seconds."""
    ticks = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue  # exited: its CPU is lost to this sample
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks += int(fields[11]) + int(fields[12])  # fields after "(comm) ": state is [0]
    return ticks / CLK_TCK


def memory_kib(pids: list[int]) -> tuple[int, int]:
    """(VmRSS, VmHWM) summed over ``pids``, KiB (proc(5) /proc/pid/status)."""
    rss = hwm = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm += int(line.split()[1])
    return rss, hwm


def pss_kib(pids: list[int]) -> int:
    """Proportional set size summed over ``pids``, KiB (/proc/pid/smaps_rollup): pages shared
    between processes (the interpreter and libraries of several workers) counted once, not once
    per process as VmRSS sums count them."""
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1])
                break
    return total
