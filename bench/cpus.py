"""Which CPUs the server under test and the load generators run on.

"N streams on one core" (issue 6) is about the server: with 100 FFmpeg publishers, the bench and
the server sharing every core, the server is preempted by its own load (over 1000 times a second
at 100 publishers) and a figure says as much about the clients as about it. By default the server
(ours or nginx, and every thread or worker of it) gets the first allowed CPU to itself and
everything the bench starts runs on the others: the layout of a real gateway, whose publishers
are elsewhere. ``--server-cpus none`` measures them all sharing the machine, as before.

A server given every allowed CPU (``--server-cpus 0-1`` on a 2-CPU machine, for two worker
processes) shares them with the load: there is no CPU left to put it elsewhere, and the layout
says so (``shared``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class CpuPlan:
    server: frozenset[int] | None  # None: not pinned
    clients: frozenset[int] | None

    def server_prefix(self) -> list[str]:
        """Command prefix that starts a server on its CPUs (inherited by its threads and forks)."""
        if self.server is None:
            return []
        return ["taskset", "--cpu-list", ",".join(map(str, sorted(self.server)))]

    @property
    def shared(self) -> bool:
        """Whether the load runs on the server's CPUs too."""
        return self.server is None or self.clients is None or bool(self.server & self.clients)

    def server_count(self, allowed: frozenset[int] | None = None) -> int:
        """CPUs the server may use (all allowed ones when not pinned)."""
        if self.server is not None:
            return len(self.server)
        return len(allowed if allowed is not None else os.sched_getaffinity(0))

    def describe(self) -> dict[str, list[int] | bool | None]:
        return {
            "server": sorted(self.server) if self.server is not None else None,
            "clients": sorted(self.clients) if self.clients is not None else None,
            "shared": self.shared,
        }


def _parse(spec: str) -> frozenset[int]:
    cpus: set[int] = set()
    # "+" separates too: inside --ours-env a comma already separates settings.
    for part in spec.replace("+", ",").split(","):
        lo, _, hi = part.strip().partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return frozenset(cpus)


def plan(spec: str, allowed: frozenset[int] | None = None) -> CpuPlan:
    """``auto``: the first allowed CPU for the server, the rest for clients (no pinning on one
    CPU); ``none``: no pinning; else a CPU list such as ``0`` or ``0-1`` for the server (the
    clients get the other CPUs, or share the server's when it has them all)."""
    allowed = allowed if allowed is not None else frozenset(os.sched_getaffinity(0))
    if spec == "none":
        return CpuPlan(None, None)
    if spec == "auto":
        if len(allowed) < 2:
            return CpuPlan(None, None)
        server = frozenset({min(allowed)})
    else:
        server = _parse(spec)
        if not server <= allowed:
            missing = sorted(server - allowed)
            raise ValueError(f"--server-cpus {spec}: CPUs {missing} are not allowed here")
    # Nothing left: the load shares the server's CPUs (two workers on a 2-CPU machine).
    clients = (allowed - server) or server
    return CpuPlan(server, clients)
