"""JSON Web Tokens (RFC 7519) whose claims say what their bearer may do.

PyJWT checks the JWS signature (RFC 7515); which algorithm and which key are chosen here, never
by the token: HS256 only with the configured secret, RS256/ES256 only with a key of the
configured JWKS (RFC 7517) bound to that algorithm. exp and nbf are checked against the ``now``
passed in (PyJWT would read the clock itself).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jwt import PyJWK, PyJWS
from jwt.algorithms import HMACAlgorithm
from jwt.exceptions import InvalidAlgorithmError, InvalidSignatureError, PyJWTError

from gateway.auth.request import Action, Decision, match_path

# RFC 7515 §7.1 compact serialisation: three base64url segments (§2: no padding, though some
# issuers add it and PyJWT accepts it); the signature is empty for alg "none" (RFC 7519 §6.1),
# still recognised as a JWT so that it is refused with the reason.
_JWT_RE = re.compile(r"[A-Za-z0-9_-]+={0,2}\.[A-Za-z0-9_-]+={0,2}\.[A-Za-z0-9_-]*={0,2}")

# The asymmetric algorithms a JWKS key may be used with, by key type (RFC 7518 §3.1, §6.2.1.1
# for the EC curve). A symmetric ("oct") key in a JWKS is refused: a key set is usually
# published, and a published HMAC key lets anyone sign.
_ASYMMETRIC = ("RS256", "ES256")
# An alg name we echo in a reason; anything else is shown as "?" (the header is the client's).
_ALG_NAME_RE = re.compile(r"[A-Za-z0-9+_-]{1,20}")


@dataclass(frozen=True, slots=True)
class JwkSet:
    """The usable signing keys of a JSON Web Key Set, with their ``kid`` (None if absent).
    ``skipped`` says which entries were left out and why, for the I/O layer to log."""

    keys: tuple[tuple[str | None, PyJWK], ...]
    skipped: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.keys)

    def find(self, kid: str | None) -> PyJWK | None:
        """The key named ``kid``; a token without kid may use the only key of a one-key set
        (RFC 7515 §4.1.4: kid is optional)."""
        if kid is None:
            return self.keys[0][1] if len(self.keys) == 1 else None
        for key_id, key in self.keys:
            if key_id == kid:
                return key
        return None


def _jwk_algorithm(entry: Mapping[str, Any]) -> str:
    """The one algorithm this key may verify, or ValueError saying why it is not usable."""
    kty = entry.get("kty")
    if kty == "RSA":
        algorithm = "RS256"
    elif kty == "EC" and entry.get("crv") == "P-256":
        algorithm = "ES256"
    else:
        raise ValueError(f"key type {kty!r} (crv {entry.get('crv')!r}) is not RSA or EC P-256")
    declared = entry.get("alg")
    if declared is not None and declared != algorithm:
        raise ValueError(f"alg {declared!r} is not {algorithm}")
    use = entry.get("use")
    if use is not None and use != "sig":  # RFC 7517 §4.2
        raise ValueError(f"use {use!r} is not 'sig'")
    return algorithm


def parse_jwks(data: bytes) -> JwkSet:
    """A JWKS document (RFC 7517 §5) -> its RS256/ES256 signing keys. Keys of other types, uses
    or algorithms are skipped (identity providers publish encryption keys in the same set); a
    set with no usable key, or that is not a JWKS, raises ValueError."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as error:
        raise ValueError(f"JWKS is not JSON: {error}") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError('JWKS is not a JSON object with a "keys" list')
    keys: list[tuple[str | None, PyJWK]] = []
    skipped: list[str] = []
    for index, entry in enumerate(document["keys"]):
        if not isinstance(entry, dict):
            skipped.append(f"key {index}: not a JSON object")
            continue
        kid = entry.get("kid")
        label = f"key {kid!r}" if kid is not None else f"key {index}"
        if kid is not None and not isinstance(kid, str):
            skipped.append(f"{label}: kid is not a string")
            continue
        if kid is not None and any(kid == seen for seen, _ in keys):
            # Two keys under one kid: which one verifies would depend on order.
            raise ValueError(f"JWKS has two usable keys with kid {kid!r}")
        try:
            keys.append((kid, PyJWK(entry, _jwk_algorithm(entry))))
        except (ValueError, PyJWTError) as error:
            skipped.append(f"{label}: {error}")
    if not keys:
        reasons = "; ".join(skipped) or "the set is empty"
        raise ValueError(f"JWKS has no usable RS256/ES256 signing key ({reasons})")
    return JwkSet(tuple(keys), tuple(skipped))


def _deny(reason: str) -> Decision:
    return Decision(False, reason)


def _numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    """RFC 7519 §2 NumericDate: a JSON number of seconds. ValueError if present and not one."""
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(name)
    if not math.isfinite(value):  # json.loads accepts NaN and Infinity
        raise ValueError(name)
    return float(value)


