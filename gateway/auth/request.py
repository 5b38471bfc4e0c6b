"""What is asked (AuthRequest), what is answered (Decision), and where a token is found.

Pure functions and frozen values: the I/O layer builds an :class:`AuthRequest` from an RTMP
connect/publish/play or an HTTP request and hands it to :class:`gateway.auth.Authorizer`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

Action = Literal["publish", "read", "api"]
Transport = Literal["rtmp", "rtmps", "hls", "http"]

# RFC 6750 §2.1: credentials = "Bearer" 1*SP b64token; b64token = 1*( ALPHA / DIGIT /
# "-" / "." / "_" / "~" / "+" / "/" ) *"=". Tabs are tolerated too (some proxies fold them).
_BEARER_RE = re.compile(r"[ \t]*([A-Za-z]+)[ \t]+([A-Za-z0-9._~+/-]+=*)[ \t]*")


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """One question: may ``ip`` do ``action`` on ``app/key`` over ``protocol``?

    ``key`` is what the client sent (for a publish often a secret), so it must not be logged;
    for "api" requests ``app`` and ``key`` are "".
    """

    action: Action
    protocol: Transport
    app: str
    key: str
    query: str  # raw, without '?', as received: the hook may read its own parameters
    ip: str
    token: str | None

    def hook_body(self) -> bytes:
        """The JSON object POSTed to ``auth_hook_url`` (issue 14), exactly these keys."""
        body = {
            "action": self.action,
            "protocol": self.protocol,
            "app": self.app,
            "key": self.key,
            "query": self.query,
            "ip": self.ip,
            "token": self.token,
        }
        return json.dumps(body, separators=(",", ":")).encode()

    def cache_key(self) -> tuple[str, ...]:
        # Protocol and the rest of the query are left out on purpose: the same viewer asking
        # over RTMP and HLS, or a player adding its own parameters, is one question.
        return (self.action, self.app, self.key, self.ip, self.token or "")


@dataclass(frozen=True, slots=True)
class Decision:
    """An answer. ``reason`` goes to logs and onStatus descriptions: it never holds a token,
    a secret or the client's key."""

    allowed: bool
    reason: str
    name: str | None = None  # public name to publish under (a hook's {"name": ...})
    cacheable: bool = True  # False when no one decided (hook down, 5xx): do not remember it
    session: str | None = None  # playback session id, from a signed playback token


@dataclass(frozen=True, slots=True)
class NeedHook:
    """Returned by Authorizer.decide when only the hook can answer: the I/O layer POSTs
    ``request.hook_body()``, parses the answer with parse_hook_answer (or hook_failure) and
    hands the Decision to Authorizer.record."""

    request: AuthRequest


def query_token(query: str) -> str | None:
    """The first ``token`` parameter of a raw query string, percent-decoded; None if absent or
    empty. '+' stays '+' (RFC 3986 has no form-encoding of spaces and a token holds no space,
    while a base64 token typed into OBS may hold a '+')."""
    if query.startswith("?"):
        query = query[1:]
    for field in query.split("&"):
        name, _, value = field.partition("=")
        try:
            if unquote(name, errors="strict") != "token":
                continue
            decoded = unquote(value, errors="strict")
        except UnicodeDecodeError:
            return None
        return decoded or None
    return None


def bearer_token(authorization: str | None) -> str | None:
    """``Authorization: Bearer xyz`` -> "xyz" (RFC 6750 §2.1; the scheme is case-insensitive,
    RFC 9110 §11.1); anything else -> None."""
    if authorization is None:
        return None
    match = _BEARER_RE.fullmatch(authorization)
    if match is None or match.group(1).lower() != "bearer":
        return None
    return match.group(2)


def _glob(pattern: str, text: str) -> bool:
    """'*' matches any run of characters (here never '/': the caller splits on it). Greedy with
    one backtrack point, so O(len(pattern) * len(text)) at worst: a pattern with many stars
    cannot make a check exponential the way a regex could."""
    p = t = 0
    star = -1
    mark = 0
    while t < len(text):
        if p < len(pattern) and pattern[p] == "*":
            star, mark = p, t
            p += 1
        elif p < len(pattern) and pattern[p] == text[t]:
            p += 1
            t += 1
        elif star >= 0:
            p = star + 1
            mark += 1
            t = mark
        else:
            return False
    return all(c == "*" for c in pattern[p:])


def match_path(pattern: str, app: str, key: str) -> bool:
    """Does ``APP/KEY`` pattern (``*`` wildcards, case-sensitive) cover ``app/key``?

    ``*`` alone covers everything, api requests (app and key "") included. Otherwise the pattern
    needs exactly one '/', and a '*' never reaches across it: ``live*`` covers nothing and
    ``live/*`` does not cover ``livex/a``.
    """
    if pattern == "*":
        return True
    app_pattern, slash, key_pattern = pattern.partition("/")
    if not slash or "/" in key_pattern:
        return False
    return _glob(app_pattern, app) and _glob(key_pattern, key)
