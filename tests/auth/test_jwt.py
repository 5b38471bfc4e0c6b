"""JWT verification: HS256 with a secret, RS256/ES256 with a JWKS, and the known attacks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from gateway.auth import Decision, JwkSet, JwtVerifier, parse_jwks

SECRET = "a-shared-secret-of-at-least-32-bytes!"
NOW = 1_800_000_000.0
PUBLISH_LIVE = {"permissions": [{"action": "publish", "path": "live/*"}]}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_token(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    """A compact JWS built by hand (RFC 7515 §7.1), HMAC-SHA256 over it with ``key``, or an
    empty signature: what an attacker sends, which PyJWT's encode would refuse to make."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = (
        b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    )
    return f"{signing_input}.{b64(signature)}"


def hs256(claims: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def jwk(public: Any, algorithm: type[RSAAlgorithm] | type[ECAlgorithm], **extra: Any) -> Any:
    entry = json.loads(algorithm.to_jwk(public))
    entry.update(extra)
    return entry


@pytest.fixture(scope="module")
def jwks_bytes(rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> bytes:
    keys = [
        jwk(rsa_key.public_key(), RSAAlgorithm, kid="rsa1", use="sig", alg="RS256"),
        jwk(ec_key.public_key(), ECAlgorithm, kid="ec1"),
    ]
    return json.dumps({"keys": keys}).encode()


@pytest.fixture(scope="module")
def jwks(jwks_bytes: bytes) -> JwkSet:
    return parse_jwks(jwks_bytes)


def check(verifier: JwtVerifier, token: str, action: str = "publish", key: str = "cam") -> Decision:
    return verifier.check(token, action, "live", key, NOW)  # type: ignore[arg-type]


# HS256 ------------------------------------------------------------------------------------------


def test_hs256_good() -> None:
    decision = check(JwtVerifier(secret=SECRET), hs256(PUBLISH_LIVE))
    assert decision == Decision(True, "token allows publish")


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": NOW + 1}, None),
        ({"exp": NOW}, "token expired"),  # RFC 7519 §4.1.4: valid only before exp
        ({"exp": NOW - 3600}, "token expired"),
        ({"nbf": NOW}, None),
        ({"nbf": NOW + 1}, "token not yet valid"),
        ({"nbf": NOW - 10, "exp": NOW + 10}, None),
        ({"exp": NOW + 0.5}, None),  # NumericDate may be fractional (RFC 7519 §2)
        ({"exp": "tomorrow"}, "token exp claim is not a NumericDate"),
        ({"exp": True}, "token exp claim is not a NumericDate"),
        ({"nbf": [1]}, "token nbf claim is not a NumericDate"),
    ],
)
def test_hs256_time_claims(claims: dict[str, Any], reason: str | None) -> None:
    decision = check(JwtVerifier(secret=SECRET), hs256({**PUBLISH_LIVE, **claims}))
    assert decision.allowed is (reason is None)
    if reason is not None:
        assert decision.reason == reason


def test_time_claims_use_now_not_the_clock() -> None:
    # Long expired by the wall clock, valid at the ``now`` given.
    token = hs256({**PUBLISH_LIVE, "exp": 1000, "nbf": 900})
    verifier = JwtVerifier(secret=SECRET)
    assert verifier.check(token, "publish", "live", "cam", 950).allowed
    assert verifier.check(token, "publish", "live", "cam", 1000).reason == "token expired"
    assert verifier.check(token, "publish", "live", "cam", 899).reason == "token not yet valid"


def test_leeway() -> None:
    token = hs256({**PUBLISH_LIVE, "exp": NOW - 5, "nbf": NOW + 5})
    assert not check(JwtVerifier(secret=SECRET, leeway=4), token).allowed
    assert check(JwtVerifier(secret=SECRET, leeway=6), token).allowed


