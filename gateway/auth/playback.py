"""Signed playback tokens: short HMAC-SHA256 tokens that open one stream until they expire.

``gateway sign APP/KEY`` prints one, and with ``read_auth`` every URI of an HLS playlist carries
one, so a viewer is asked (hook or JWT) once per playback session, not once per segment.

Format: ``p1~<expires>~<session>~<mac>``. ``expires`` is decimal Unix seconds, ``session`` is
0-64 of [A-Za-z0-9_-], ``mac`` is the first 16 bytes of HMAC-SHA256(secret, "p1", app, key,
expires, session joined by NUL), base64url without padding (22 characters). Every character is
unreserved in a URI (RFC 3986 §2.3), so the token goes into a query string as it is, and '~'
never appears in base64url, so it is never taken for a JWT.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from gateway.auth.request import Decision
from segmenter.names import valid_name

PREFIX = "p1~"
# RFC 2104 §5: a truncated MAC keeps at least half the hash; 128 bits of it is far beyond
# guessing, and the token is repeated on every URI of every playlist a viewer loads.
MAC_BYTES = 16
_MAC_CHARS = 22  # base64url of 16 bytes, unpadded
# Up to year 33658: room enough, and a bound on what we parse.
_TOKEN_RE = re.compile(r"p1~([1-9][0-9]{0,11})~([A-Za-z0-9_-]{0,64})~([A-Za-z0-9_-]{22})")
_SESSION_RE = re.compile(r"[A-Za-z0-9_-]{0,64}")
MAX_TOKEN_CHARS = 3 + 12 + 1 + 64 + 1 + _MAC_CHARS


def new_session_id() -> str:
    """A random playback session id (16 URL-safe characters, 96 bits)."""
    return secrets.token_urlsafe(12)


class PlaybackSigner:
    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise ValueError("the playback signing secret is empty")
        self._secret = secret

    def _mac(self, app: str, key: str, expires: str, session: str) -> str:
        message = "\0".join(("p1", app, key, expires, session)).encode()
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()[:MAC_BYTES]
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def sign(self, app: str, key: str, expires: int, session: str = "") -> str:
        """A token for ``app/key`` that is valid while ``now < expires``."""
        if not (valid_name(app) and valid_name(key)):
            raise ValueError("app and key must be 1-128 of A-Z a-z 0-9 _ -")
        if not 0 < expires < 10**12:
            raise ValueError(f"expires must be Unix seconds, not {expires}")
        if _SESSION_RE.fullmatch(session) is None:
            raise ValueError("session must be 0-64 of A-Z a-z 0-9 _ -")
        stamp = str(expires)
        return f"{PREFIX}{stamp}~{session}~{self._mac(app, key, stamp, session)}"

    @staticmethod
    def looks_like_playback_token(token: str) -> bool:
        # Only the prefix: a damaged token of ours must still be refused by us, not passed on.
        return token.startswith(PREFIX)

    def verify(self, token: str, app: str, key: str, now: float) -> Decision:
        """Allowed (with the token's session) iff we signed it for this app/key and it has not
        expired. A token for another stream and a forged one get the same answer."""
        if len(token) > MAX_TOKEN_CHARS:
            return Decision(False, "playback token invalid")
        match = _TOKEN_RE.fullmatch(token)
        if match is None or not (valid_name(app) and valid_name(key)):
            return Decision(False, "playback token invalid")
        stamp, session, mac = match.groups()
        # Compared as text: every character of the token counts, even the low bits of the last
        # base64 character that decoding would ignore.
        if not hmac.compare_digest(mac, self._mac(app, key, stamp, session)):
            return Decision(False, "playback token invalid")
        if now >= int(stamp):
            return Decision(False, "playback token expired")
        return Decision(True, "playback token valid", session=session or None)
