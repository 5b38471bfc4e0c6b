"""Record the raw client->server bytes of a real publish session, for golden replay tests.

    .venv/bin/python -m tests.captures.record imageio tests/captures/ffmpeg9-publish.rtmp
    .venv/bin/python -m tests.captures.record apt tests/captures/ffmpeg51-publish.rtmp
    .venv/bin/python -m tests.captures.record imageio tests/captures/ffmpeg9-publish-flac.rtmp flac
    .venv/bin/python -m tests.captures.record imageio tests/captures/ffmpeg9-publish-ac3.rtmp ac3

The optional third argument is the audio encoder, instead of AAC.

A recording TCP proxy sits between a real FFmpeg and the gateway; only what the client sent is kept.
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from gateway.config import Settings
from gateway.hub import Hub
from gateway.metrics import Metrics
from gateway.server import serve_rtmp
from tests.clients import apt_ffmpeg_exe, imageio_ffmpeg_exe, publish_args, run_client


async def record(client: str, audio_codec: str = "aac") -> bytes:
    exe = imageio_ffmpeg_exe() if client == "imageio" else apt_ffmpeg_exe()
    settings = Settings(host="127.0.0.1", rtmp_port=0, http_port=0)
    captured = bytearray()
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(serve_rtmp, settings, Hub(), Metrics())
        upstream_port = bound[0][1]

        async def proxy(client_sock: trio.SocketStream) -> None:
            server = await trio.open_tcp_stream("127.0.0.1", upstream_port)

            async def pump(src: trio.SocketStream, dst: trio.SocketStream, keep: bool) -> None:
                try:
                    while data := await src.receive_some(65536):
                        if keep:
                            captured.extend(data)
                        await dst.send_all(data)
                    await dst.send_eof()
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass

            async with trio.open_nursery() as inner:
                inner.start_soon(pump, client_sock, server, True)
                inner.start_soon(pump, server, client_sock, False)

        listeners = await nursery.start(trio.serve_tcp, proxy, 0)
        port = listeners[0].socket.getsockname()[1]
        url = f"rtmp://127.0.0.1:{port}/live/golden"
        args = publish_args(exe, url, seconds=1.5, size="160x120", rate=15, gop=15)
        if audio_codec != "aac":
            args[args.index("aac") - 1 : args.index("aac") + 3] = ["-c:a", audio_codec]
        result = await run_client(args, timeout=30)
        assert result.returncode == 0, result.stderr.decode()
        await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    return bytes(captured)


if __name__ == "__main__":
    out = Path(sys.argv[2])
    codec = sys.argv[3] if len(sys.argv) > 3 else "aac"
    out.write_bytes(trio.run(record, sys.argv[1], codec))
    print(f"{out}: {out.stat().st_size} bytes")