def test_non_finite_exp_is_malformed() -> None:
    token = hand_token({"alg": "HS256"}, {"exp": float("nan")}, SECRET.encode())
    assert "NaN" in base64.urlsafe_b64decode(token.split(".")[1] + "==").decode()
    assert check(JwtVerifier(secret=SECRET), token).reason == "token exp claim is not a NumericDate"


def test_hs256_wrong_secret() -> None:
    token = hs256(PUBLISH_LIVE, secret="another-secret-that-is-long-enough!!")
    assert check(JwtVerifier(secret=SECRET), token) == Decision(False, "token signature invalid")


def test_forged_payload() -> None:
    good = hs256({"permissions": [{"action": "read", "path": "live/*"}]})
    header, _, signature = good.split(".")
    forged = f"{header}.{b64(json.dumps(PUBLISH_LIVE).encode())}.{signature}"
    assert check(JwtVerifier(secret=SECRET), forged).reason == "token signature invalid"


def test_hand_built_hs256_is_accepted() -> None:
    # The hand builder is right, so the refusals below are refusals of the attack alone.
    token = hand_token({"alg": "HS256", "typ": "JWT"}, PUBLISH_LIVE, SECRET.encode())
    assert check(JwtVerifier(secret=SECRET), token).allowed


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_refused(alg: str, jwks: JwkSet) -> None:
    token = hand_token({"alg": alg, "typ": "JWT"}, PUBLISH_LIVE, None)
    assert token.endswith(".")
    assert JwtVerifier.looks_like_jwt(token)
    for verifier in (JwtVerifier(secret=SECRET), JwtVerifier(jwks=jwks)):
        assert check(verifier, token) == Decision(False, f"token algorithm {alg} not accepted")
    # With a signature appended (some libraries ignore it for "none"): refused all the same.
    signed = hand_token({"alg": alg}, PUBLISH_LIVE, SECRET.encode())
    assert check(JwtVerifier(secret=SECRET), signed).reason == f"token algorithm {alg} not accepted"


@pytest.mark.parametrize("alg", ["HS384", "HS512", "PS256", "ES384", "EdDSA", "RS512"])
def test_other_algorithms_refused(alg: str, jwks: JwkSet) -> None:
    token = hand_token({"alg": alg}, PUBLISH_LIVE, SECRET.encode())
    verifier = JwtVerifier(secret=SECRET, jwks=jwks)
    assert check(verifier, token) == Decision(False, f"token algorithm {alg} not accepted")


def test_hostile_alg_value_is_not_echoed() -> None:
    for alg in ["x" * 500, "RS256\nforged log line", 5, None]:
        token = hand_token({"alg": alg}, PUBLISH_LIVE, SECRET.encode())
        reason = check(JwtVerifier(secret=SECRET), token).reason
        assert reason in ("token algorithm ? not accepted", "token malformed")
        assert "\n" not in reason


def test_alg_confusion_public_key_as_hmac_secret(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey, jwks: JwkSet
) -> None:
    # The classic attack: HS256 "signed" with the server's public key, which is public.
    for private, kid in ((rsa_key, "rsa1"), (ec_key, "ec1")):
        pem = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        for header in ({"alg": "HS256", "kid": kid}, {"alg": "HS256"}):
            token = hand_token(header, PUBLISH_LIVE, pem)
            only_jwks = check(JwtVerifier(jwks=jwks), token)
            assert only_jwks == Decision(False, "token algorithm HS256 not accepted")
            # With a secret as well, HS256 is checked against the secret, never the key set.
            both = check(JwtVerifier(secret=SECRET, jwks=jwks), token)
            assert both == Decision(False, "token signature invalid")


def test_secret_that_is_a_public_key_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ValueError, match="JWT secret not usable"):
        JwtVerifier(secret=pem.decode())


def test_verifier_needs_a_key() -> None:
    with pytest.raises(ValueError):
        JwtVerifier()
    with pytest.raises(ValueError):
        JwtVerifier(secret="")


