"""Optional playlist hammer with ``wrk`` (Debian package): the server's request ceiling.

Python viewers measure realistic players but saturate the bench process first; wrk (C, epoll) asks
as fast as the server answers, on ``--viewers`` connections, so its figures are the server's.
"""

from __future__ import annotations

import re
import shutil
from typing import Any

import trio

WRK = "wrk"
WRK_THREADS = 1  # one core for the client leaves the other to the server (2-core CI machines)
# Seconds of slack over the run length before wrk is killed.
WRK_SLACK = 15.0
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
_SIZE = {"B": 1e-6, "KB": 1e-3, "MB": 1.0, "GB": 1e3}


def available() -> bool:
    return shutil.which(WRK) is not None


def _ms(text: str) -> float | None:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return round(float(m.group(1)) * _UNITS[m.group(2)], 2) if m else None


def parse(out: str) -> dict[str, Any]:
    """Figures of ``wrk --latency`` output."""
    res: dict[str, Any] = {}
    if m := re.search(r"Requests/sec:\s+([\d.]+)", out):
        res["requests_per_s"] = float(m.group(1))
    if m := re.search(r"Transfer/sec:\s+([\d.]+)(B|KB|MB|GB)", out):
        res["mb_per_s"] = round(float(m.group(1)) * _SIZE[m.group(2)], 2)
    for pct in ("50", "99"):
        if m := re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out, re.M):
            res[f"p{pct}_ms"] = _ms(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    res["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    return res


async def hammer(
    url: str, connections: int, seconds: float, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """``headers``: sent with every request (wrk sends none of its own but Host)."""
    extra = [arg for name, value in (headers or {}).items() for arg in ("-H", f"{name}: {value}")]
    args = [WRK, f"-t{WRK_THREADS}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
            "--latency", *extra, url]  # fmt: skip
    with trio.fail_after(seconds + WRK_SLACK):
        proc = await trio.run_process(args, capture_stdout=True, capture_stderr=True, check=False)
    out = proc.stdout.decode(errors="replace")
    return {"returncode": proc.returncode, **parse(out)}
