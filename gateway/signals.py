"""The process signals `gateway run` answers, as nginx and SRS do: SIGHUP reloads the
configuration, SIGINT and SIGTERM stop gracefully."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable

import trio


async def watch_signals(
    stop: trio.Event, reload: Callable[[], object], log: logging.Logger, *, whom: str = ""
) -> None:
    """Call ``reload`` at each SIGHUP; set ``stop`` at the first SIGINT/SIGTERM and return.
    ``whom``: what is reloaded or stopped, for the log line ("" for this process)."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async for signum in signals:
            if signum == signal.SIGHUP:
                log.info("received SIGHUP: reloading the configuration%s", whom)
                reload()
                continue
            log.info("received %s: shutting down%s", signal.Signals(signum).name, whom)
            stop.set()
            return
