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

from gateway.config import ConfigError, Settings, load_settings, worker_count
from gateway.logs import setup_logging
from segmenter import native

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
    health = commands.add_parser(
        "health",
        help="exit 0 if the gateway on this host answers /healthz with 200, else 1 (the reason "
        "on stderr): a container or service-manager health check",
        description="Settings (host, http_port, tls_cert) come from defaults < --config FILE < "
        "GATEWAY_* environment, as for `gateway run`: give it the same file.",
    )
    health.add_argument("--config", metavar="FILE", help="TOML file with settings")
    health.add_argument(
        "--timeout", type=float, default=2.0, help="seconds to wait for the answer (default 2)"
    )
    return parser


def health_command(args: argparse.Namespace) -> int:
    """GET /healthz of the gateway these settings describe. Exit 1 on anything but a 200 (a
    container engine reads 1 as unhealthy and reserves 2), the reason on stderr."""
    import http.client
    import ssl
    import urllib.error
    import urllib.request

    try:
        settings = load_settings(config_file=args.config)
    except ConfigError as exc:
        print(f"gateway health: configuration error: {exc}", file=sys.stderr)
        return 1
    # A wildcard bind is reached on loopback; a specific address where it listens.
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(settings.host, settings.host)
    host = f"[{host}]" if ":" in host else host
    scheme = "https" if settings.tls_cert else "http"
    url = f"{scheme}://{host}:{settings.http_port}/healthz"
    # Whether this process answers, not whether its certificate names this address.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    try:
        with opener.open(url, timeout=args.timeout) as answer:
            status, body = answer.status, answer.read(4096)
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read(4096)
    except (OSError, ValueError, http.client.HTTPException) as exc:  # refused, timed out, not HTTP
        print(f"gateway health: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        text = body.decode("utf-8", "replace").strip()
        print(f"gateway health: {url} answered {status}: {text}", file=sys.stderr)
        return 1
    return 0


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
    if args.command == "health":
        return health_command(args)
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
    fallback = native.fallback_warning()
    if fallback:
        log.warning(fallback)
    slow = native.interpreted()
    if slow and not fallback:
        why = (
            f"{native.PURE_ENV} is set"
            if native.pure_requested()
            else "install with a C compiler to compile them"
        )
        log.warning(
            "%d per-message modules run as pure Python, not compiled with mypyc (%s): ingest "
            "costs more CPU per stream",
            len(slow),
            why,
        )
    from gateway.app import run_gateway  # heavy imports (PyAV, Quart) only when running
    from gateway.supervisor import run_supervisor

    failed = False
    try:
        # SIGHUP reads the same sources again: the file, the environment and these flags.
        reloader = partial(load_settings, config_file=args.config, overrides=overrides)
        workers = worker_count(settings)
        if workers > 1:
            trio.run(partial(run_supervisor, settings, workers, reloader=reloader))
        else:
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
