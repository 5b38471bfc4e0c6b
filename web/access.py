"""Who may read a stream or use the API, as the web side sees it (docs/auth.md).

The gateway decides (hook, tokens, cache: gateway.access); the web side asks through
``AccessGate`` and, under ``read_auth``, puts the short-lived playback token it is given on every
URI of the playlists it sends, so players (hls.js, Safari) carry it to every segment, part and
playlist reload without custom code, and the hook is asked once per playback session.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from quart import request

from web.httputil import plain_error

__all__ = [
    "BEARER_CHALLENGE",
    "AccessGate",
    "Admission",
    "admit_request",
    "client_ip",
    "refusal",
    "tokenize_playlist",
]

# RFC 6750 §3: a 401 names the scheme that would be accepted.
BEARER_CHALLENGE = ("www-authenticate", 'Bearer realm="gateway"')

# Playback tokens are made of URL-safe characters only (gateway.auth.PlaybackSigner).
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_.~-]+")
# A quoted URI attribute of a tag line (RFC 8216 §4.2: attribute values are quoted strings).
_URI_ATTRIBUTE = re.compile(rb'URI="([^"]*)"')


@dataclass(frozen=True, slots=True)
class Admission:
    """The answer to a read or API request: allowed, or the status and reason of a refusal."""

    allowed: bool
    status: int = 200  # 401 (no credentials given) or 403 when refused
    reason: str = ""
    # Under read_auth: the playback token to put on the URIs of a playlist sent to this viewer.
    token: str | None = None
    # The request was admitted as an operator (api_token, or a hook or token allowing "api"):
    # publisher and player addresses may be shown.
    operator: bool = False


class AccessGate(Protocol):
    """What the gateway's access control offers the web side."""

    @property
    def read_auth(self) -> bool:
        """Reads are asked (else anyone may watch, and ``admit_read`` always allows)."""
        ...

    @property
    def api_open(self) -> bool:
        """Nothing guards the API (no api_token, hook or token verifier): anyone is an operator."""
        ...

    async def admit_read(
        self,
        app: str,
        key: str,
        query: str,
        authorization: str | None,
        ip: str,
        *,
        renew: bool = True,
    ) -> Admission:
        """May this request read APP/KEY (a playlist, segment, part, page or status)?
        ``renew``: the answer carries a token to hand on (a playlist, page or status); a
        segment or part needs none, which saves signing one per request."""
        ...

    async def admit_api(self, query: str, authorization: str | None, ip: str) -> Admission:
        """May this request use the API, metrics and stream index?"""
        ...


def refusal(admission: Admission, message: str) -> tuple[int, list[tuple[str, str]], bytes]:
    """A refused admission as a plain-text error page: 401 with the Bearer challenge when no
    credentials came, else 403."""
    if admission.status == 401:
        headers, body = plain_error(401, "Unauthorized", message, [BEARER_CHALLENGE])
        return 401, headers, body
    headers, body = plain_error(403, "Forbidden", message)
    return 403, headers, body


async def admit_request(gate: AccessGate, app: str, key: str, *, renew: bool = True) -> Admission:
    """``gate.admit_read`` for the Quart request being answered (its query, Authorization
    header and peer address)."""
    query = request.query_string.decode("latin-1")
    authorization = request.headers.get("Authorization")
    ip = request.remote_addr or ""
    return await gate.admit_read(app, key, query, authorization, ip, renew=renew)


def client_ip(client: tuple[str, int] | list[object] | None) -> str:
    """The peer address of an ASGI scope's ``client`` (absent on a unix socket)."""
    if not client:
        return ""
    return str(client[0])


def _with_token(uri: bytes, token: bytes) -> bytes:
    return uri + (b"&" if b"?" in uri else b"?") + b"token=" + token


def tokenize_playlist(text: bytes, token: str) -> bytes:
    """``text`` with ``token=<token>`` added to the query of every URI it names: media lines
    (segments, variant playlists) and the URI attributes of tags (EXT-X-MAP, EXT-X-PART,
    EXT-X-PRELOAD-HINT, EXT-X-MEDIA, EXT-X-RENDITION-REPORT). RFC 8216 §4.1: a URI line is any
    line that is neither blank nor starts with '#'."""
    if not _TOKEN_CHARS.fullmatch(token):
        raise ValueError("a playback token must be URL-safe")
    raw = token.encode()
    lines = text.split(b"\n")
    for i, line in enumerate(lines):
        if not line or line.isspace():
            continue
        if line.startswith(b"#"):
            if b'URI="' in line:
                lines[i] = _URI_ATTRIBUTE.sub(
                    lambda m: b'URI="' + _with_token(m.group(1), raw) + b'"', line
                )
        else:
            end = len(line.rstrip(b"\r"))
            lines[i] = _with_token(line[:end], raw) + line[end:]
    return b"\n".join(lines)
