"""Several configurations of a target side by side in one run (``--formats``, ``--ours-env``).

A configuration is a target plus, for ours, GATEWAY_HLS_FORMATS and more GATEWAY_* settings, and
optionally CPUs of its own: ``--ours-env GATEWAY_WORKERS=1,cpus=0 --ours-env
GATEWAY_WORKERS=2,cpus=0-1`` runs one worker on CPU 0 (the load on the other CPUs) and then two
workers on CPUs 0-1 (sharing them with the load), each column with its own layout. A CPU list
there is written with ``+`` (``cpus=0+2``): commas separate the settings.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from bench import cpus
from bench.targets import LABELS

# The --ours-env key that is the bench's own (the server's CPUs for that column), not a setting.
CPUS_KEY = "cpus"


def parse_env(text: str) -> tuple[dict[str, str], str | None]:
    """``K=V,K=V`` of --ours-env: (GATEWAY_* settings, the ``cpus=`` layout or None)."""
    pairs = [item.partition("=") for item in text.split(",") if item.strip()]
    keys = [k.strip() for k, _, _ in pairs]
    if not pairs or any(
        not eq or not (k.startswith("GATEWAY_") or k == CPUS_KEY)
        for k, (_, eq, _) in zip(keys, pairs, strict=True)
    ):
        raise ValueError(f"--ours-env wants GATEWAY_KEY=VALUE[,...][,cpus=LIST], got {text!r}")
    settings = {k: v.strip() for k, (_, _, v) in zip(keys, pairs, strict=True) if k != CPUS_KEY}
    layout = next((v.strip() for k, (_, _, v) in zip(keys, pairs, strict=True) if k == CPUS_KEY),
                  None)  # fmt: skip
    return settings, layout


@dataclass(frozen=True)
class RunConfig:
    target: str
    formats: str | None = None  # ours: GATEWAY_HLS_FORMATS
    env: str | None = None  # ours: the --ours-env text

    @property
    def settings(self) -> dict[str, str] | None:
        if self.env is None:
            return None
        return parse_env(self.env)[0] or None

    @property
    def cpus(self) -> str | None:
        """This column's --server-cpus, if it has its own."""
        return parse_env(self.env)[1] if self.env is not None else None

    @property
    def column(self) -> str:
        """``ours[ts]`` for ours with --formats ts, ``ours{WORKERS=2,cpus=0-1}`` with
        --ours-env, else the label."""
        label = LABELS[self.target]
        if self.formats is not None:
            label += f"[{self.formats}]"
        if self.env is not None:
            items = [i.strip().removeprefix("GATEWAY_") for i in self.env.split(",") if i.strip()]
            label += "{" + ",".join(items) + "}"
        return label

    @property
    def tag(self) -> str:
        """A file-name-safe name of the configuration (work directories)."""
        tag = self.target
        if self.formats:
            tag += "-" + self.formats.replace(",", "+")
        if self.env is not None:
            tag += "-" + "".join(c if c.isalnum() else "_" for c in self.env)
        return tag

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"target": self.target, "column": self.column}
        if self.formats is not None:
            out["formats"] = self.formats
        if self.env is not None:
            out["env"] = self.env
        return out


def configs(opts: Any, targets: list[str]) -> list[RunConfig]:
    """Ours once per --formats value and per --ours-env value; every other target once. A
    typo in --ours-env or a cpus= layout stops the bench before any run."""
    envs: list[str | None] = list(getattr(opts, "ours_env", None) or [None])
    out: list[RunConfig] = []
    for name in targets:
        if name != "ours":
            out.append(RunConfig(name))
            continue
        formats_list: list[str | None] = list(getattr(opts, "formats", None) or [None])
        out += [RunConfig(name, f, e) for f in formats_list for e in envs]
    try:
        for config in out:
            if config.env is not None and config.cpus is not None:
                cpus.plan(config.cpus, allowed(opts))
    except ValueError as exc:
        raise SystemExit(f"bench: {exc}") from None
    return out


def allowed(opts: Any) -> frozenset[int]:
    """The CPUs the bench was started with (before it moved itself to the client CPUs)."""
    found = getattr(opts, "allowed_cpus", None)
    return frozenset(found) if found is not None else frozenset(os.sched_getaffinity(0))


def plan(opts: Any, config: RunConfig) -> cpus.CpuPlan:
    """The layout of ``config``: its own cpus= if given, else --server-cpus."""
    if config.cpus is None:
        plan: cpus.CpuPlan = opts.cpus
        return plan
    return cpus.plan(config.cpus, allowed(opts))


@contextmanager
def clients_on(opts: Any, layout: cpus.CpuPlan) -> Iterator[None]:
    """Run the bench (and so every publisher and client it starts) on ``layout``'s client
    CPUs for the block; back to where it was afterwards."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, layout.clients if layout.clients is not None else allowed(opts))
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
