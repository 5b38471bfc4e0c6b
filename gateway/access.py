"""Access control at run time: the pure policy of ``gateway.auth`` plus the I/O it needs (the
HTTP hook, a JWKS file or URL, the clock), for the RTMP sessions and the web side (docs/auth.md).

Every hook call is bounded: at most ``auth_hook_concurrency`` in flight, each within
``auth_hook_timeout`` (waiting for a slot included); a hook that is slow, down or answers
garbage denies the one request that asked, never delays another connection or a running stream.
"""

from __future__ import annotations

import logging
import math
import secrets
import ssl
import time
from pathlib import Path

import httpx
import prometheus_client
import trio

from gateway.auth import (
    Action,
    Authorizer,
    AuthRequest,
    Decision,
    DecisionCache,
    JwkSet,
    JwtVerifier,
    NeedHook,
    PlaybackSigner,
    Transport,
    bearer_token,
    hook_failure,
    new_session_id,
    parse_hook_answer,
    parse_jwks,
    query_token,
)
from gateway.config import Settings, auth_configured
from gateway.tls import client_context
from web.access import Admission

log = logging.getLogger("gateway.access")

# A hook's answer body is a small JSON object; more is refused unread (fail-closed).
MAX_HOOK_ANSWER_BYTES = 64 * 1024
# A JWKS document larger than this is refused (a set of a few keys is a few kB).
MAX_JWKS_BYTES = 1024 * 1024
# Playback sessions minted from a hook or JWT decision are renewed by every playlist reload;
# those of a `gateway sign` link keep the link's own expiry (see session_token).
RENEWABLE = "r"


class AccessMetrics:
    def __init__(self, registry: prometheus_client.CollectorRegistry) -> None:
        self.decisions = prometheus_client.Counter(
            "auth_decisions",
            "Access decisions by action and result",
            ["action", "result"],
            registry=registry,
        )
        self.hook_calls = prometheus_client.Counter(
            "auth_hook_requests",
            "Requests made to the auth hook, by outcome",
            ["outcome"],
            registry=registry,
        )
        self.hook_seconds = prometheus_client.Histogram(
            "auth_hook_duration_seconds",
            "Time the auth hook took to answer (or to fail)",
            registry=registry,
        )


