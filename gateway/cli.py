"""``gateway`` command line: ``gateway run`` starts RTMP ingest and HTTP in one process."""

from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import trio

from gateway import native
from gateway.config import ConfigError, Settings, load_settings
from gateway.logs import setup_logging

log = logging.getLogger("gateway")


def _version() -> str:
    try:
        return version("rtmp-hls-gateway")
    except PackageNotFoundError:  # running from a source tree without install
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="RTMP ingest to live HLS gateway.")
    parser.add_argument("--version", action="version", version=f"gateway {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="serve RTMP ingest and HTTP (HLS, player, API, metrics)",
        description="Settings come from defaults < --config FILE < GATEWAY_* environment < flags.",
    )
    run.add_argument("--config", metavar="FILE", help="TOML file with settings")
    for f in Settings.fields():
        kind = {"int": int, "float": float}.get(str(f.type), str)
        run.add_argument(
            f"--{f.name.replace('_', '-')}",
            dest=f.name,
            type=kind,
            default=None,
            metavar=f.name.upper(),
            help=f"{f.metadata['doc']} (default: {f.default!r})",
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "run":
        parser.print_help()
        return 2
    overrides: dict[str, Any] = {f.name: getattr(args, f.name) for f in Settings.fields()}
    try:
        settings = load_settings(config_file=args.config, overrides=overrides)
    except ConfigError as exc:
        print(f"gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_format, settings.log_level)
    stale = native.stale()
    if stale:
        print(
            f"gateway: the compiled {', '.join(stale)} is older than its source, so the old code "
            "would run: rebuild with `make setup` (or `pip install -e .`)",
            file=sys.stderr,
        )
        return 2
    slow = native.interpreted()
    if slow:
        log.warning(
            "%d per-message modules run as pure Python, not compiled with mypyc (install with a "
            "C compiler to compile them): ingest costs more CPU per stream",
            len(slow),
        )
    from gateway.app import run_gateway  # heavy imports (PyAV, Quart) only when running

    failed = False
    try:
        trio.run(run_gateway, settings)
    except* OSError as group:  # a port in use, an unwritable --hls-dir: say so, no traceback
        failed = True
        for cause in _leaves(group):
            print(f"gateway: cannot start: {cause}", file=sys.stderr)
    return 1 if failed else 0


def _leaves(group: BaseExceptionGroup[OSError]) -> list[OSError]:
    out: list[OSError] = []
    for inner in group.exceptions:
        out += _leaves(inner) if isinstance(inner, BaseExceptionGroup) else [inner]
    return out


if __name__ == "__main__":
    sys.exit(main())
