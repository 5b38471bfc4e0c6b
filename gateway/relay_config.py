"""Push relay configuration, pure: the ``push`` setting's rules, target URLs and the backoff.

Grammar of ``Settings.push``: entries ``SELECTOR=URL`` separated by whitespace or commas.
SELECTOR is an app (every key of it) or ``app/key``; URL is ``rtmp[s]://host[:port]/app/name``
and may contain ``{app}`` and ``{key}``. Errors are ConfigError naming the entry, so
``gateway run`` fails at start (gateway.config calls :func:`parse_push`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from gateway.errors import ConfigError
from gateway.rtmp.limits import Limits
from segmenter.names import valid_name

__all__ = [
    "Backoff",
    "PullRule",
    "PushRule",
    "RelayConfig",
    "Target",
    "parse_pull",
    "parse_push",
    "parse_target",
]

RELAY_QUEUE = 1024  # tags queued per relay (~10 s at 30 fps + audio), as for an RTMP player
SETUP_TIMEOUT = 10.0  # s for TCP (+TLS) + handshake + connect + publish at the target
STOP_TIMEOUT = 2.0  # s to send FCUnpublish/deleteStream when the source's session ends
BACKOFF_INITIAL = 1.0  # s before the first retry of a refused or dropped target
BACKOFF_MAX = 30.0  # s, the cap of the doubling
BACKOFF_FACTOR = 2.0
BACKOFF_JITTER = 0.2  # +-20 %: relays to one target that failed together do not retry together
DEFAULT_PORTS = {"rtmp": 1935, "rtmps": 443}
ENTRY_SPLIT = re.compile(r"[\s,]+")  # between entries of the push and pull settings
_PLACEHOLDERS = ("{app}", "{key}")


@dataclass(frozen=True)
class Target:
    """Where a relay publishes: rtmp[s]://host[:port]/app[/inst...]/name[?query]."""

    scheme: str
    host: str
    port: int
    app: str
    name: str  # last path component, query kept (stream keys often live there)
    tc_url: str

    def label(self, key: str) -> str:
        """For logs, the API and metrics: the stream name is often a secret (a platform's
        stream key), so it is shown only when it is our own, already public, key."""
        shown = self.name if self.name == key else "<redacted>"
        return f"{self.tc_url}/{shown}"


def parse_target(url: str) -> Target:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ConfigError(f"{url!r}: only rtmp:// and rtmps:// URLs can be pushed to")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ConfigError(f"{url!r}: invalid port") from None
    if not host:
        raise ConfigError(f"{url!r}: no host")
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) < 2:
        raise ConfigError(f"{url!r}: the path must be /APP/STREAM")
    app, name = "/".join(segments[:-1]), segments[-1]
    netloc = f"[{host}]" if ":" in host else host
    netloc += f":{port}" if port is not None else ""
    query = f"?{parts.query}" if parts.query else ""
    port = port if port is not None else DEFAULT_PORTS[scheme]
    return Target(scheme, host, port, app, name + query, f"{scheme}://{netloc}/{app}")


@dataclass(frozen=True)
class PushRule:
    app: str
    key: str | None  # None: every key of the app
    url: str  # may hold {app} and {key}

    def matches(self, app: str, key: str) -> bool:
        return self.app == app and self.key in (None, key)

    def target_url(self, app: str, key: str) -> str:
        return self.url.replace("{app}", app).replace("{key}", key)


def parse_push(text: str) -> list[PushRule]:
    """Parse and validate ``Settings.push`` (grammar in the module docstring)."""
    rules = []
    for entry in ENTRY_SPLIT.split(text.strip()):
        if not entry:
            continue
        where = f"push: entry {entry!r}"
        selector, sep, url = entry.partition("=")
        if not sep or not url:
            raise ConfigError(f"{where}: expected SELECTOR=URL, e.g. live=rtmp://host/live/{{key}}")
        app, _, key = selector.partition("/")
        if not valid_name(app) or (key and not valid_name(key)):
            raise ConfigError(f"{where}: selector must be APP or APP/KEY (A-Z a-z 0-9 _ -)")
        bare = url
        for p in _PLACEHOLDERS:
            bare = bare.replace(p, "")
        if "{" in bare or "}" in bare:
            raise ConfigError(f"{where}: only {{app}} and {{key}} placeholders are known")
        rule = PushRule(app, key or None, url)
        try:
            parse_target(rule.target_url(app, key or "key"))
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        rules.append(rule)
    return rules


@dataclass(frozen=True)
class Backoff:
    initial: float = BACKOFF_INITIAL
    maximum: float = BACKOFF_MAX
    factor: float = BACKOFF_FACTOR
    jitter: float = BACKOFF_JITTER

    def delay(self, failures: int, rand: float) -> float:
        """Seconds to wait after ``failures`` consecutive failures (>= 1); ``rand`` in [0, 1)."""
        exponent = min(max(failures - 1, 0), 64)  # bounded: no float overflow
        base = min(self.maximum, self.initial * self.factor**exponent)
        return min(self.maximum, base * (1 + self.jitter * (2 * rand - 1)))


@dataclass(frozen=True)
class RelayConfig:
    queue: int = RELAY_QUEUE
    setup_timeout: float = SETUP_TIMEOUT
    stop_timeout: float = STOP_TIMEOUT
    send_timeout: float = 10.0
    backoff: Backoff = field(default_factory=Backoff)
    limits: Limits = field(default_factory=Limits)


@dataclass(frozen=True)
class PullRule:
    app: str
    key: str
    target: Target


def parse_pull(text: str) -> list[PullRule]:
    """``APP/KEY=rtmp[s]://host[:port]/app/name`` entries, space or comma separated."""
    rules: list[PullRule] = []
    for entry in ENTRY_SPLIT.split(text.strip()):
        if not entry:
            continue
        where = f"pull: entry {entry!r}"
        selector, sep, url = entry.partition("=")
        app, _, key = selector.partition("/")
        if not sep or not url or not valid_name(app) or not valid_name(key):
            raise ConfigError(f"{where}: expected APP/KEY=rtmp://host/app/name")
        if any(r.app == app and r.key == key for r in rules):
            raise ConfigError(f"{where}: {app}/{key} is pulled twice")
        try:
            target = parse_target(url)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        rules.append(PullRule(app, key, target))
    return rules