def test_weak_secret_is_flagged() -> None:
    assert JwtVerifier(secret="short").weak_secret
    assert not JwtVerifier(secret=SECRET).weak_secret


# RS256 / ES256 with a JWKS ----------------------------------------------------------------------


def test_rs256_and_es256_good(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey, jwks: JwkSet
) -> None:
    verifier = JwtVerifier(jwks=jwks)
    rs = jwt.encode(PUBLISH_LIVE, rsa_key, algorithm="RS256", headers={"kid": "rsa1"})
    es = jwt.encode(PUBLISH_LIVE, ec_key, algorithm="ES256", headers={"kid": "ec1"})
    assert check(verifier, rs).allowed
    assert check(verifier, es).allowed
    assert not check(verifier, rs, action="read").allowed


def test_jwks_key_chosen_by_kid(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey, jwks: JwkSet
) -> None:
    verifier = JwtVerifier(jwks=jwks)
    unknown = jwt.encode(PUBLISH_LIVE, rsa_key, algorithm="RS256", headers={"kid": "nope"})
    assert check(verifier, unknown).reason == "token key id unknown"
    no_kid = jwt.encode(PUBLISH_LIVE, rsa_key, algorithm="RS256")
    assert check(verifier, no_kid).reason == "token has no kid"  # two keys: kid is needed
    # The EC key's kid on an RS256 token: an RSA signature is never checked with an EC key.
    crossed = jwt.encode(PUBLISH_LIVE, rsa_key, algorithm="RS256", headers={"kid": "ec1"})
    assert check(verifier, crossed).reason == "token algorithm RS256 does not match its key"


def test_one_key_set_needs_no_kid(rsa_key: rsa.RSAPrivateKey) -> None:
    only = parse_jwks(json.dumps({"keys": [jwk(rsa_key.public_key(), RSAAlgorithm)]}).encode())
    verifier = JwtVerifier(jwks=only)
    assert check(verifier, jwt.encode(PUBLISH_LIVE, rsa_key, algorithm="RS256")).allowed
    named = jwt.encode(PUBLISH_LIVE, rsa_key, algorithm="RS256", headers={"kid": "x"})
    assert check(verifier, named).reason == "token key id unknown"


def test_rs256_signed_by_another_key(jwks: JwkSet) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(PUBLISH_LIVE, stranger, algorithm="RS256", headers={"kid": "rsa1"})
    assert check(JwtVerifier(jwks=jwks), token).reason == "token signature invalid"


def test_rs256_refused_without_jwks_and_hs256_without_secret(
    rsa_key: rsa.RSAPrivateKey, jwks: JwkSet
) -> None:
    rs = jwt.encode(PUBLISH_LIVE, rsa_key, algorithm="RS256", headers={"kid": "rsa1"})
    assert check(JwtVerifier(secret=SECRET), rs).reason == "token algorithm RS256 not accepted"
    assert check(JwtVerifier(jwks=jwks), hs256(PUBLISH_LIVE)).reason == (
        "token algorithm HS256 not accepted"
    )


