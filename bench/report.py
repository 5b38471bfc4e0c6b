"""Output of every scenario: a table for people and JSON for machines (stdout and a file)."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
JSON_MARKER = "--- json ---"


@dataclass
class Table:
    """Rows of (group, metric, {target: value}) printed as ``ours / nginx-rtmp`` columns."""

    title: str
    columns: list[str]  # target labels
    group_name: str = ""
    rows: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def add(self, group: object, metric: str, values: dict[str, Any]) -> None:
        self.rows.append((str(group), metric, values))

    def render(self) -> str:
        head = [self.group_name, "metric", *self.columns]
        body = [[g, m, *(fmt(v.get(c)) for c in self.columns)] for g, m, v in self.rows]
        widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
        lines = [self.title, "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
        lines.append("  ".join("-" * w for w in widths))
        for r in body:
            lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
        return "\n".join(lines)


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def layout_line(cpus: dict[str, Any]) -> str:
    """Where the server and the load ran, in words."""
    if cpus.get("server") is None:
        return "server not pinned: it shares every CPU with the publishers, clients and bench"
    if cpus.get("shared"):
        return f"server on CPUs {cpus['server']}, shared with the publishers, clients and bench"
    return f"server on CPUs {cpus['server']}; publishers, clients, bench on {cpus['clients']}"


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def emit(
    scenario: str, result: dict[str, Any], table: Table, results_dir: Path | None = None
) -> Path:
    """Print the table and the JSON; write the JSON to ``results_dir``; return that path."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    doc = {
        "scenario": scenario,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(sys.argv),
        "machine": machine(),
        **result,
    }
    directory = results_dir or RESULTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{scenario}-{stamp}.json"
    text = json.dumps(doc, indent=2, sort_keys=True, default=str)
    path.write_text(text + "\n")
    print(table.render())
    layouts = result.get("layouts") or {}
    if layouts and any(v != result.get("cpus") for v in layouts.values()):
        for column, cpus in layouts.items():  # columns with their own cpus=
            print(f"{column}: {layout_line(cpus)}")
    else:
        print(f"({layout_line(result.get('cpus') or {})})")
    print(JSON_MARKER)
    print(text)
    print(f"(written to {path})", file=sys.stderr)
    return path
