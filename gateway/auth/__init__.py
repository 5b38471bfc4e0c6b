"""Access control (issue 14) as pure code: who may publish, read and use the API.

No sockets, files or clocks here: time comes in as ``now`` (Unix seconds), the hook's HTTP
exchange is done by the caller with ``AuthRequest.hook_body()`` and ``parse_hook_answer``.
The design is in docs/auth.md.
"""

from gateway.auth.hook import MAX_HOOK_BODY, DecisionCache, hook_failure, parse_hook_answer
from gateway.auth.playback import PlaybackSigner, new_session_id
from gateway.auth.policy import Authorizer
from gateway.auth.request import (
    Action,
    AuthRequest,
    Decision,
    NeedHook,
    Transport,
    bearer_token,
    match_path,
    query_token,
)
from gateway.auth.tokens import JwkSet, JwtVerifier, parse_jwks

__all__ = [
    "MAX_HOOK_BODY",
    "Action",
    "AuthRequest",
    "Authorizer",
    "Decision",
    "DecisionCache",
    "JwkSet",
    "JwtVerifier",
    "NeedHook",
    "PlaybackSigner",
    "Transport",
    "bearer_token",
    "hook_failure",
    "match_path",
    "new_session_id",
    "parse_hook_answer",
    "parse_jwks",
    "query_token",
]