class AccessControl:
    """Decides publishes, reads and API calls; implements ``web.access.AccessGate``."""

    def __init__(
        self, settings: Settings, registry: prometheus_client.CollectorRegistry | None = None
    ) -> None:
        self.settings = settings
        secret = settings.playback_secret.encode() if settings.playback_secret else None
        # Without a configured secret, one per process: its tokens die with it (documented).
        self.signer = PlaybackSigner(secret or secrets.token_bytes(32))
        self.cache = DecisionCache(settings.auth_cache_seconds)
        self.metrics = AccessMetrics(registry or prometheus_client.CollectorRegistry())
        self._limiter = trio.CapacityLimiter(settings.auth_hook_concurrency)
        self._client: httpx.AsyncClient | None = None
        self._jwks: JwkSet | None = None
        self.authorizer = self._authorizer()

    def reconfigure(self, settings: Settings) -> None:
        """Reloaded access settings (hook URL and timeout, secrets, read_auth, api_token, the
        cache time) decide from the next request on. The hook's connection pool, the JWKS
        source and playback_secret stay as started (gateway.reload.RESTART_ONLY)."""
        self.settings = settings
        self.cache = DecisionCache(settings.auth_cache_seconds)  # answers of the old policy go
        self.authorizer = self._authorizer()

    def _authorizer(self) -> Authorizer:
        s = self.settings
        jwt = None
        if s.auth_jwt_secret or self._jwks is not None:
            jwt = JwtVerifier(
                secret=s.auth_jwt_secret or None,
                jwks=self._jwks,
                max_token_bytes=s.auth_max_token_bytes,
            )
        return Authorizer(
            hook=bool(s.auth_hook_url),
            jwt=jwt,
            signer=self.signer,
            read_auth=s.read_auth,
            api_token=s.api_token or None,
            cache=self.cache,
        )

    # --- lifetime ----------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the hook's HTTP client and the JWKS (loaded before ``started``; a URL is
        fetched again every auth_jwks_refresh seconds). Raises OSError when the JWKS given at
        start cannot be loaded, so the gateway refuses to start with a clear message."""
        s = self.settings
        timeout = httpx.Timeout(s.auth_hook_timeout)
        limits = httpx.Limits(max_connections=s.auth_hook_concurrency)
        async with httpx.AsyncClient(
            verify=client_context(s), timeout=timeout, limits=limits, follow_redirects=False
        ) as client:
            self._client = client
            try:
                if s.auth_jwks:
                    try:
                        await self._load_jwks()
                    except (OSError, ValueError, httpx.HTTPError) as exc:
                        raise OSError(f"auth_jwks: cannot load {s.auth_jwks}: {exc}") from None
                task_status.started()
                if s.auth_jwks.lower().startswith(("http://", "https://")):
                    while True:
                        await trio.sleep(s.auth_jwks_refresh)
                        try:
                            await self._load_jwks()
                        except (OSError, ValueError, httpx.HTTPError) as exc:
                            log.error("auth_jwks: keeping the keys loaded before: %s", exc)
                else:
                    await trio.sleep_forever()
            finally:
                self._client = None

    async def _load_jwks(self) -> None:
        source = self.settings.auth_jwks
        if source.lower().startswith(("http://", "https://")):
            assert self._client is not None
            with trio.fail_after(max(self.settings.auth_hook_timeout, 5.0)):
                response = await self._client.get(source)
            response.raise_for_status()
            data = response.content
        else:
            data = await trio.to_thread.run_sync(Path(source).read_bytes)
        if len(data) > MAX_JWKS_BYTES:
            raise ValueError(f"larger than {MAX_JWKS_BYTES} bytes")
        self._jwks = parse_jwks(data)
        self.authorizer = self._authorizer()

    # --- decisions ---------------------------------------------------------------------------
    @property
    def publish_open(self) -> bool:
        """Anyone may publish (no hook, no token verifier): the embedded default."""
        return not auth_configured(self.settings)

    async def check(self, request: AuthRequest) -> Decision:
        """The policy's decision, asking the hook when the policy says so."""
        decided = self.authorizer.decide(request, time.time())
        if isinstance(decided, NeedHook):
            decided = await self._ask_hook(request)
            self.authorizer.record(request, decided, time.time())
        self.metrics.decisions.labels(
            action=request.action, result="allow" if decided.allowed else "deny"
        ).inc()
        return decided

    async def _ask_hook(self, request: AuthRequest) -> Decision:
        client = self._client
        if client is None:
            return hook_failure("the gateway is not running its auth client")
        timeout = self.settings.auth_hook_timeout
        started = trio.current_time()
        decision: Decision | None = None
        outcome = "timeout"
        with trio.move_on_after(timeout):
            async with self._limiter:
                try:
                    async with client.stream(
                        "POST",
                        self.settings.auth_hook_url,
                        content=request.hook_body(),
                        headers={"content-type": "application/json"},
                        timeout=timeout,  # the reloaded one (the client was made at start)
                    ) as response:
                        body = bytearray()
                        async for chunk in response.aiter_bytes():
                            body += chunk
                            if len(body) > MAX_HOOK_ANSWER_BYTES:
                                break
                    if len(body) > MAX_HOOK_ANSWER_BYTES:
                        outcome = "too-large"
                        decision = Decision(
                            False,
                            f"auth hook answer larger than {MAX_HOOK_ANSWER_BYTES} bytes",
                            cacheable=False,
                        )
                    else:
                        outcome = f"{response.status_code // 100}xx"
                        decision = parse_hook_answer(
                            response.status_code, bytes(body), action=request.action
                        )
                except httpx.HTTPError as exc:
                    outcome = "error"
                    decision = hook_failure(_describe(exc))
        self.metrics.hook_calls.labels(outcome=outcome).inc()
        self.metrics.hook_seconds.observe(trio.current_time() - started)
        if decision is None:
            decision = hook_failure(f"no answer within {timeout:g} s")
        if not decision.allowed and not decision.cacheable:
            log.warning(
                "auth hook: %s refused for %s (%s)", request.action, request.ip, decision.reason
            )
        return decision

    # --- web.access.AccessGate ----------------------------------------------------------------
    @property
    def read_auth(self) -> bool:
        return self.settings.read_auth

    @property
    def api_open(self) -> bool:
        return not (self.settings.api_token or auth_configured(self.settings))

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
        token = bearer_token(authorization) or query_token(query)
        request = AuthRequest("read", "hls", app, key, query, ip, token)
        decision = await self.check(request)
        if not decision.allowed:
            return Admission(False, 401 if token is None else 403, decision.reason)
        if not renew and token is not None:
            return Admission(True, token=token)
        return Admission(True, token=self.session_token(app, key, decision, token))

    async def admit_api(self, query: str, authorization: str | None, ip: str) -> Admission:
        token = bearer_token(authorization) or query_token(query)
        decision = await self.check(AuthRequest("api", "http", "", "", query, ip, token))
        if not decision.allowed:
            return Admission(False, 401 if token is None else 403, decision.reason)
        return Admission(True, operator=True)

    def session_token(self, app: str, key: str, decision: Decision, token: str | None) -> str:
        """The playback token a viewer's playlists carry on their URIs: a session of ours is
        renewed; a `gateway sign` link keeps its own (its expiry is the link's promise); any
        other admission (hook, JWT, open reads) starts a renewable session."""
        if token is not None and PlaybackSigner.looks_like_playback_token(token):
            # Admitted by the signer (it alone judges tokens of its own form).
            if decision.session is None or not decision.session.startswith(RENEWABLE):
                return token
            session = decision.session
        else:
            session = RENEWABLE + new_session_id()
        expires = math.ceil(time.time() + self.settings.read_token_ttl)
        return self.signer.sign(app, key, expires, session)

    def request(
        self,
        action: Action,
        protocol: Transport,
        app: str,
        key: str,
        query: str,
        ip: str,
    ) -> AuthRequest:
        """An RTMP request: the token is the query's ``token`` parameter."""
        return AuthRequest(action, protocol, app, key, query, ip, query_token(query))


def _describe(exc: httpx.HTTPError) -> str:
    cause = exc.__cause__ or exc.__context__
    text = str(exc) or type(exc).__name__
    if isinstance(cause, ssl.SSLError):
        return f"TLS error: {cause.reason or cause}"
    return text
