"""The decision engine: which of the configured methods answers a request, in which order.

``decide`` answers at once from what needs no I/O (open actions, the API token, playback tokens,
JWTs, the cache) or returns NeedHook; the I/O layer then asks the hook and calls ``record``.
"""

from __future__ import annotations

import hmac

from gateway.auth.hook import DecisionCache
from gateway.auth.playback import PlaybackSigner
from gateway.auth.request import AuthRequest, Decision, NeedHook
from gateway.auth.tokens import JwtVerifier

_NO_TOKEN = {
    "publish": "a token is needed to publish",
    "read": "a token is needed to watch",
    "api": "a token is needed for the api",
}


class Authorizer:
    def __init__(
        self,
        *,
        hook: bool,
        jwt: JwtVerifier | None,
        signer: PlaybackSigner | None,
        read_auth: bool,
        api_token: str | None,
        cache: DecisionCache,
        max_token_bytes: int = 4096,
    ) -> None:
        self.hook = hook
        self.jwt = jwt
        self.signer = signer
        self.read_auth = read_auth
        # Settings use "" for unset: an empty API token must not match an empty bearer.
        self.api_token = api_token or None
        self.cache = cache
        # A token longer than this is refused before any method sees it (the hook included:
        # it would be POSTed, and cached as a key).
        self.max_token_bytes = max_token_bytes

    @property
    def publish_open(self) -> bool:
        """No hook and no JWT: anyone may publish (the embedded default)."""
        return not self.hook and self.jwt is None

    def decide(self, request: AuthRequest, now: float) -> Decision | NeedHook:
        action, token = request.action, request.token or None
        # 1. Watching needs no credentials unless read_auth says so.
        if action == "read" and not self.read_auth:
            return Decision(True, "reads are open")
        # 2. The API: open when nothing guards it, else the configured bearer token opens it.
        if action == "api":
            if self.api_token is None and not self.hook and self.jwt is None:
                return Decision(True, "api is open")
            if (
                self.api_token is not None
                and token is not None
                and hmac.compare_digest(token.encode(), self.api_token.encode())
            ):
                return Decision(True, "api token")
        # 3. A token too long for any method (docs/auth.md numbers the rules the same way).
        if token is not None and len(token) > self.max_token_bytes:
            return Decision(False, "token too long")
        # 4. Our own signed playback tokens: the signer is the only authority on them.
        signer = self.signer
        if token is not None and signer is not None and signer.looks_like_playback_token(token):
            if action != "read":
                return Decision(False, f"a playback token does not allow {action}")
            return signer.verify(token, request.app, request.key, now)
        # 5. A JWT: a grant is final; a refusal is final only when no hook can say otherwise.
        if token is not None and self.jwt is not None and JwtVerifier.looks_like_jwt(token):
            decision = self.jwt.check(token, action, request.app, request.key, now)
            if decision.allowed or not self.hook:
                return decision
        # 6-7. What the hook answered recently, or the hook.
        cached = self.cache.get(request, now)
        if cached is not None:
            return cached
        if self.hook:
            return NeedHook(request)
        # 8. Nothing above could answer.
        if action == "publish" and self.publish_open:
            return Decision(True, "no publish auth configured")
        if action == "api" and self.api_token is not None:
            return Decision(False, "api needs Authorization: Bearer <api_token>")
        if token is None:
            return Decision(False, _NO_TOKEN[action])
        return Decision(False, "token not accepted")

    def record(self, request: AuthRequest, decision: Decision, now: float) -> None:
        """The hook's answer to ``request`` (from parse_hook_answer or hook_failure)."""
        self.cache.put(request, decision, now)
