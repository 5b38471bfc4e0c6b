"""``python -m gateway.worker BUS_FD CONN_FD``: one worker process, started by the supervisor
(gateway.supervisor) with the two ends of its link inherited. It runs the whole gateway
(gateway.app.run_gateway) with the link: RTMP connections come from the supervisor, HTTP is
bound beside the other workers (SO_REUSEPORT)."""

from __future__ import annotations

import logging
import socket
import sys
from functools import partial

import trio

from gateway.logs import setup_logging

log = logging.getLogger("gateway")


async def _main(bus_fd: int, conn_fd: int) -> None:
    from gateway.app import run_gateway
    from gateway.cluster import Cluster

    bus_sock = socket.socket(fileno=bus_fd)
    conn_sock = socket.socket(fileno=conn_fd)
    cluster = Cluster(bus_sock, conn_sock)
    start = await cluster.read_start()
    settings = start.settings
    cluster.configure(
        queue=settings.worker_bus_queue, request_timeout=settings.worker_request_timeout
    )
    setup_logging(settings.log_format, settings.log_level, worker=start.index)
    await run_gateway(settings, cluster=cluster)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(
            "usage: python -m gateway.worker BUS_FD CONN_FD (started by `gateway run`)",
            file=sys.stderr,
        )
        return 2
    trio.run(partial(_main, int(argv[0]), int(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