def grants(claims: Mapping[str, Any], action: Action, app: str, key: str) -> bool:
    """The "permissions" claim: [{"action": ..., "path": "APP/KEY pattern"}, ...]; an entry
    without "path" counts only for "api". Entries of the wrong shape grant nothing."""
    permissions = claims.get("permissions")
    if not isinstance(permissions, list):
        return False
    for entry in permissions:
        if not isinstance(entry, dict) or entry.get("action") != action:
            continue
        path = entry.get("path")
        if path is None and action == "api":
            return True
        if isinstance(path, str) and match_path(path, app, key):
            return True
    return False


class JwtVerifier:
    """Checks a JWT against a shared secret (HS256) and/or a JWKS (RS256, ES256)."""

    def __init__(
        self,
        *,
        secret: str | None = None,
        jwks: JwkSet | None = None,
        max_token_bytes: int = 4096,
        leeway: float = 0.0,
    ) -> None:
        if not secret and jwks is None:
            raise ValueError("a JWT verifier needs a secret (HS256) or a JWKS (RS256/ES256)")
        if secret:
            # PyJWT refuses a PEM or SSH public key as an HMAC secret; say so at start-up.
            try:
                HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(secret)
            except PyJWTError as error:
                raise ValueError(f"JWT secret not usable: {error}") from None
        self._secret = secret or None
        # RFC 7518 §3.2: an HS256 key MUST be at least 256 bits. Still accepted (PyJWT warns
        # once); the settings layer can tell the operator.
        self.weak_secret = self._secret is not None and len(self._secret.encode()) < 32
        self._jwks = jwks
        self.max_token_bytes = max_token_bytes
        self.leeway = leeway
        # Only the algorithms we may use are even registered (alg "none" is not).
        self._jws = PyJWS(algorithms=["HS256", *_ASYMMETRIC])

    @staticmethod
    def looks_like_jwt(token: str) -> bool:
        return _JWT_RE.fullmatch(token) is not None

    def check(self, token: str, action: Action, app: str, key: str, now: float) -> Decision:
        # Before any decoding: a 100 KB token costs one len().
        if len(token) > self.max_token_bytes:
            return _deny("token too long")
        if not token.isascii() or not self.looks_like_jwt(token):
            return _deny("token malformed")
        try:
            claims = self._verified_claims(token)
        except _Refused as refused:
            return _deny(refused.reason)
        try:
            expires = _numeric_date(claims, "exp")
            not_before = _numeric_date(claims, "nbf")
        except ValueError as error:
            return _deny(f"token {error} claim is not a NumericDate")
        # RFC 7519 §4.1.4: valid only *before* exp; §4.1.5: not before nbf.
        if expires is not None and now >= expires + self.leeway:
            return _deny("token expired")
        if not_before is not None and now < not_before - self.leeway:
            return _deny("token not yet valid")
        if not grants(claims, action, app, key):
            # The key is not named: for a publish it may be a secret.
            return _deny(f"token does not allow {action} of this stream")
        return Decision(True, f"token allows {action}")

    def _verified_claims(self, token: str) -> dict[str, Any]:
        try:
            header = self._jws.get_unverified_header(token)
        except (PyJWTError, ValueError, RecursionError):
            raise _Refused("token malformed") from None
        alg = header.get("alg")
        if not isinstance(alg, str):
            raise _Refused("token malformed")  # RFC 7515 §4.1.1: alg is required
        shown = alg if _ALG_NAME_RE.fullmatch(alg) else "?"
        verify_key: str | PyJWK
        if alg == "HS256" and self._secret is not None:
            verify_key = self._secret
        elif alg in _ASYMMETRIC and self._jwks is not None:
            kid = header.get("kid")
            found = self._jwks.find(kid if isinstance(kid, str) else None)
            if found is None:
                raise _Refused("token key id unknown" if kid is not None else "token has no kid")
            if found.algorithm_name != alg:
                # An RSA key is never used for ES256 and so on (RFC 7518 §3.1).
                raise _Refused(f"token algorithm {shown} does not match its key")
            verify_key = found
        else:
            # "none", HS256 without a secret (the alg confusion attack: a public key as an HMAC
            # secret), RS256 without a JWKS, anything else.
            raise _Refused(f"token algorithm {shown} not accepted")
        try:
            decoded = self._jws.decode_complete(token, key=verify_key, algorithms=[alg])
        except InvalidSignatureError:
            raise _Refused("token signature invalid") from None
        except InvalidAlgorithmError:
            raise _Refused(f"token algorithm {shown} not accepted") from None
        except (PyJWTError, ValueError, TypeError, RecursionError):
            raise _Refused("token malformed") from None
        try:
            claims = json.loads(decoded["payload"])
        except (ValueError, RecursionError):
            raise _Refused("token malformed") from None
        if not isinstance(claims, dict):  # RFC 7519 §7.2 step 10: a JSON object
            raise _Refused("token malformed")
        return claims


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
