"""``gateway`` command line: ``gateway run`` starts RTMP ingest and HTTP in one process."""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from functools import partial
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
    sign = commands.add_parser(
        "sign",
        help="print a playback URL signed with playback_secret that works until it expires",
        description="Settings (playback_secret, host, http_port, tls_cert) come from defaults < "
        "--config FILE < GATEWAY_* environment, as for `gateway run`.",
    )
    sign.add_argument("stream", metavar="APP/KEY", help="the stream the link opens")
    sign.add_argument(
        "--ttl", default="1h", help="how long the link works: 90s, 30m, 12h, 7d (default 1h)"
    )
    sign.add_argument("--config", metavar="FILE", help="TOML file with settings")
    sign.add_argument(
        "--base-url",
        metavar="URL",
        help="where viewers reach the gateway, e.g. https://live.example.com "
        "(default: from host, http_port and tls_cert)",
    )
    sign.add_argument(
        "--page", action="store_true", help="the player page's URL instead of the playlist's"
    )
    return parser


_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``12h``, ``7d`` -> seconds (positive)."""
    text = text.strip().lower()
    unit = _TTL_UNITS.get(text[-1:])
    number = text[:-1] if unit is not None else text
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < 10 * 365 * 86400:  # NaN fails too
        raise ValueError(
            f"--ttl: a positive duration under ten years like 90s, 30m, 12h or 7d, got {text!r}"
        )
    return seconds


def sign_command(args: argparse.Namespace) -> int:
    from gateway.auth import PlaybackSigner
    from segmenter.names import valid_name

    app, _, key = args.stream.strip("/").partition("/")
    if not (valid_name(app) and valid_name(key)):
        print(f"gateway sign: expected APP/KEY, got {args.stream!r}", file=sys.stderr)
        return 2
    try:
        ttl = parse_ttl(args.ttl)
        settings = load_settings(config_file=args.config)
    except (ValueError, ConfigError) as exc:
        print(f"gateway sign: {exc}", file=sys.stderr)
        return 2
    if not settings.playback_secret:
        print(
            "gateway sign: set playback_secret (the same value as the running gateway's) so "
            "the link can be checked",
            file=sys.stderr,
        )
        return 2
    base = args.base_url
    if not base:
        scheme = "https" if settings.tls_cert else "http"
        host = settings.host if settings.host not in ("", "0.0.0.0", "::") else "localhost"
        host = f"[{host}]" if ":" in host else host
        base = f"{scheme}://{host}:{settings.http_port}"
    expires = math.ceil(time.time() + ttl)
    token = PlaybackSigner(settings.playback_secret.encode()).sign(app, key, expires, "")
    target = "" if args.page else "index.m3u8"
    print(f"{base.rstrip('/')}/{app}/{key}/{target}?token={token}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "sign":
        return sign_command(args)
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
        # SIGHUP reads the same sources again: the file, the environment and these flags.
        reloader = partial(load_settings, config_file=args.config, overrides=overrides)
        trio.run(partial(run_gateway, settings, reloader=reloader))
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
