"""Issue 5 figure, firstframe: time from an RTMP play request to the first media and to the first
video keyframe, for a player joining a live stream at a random point of the GOP.

The player is a minimal RTMP client built from the project's sans-IO layers (handshake, chunk codec,
AMF0), so no player start-up or probing is counted: the clock starts when ``play`` is written and
stops when the message arrives. A server with a GOP cache answers a join at once; one without it
makes the player wait for the next keyframe (up to a GOP, 2 s with the fixtures).
"""

from __future__ import annotations

import random
import statistics
from pathlib import Path
from typing import Any

import trio

from bench import publish
from bench.procs import Procs
from bench.report import Table
from bench.targets import APP, LABELS, open_target, run_each
from gateway.rtmp import messages as m
from gateway.rtmp.chunk import ChunkDecoder, ChunkEncoder, RawMessage
from gateway.rtmp.handshake import ClientHandshake
from gateway.rtmp.limits import Limits

TRIAL_TIMEOUT = 10.0  # seconds one join may take before it counts as failed
S0S1S2 = 3073  # §5.2.3: S0 (1) + S1 (1536) + S2 (1536)


def _command(name: str, txn: float, obj: Any, *args: Any) -> bytes:
    return m.encode_command(m.Command(name, txn, obj, args))


async def _messages(sock: trio.SocketStream, dec: ChunkDecoder) -> RawMessage:
    while (raw := dec.next_message()) is None:
        data = await sock.receive_some(65536)
        if not data:
            raise RuntimeError("server closed the connection")
        dec.feed(data)
    return raw


async def join(port: int, key: str) -> tuple[float, float]:
    """One play: seconds from writing ``play`` to the first media message and first keyframe."""
    sock = await trio.open_tcp_stream("127.0.0.1", port)
    async with sock:
        hs = ClientHandshake()
        await sock.send_all(hs.c0c1())
        buf = bytearray()
        while len(buf) < S0S1S2:
            buf += await sock.receive_some(65536)
        enc, dec = ChunkEncoder(128), ChunkDecoder(Limits())
        dec.feed(bytes(buf[S0S1S2:]))
        tc_url = f"rtmp://127.0.0.1:{port}/{APP}"
        connect = {"app": APP, "tcUrl": tc_url, "flashVer": "LNX 9,0,124,2", "fpad": False}
        await sock.send_all(
            hs.c2(bytes(buf[:S0S1S2]))
            + enc.encode(3, 0, m.COMMAND_AMF0, 0, _command("connect", 1.0, connect))
            + enc.encode(3, 0, m.COMMAND_AMF0, 0, _command("createStream", 2.0, None))
        )
        stream_id = None
        while stream_id is None:
            raw = await _messages(sock, dec)
            if raw.type_id == m.COMMAND_AMF0:
                cmd = m.decode_command(raw.type_id, raw.body, Limits().amf)
                if cmd.name == "_result" and cmd.transaction_id == 2.0:
                    stream_id = int(cmd.args[0])
        start = trio.current_time()
        await sock.send_all(
            enc.encode(8, 0, m.COMMAND_AMF0, stream_id, _command("play", 0.0, None, key, -1000.0))
        )
        first_media: float | None = None
        while True:
            raw = await _messages(sock, dec)
            body = raw.body
            if raw.type_id not in (8, 9) or len(body) < 2:
                continue
            header = (raw.type_id == 9 and body[1] == 0) or (raw.type_id == 8 and body[1] == 0)
            if header:
                continue
            now = trio.current_time() - start
            first_media = now if first_media is None else first_media
            if raw.type_id == 9 and (body[0] >> 4) & 7 == 1:
                return first_media, now


async def run_one(target_name: str, opts: Any, fixture: Path, workdir: Path) -> dict[str, Any]:
    logdir = workdir / f"{target_name}-logs"
    media: list[float] = []
    keyframe: list[float] = []
    failed = 0
    rng = random.Random(1)
    async with Procs() as procs, open_target(
        target_name, procs, workdir / target_name,
        target_duration=opts.target_duration, nginx_workers=opts.nginx_workers, cpus=opts.cpus,
    ) as target:  # fmt: skip
        await publish.publish_one(procs, target, fixture, "ff", logdir)
        for _ in range(opts.trials):
            await trio.sleep(rng.uniform(0.2, 2.2))  # land anywhere in a 2 s GOP
            try:
                with trio.fail_after(TRIAL_TIMEOUT):
                    first, key = await join(target.rtmp_port, "ff")
            except (trio.TooSlowError, RuntimeError, OSError):
                failed += 1
                continue
            media.append(first)
            keyframe.append(key)
    return {"target": target_name, "first_media_s": media, "first_keyframe_s": keyframe,
            "failed": failed}  # fmt: skip


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "max_ms": None}
    return {
        "p50_ms": round(1000 * statistics.median(values), 1),
        "max_ms": round(1000 * max(values), 1),
    }


async def run(
    opts: Any, targets: list[str], fixture: Path, workdir: Path
) -> tuple[dict[str, Any], Table]:
    runs = await run_each(run_one, targets, opts, fixture, workdir)
    cols = [LABELS[t] for t in targets]
    table = Table(f"firstframe: play request -> first frame, {fixture.name}", cols, "measure")
    by = {r["target"]: {"first_media_s": [], "first_keyframe_s": [], "failed": None, **r}
          for r in runs}  # fmt: skip
    for field, label in (("first_media_s", "first media"), ("first_keyframe_s", "first keyframe")):
        for stat in ("p50_ms", "max_ms"):
            table.add(
                f"{label} {stat}",
                "ms",
                {LABELS[t]: _stats(by[t][field])[stat] for t in targets},
            )
    table.add("joins failed", "", {LABELS[t]: by[t]["failed"] for t in targets})
    for r in runs:
        if "error" not in r:
            r["summary"] = {k: _stats(r[k]) for k in ("first_media_s", "first_keyframe_s")}
    params = {"trials": opts.trials, "fixture": str(fixture), "targets": targets}
    return {"params": params, "runs": runs}, table