def test_parse_jwks_skips_unusable_keys(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    keys = [
        {"kty": "oct", "k": b64(b"published-hmac-key"), "kid": "sym"},  # would let anyone sign
        jwk(rsa_key.public_key(), RSAAlgorithm, kid="enc", use="enc"),
        jwk(rsa_key.public_key(), RSAAlgorithm, kid="ps", alg="PS256"),
        jwk(p384, ECAlgorithm, kid="p384"),
        jwk(ec_key.public_key(), ECAlgorithm, kid="good"),
        "not a key",
        {"kty": "RSA", "kid": "broken", "n": "AQAB"},
        {"kty": "RSA", "kid": 7, "n": "AQAB", "e": "AQAB"},
    ]
    parsed = parse_jwks(json.dumps({"keys": keys}).encode())
    assert [kid for kid, _ in parsed.keys] == ["good"]
    assert len(parsed.skipped) == 7
    assert parsed.find("sym") is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not JSON"),
        (b"{", "not JSON"),
        (b"[]", '"keys" list'),
        (b'{"keys": {}}', '"keys" list'),
        (b'{"kty": "RSA"}', '"keys" list'),
        (b'{"keys": []}', "no usable"),
        (b'{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}', "no usable"),
        (b"[" * 100_000, "not JSON"),
    ],
)
def test_parse_jwks_errors(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_jwks(data)


def test_parse_jwks_refuses_duplicate_kids(rsa_key: rsa.RSAPrivateKey) -> None:
    key = jwk(rsa_key.public_key(), RSAAlgorithm, kid="same")
    with pytest.raises(ValueError, match="two usable keys"):
        parse_jwks(json.dumps({"keys": [key, key]}).encode())


# Permissions ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("permissions", "action", "app", "key", "allowed"),
    [
        ([{"action": "publish", "path": "live/cam"}], "publish", "live", "cam", True),
        ([{"action": "publish", "path": "live/cam"}], "publish", "live", "cam2", False),
        ([{"action": "publish", "path": "live/cam"}], "read", "live", "cam", False),
        ([{"action": "read", "path": "live/cam-*"}], "read", "live", "cam-7", True),
        ([{"action": "read", "path": "live/cam-*"}], "read", "other", "cam-7", False),
        ([{"action": "read", "path": "*"}], "read", "any", "thing", True),
        ([{"action": "read"}], "read", "live", "cam", False),  # path needed but for api
        ([{"action": "api"}], "api", "", "", True),
        ([{"action": "api", "path": "*"}], "api", "", "", True),
        ([{"action": "api", "path": "live/*"}], "api", "", "", False),
        ([{"action": "publish", "path": "*"}], "api", "", "", False),
        (
            [{"action": "read", "path": "a/*"}, {"action": "publish", "path": "live/*"}],
            "publish",
            "live",
            "x",
            True,
        ),
        ([{"action": "publish", "path": 5}], "publish", "live", "cam", False),
        ([{"action": ["publish"], "path": "*"}], "publish", "live", "cam", False),
        (["publish:*", None, 3], "publish", "live", "cam", False),
        ({"action": "publish", "path": "*"}, "publish", "live", "cam", False),  # not a list
        ("publish", "publish", "live", "cam", False),
        ([], "publish", "live", "cam", False),
    ],
)
def test_permissions(permissions: Any, action: str, app: str, key: str, allowed: bool) -> None:
    token = hs256({"permissions": permissions})
    decision = JwtVerifier(secret=SECRET).check(token, action, app, key, NOW)  # type: ignore[arg-type]
    assert decision.allowed is allowed
    if not allowed:
        assert decision.reason == f"token does not allow {action} of this stream"


def test_no_permissions_claim() -> None:
    decision = check(JwtVerifier(secret=SECRET), hs256({"sub": "alice"}))
    assert decision == Decision(False, "token does not allow publish of this stream")


def test_other_stream_token() -> None:
    token = hs256({"permissions": [{"action": "publish", "path": "live/alice"}]})
    verifier = JwtVerifier(secret=SECRET)
    assert check(verifier, token, key="alice").allowed
    refused = check(verifier, token, key="bob")
    assert not refused.allowed
    assert "bob" not in refused.reason  # the key may be a secret: reasons never name it


# Size, shape and garbage ------------------------------------------------------------------------


def test_100_kb_token_refused_without_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = JwtVerifier(secret=SECRET)
    huge = hs256({**PUBLISH_LIVE, "pad": "x" * 100_000})
    assert len(huge) > 100_000

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded a token over the size limit")

    monkeypatch.setattr(verifier._jws, "get_unverified_header", no_decoding)
    monkeypatch.setattr(verifier._jws, "decode_complete", no_decoding)
    assert check(verifier, huge) == Decision(False, "token too long")


def test_max_token_bytes_is_the_limit() -> None:
    token = hs256(PUBLISH_LIVE)
    assert check(JwtVerifier(secret=SECRET, max_token_bytes=len(token)), token).allowed
    too_small = JwtVerifier(secret=SECRET, max_token_bytes=len(token) - 1)
    assert check(too_small, token).reason == "token too long"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "..",
        "a..c",
        "é.b.c",
        "a b.c.d",
        "e30.e30.",  # {}.{}. : header without alg
        b64(b"[]") + ".e30.",  # header not an object
        b64(b'{"alg":"HS256"}') + "." + b64(b"[1]") + ".x",
        b64(b'{"alg":"HS256","crit":["exp"]}') + ".e30.",  # unknown critical header
        b64(b'{"alg":"HS256","kid":5}') + ".e30.",
    ],
)
def test_malformed(token: str) -> None:
    decision = check(JwtVerifier(secret=SECRET), token)
    assert not decision.allowed
    assert decision.reason in ("token malformed", "token signature invalid")


def test_payload_not_an_object_is_malformed() -> None:
    header = b64(b'{"alg":"HS256"}')
    payload = b64(b"[1]")
    signing_input = f"{header}.{payload}".encode()
    signature = b64(hmac.new(SECRET.encode(), signing_input, hashlib.sha256).digest())
    decision = check(JwtVerifier(secret=SECRET), f"{header}.{payload}.{signature}")
    assert decision == Decision(False, "token malformed")


@pytest.mark.parametrize(
    ("token", "looks"),
    [
        ("aaa.bbb.ccc", True),
        ("aaa.bbb.", True),
        ("a-_.b-_.c-_", True),
        ("aaa=.bbb==.ccc", True),
        ("aaa.bbb", False),
        ("aaa.bbb.ccc.ddd", False),
        (".bbb.ccc", False),
        ("aaa..ccc", False),
        ("aa+.bbb.ccc", False),
        ("p1~1~s~mac", False),
        ("plain-secret", False),
    ],
)
def test_looks_like_jwt(token: str, looks: bool) -> None:
    assert JwtVerifier.looks_like_jwt(token) is looks


KNOWN_REASON = re.compile(
    r"token (too long|malformed|signature invalid|has no kid|key id unknown|expired"
    r"|not yet valid|algorithm ([A-Za-z0-9+_-]{1,20}|\?) not accepted"
    r"|(exp|nbf) claim is not a NumericDate|does not allow (publish|read|api) of this stream)"
)
TOKENISH = st.one_of(
    st.text(max_size=300),
    st.lists(st.from_regex(r"[A-Za-z0-9_=-]{0,60}", fullmatch=True), min_size=3, max_size=3).map(
        ".".join
    ),
    st.tuples(st.dictionaries(st.text(max_size=5), st.text(max_size=5)), st.binary()).map(
        lambda pair: f"{b64(json.dumps(pair[0]).encode())}.{b64(pair[1])}.{b64(pair[1])}"
    ),
)


@settings(max_examples=300)
@given(TOKENISH, st.sampled_from(["publish", "read", "api"]))
def test_garbage_never_raises(token: str, action: str) -> None:
    verifier = JwtVerifier(secret=SECRET)
    decision = verifier.check(token, action, "live", "cam", NOW)  # type: ignore[arg-type]
    assert isinstance(decision, Decision)
    assert not decision.allowed
    assert KNOWN_REASON.fullmatch(decision.reason), decision.reason


@settings(max_examples=100)
@given(st.data())
def test_tampering_any_character_is_refused(data: st.DataObject) -> None:
    token = hs256(PUBLISH_LIVE)
    index = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.sampled_from("AQgw_-.x"))
    tampered = token[:index] + replacement + token[index + 1 :]
    decision = check(JwtVerifier(secret=SECRET), tampered)
    if tampered != token:
        # The last base64 character of a 32-byte HMAC carries 2 bits nobody reads (RFC 4648
        # §3.5); PyJWT refuses such a non-canonical encoding, so every change is refused.
        assert not decision.allowed
