"""The HTTP auth hook without the HTTP: reading its answer, and remembering answers for a while.

The I/O layer POSTs ``AuthRequest.hook_body()`` and passes the status and body here. Everything
that is not a clear yes is a no (fail-closed); a no that nobody decided (the hook is down,
answers 5xx or garbage) is not cached, so the next try asks again.
"""

from __future__ import annotations

import json
from collections import OrderedDict

from gateway.auth.request import Action, AuthRequest, Decision
from segmenter.names import valid_name

# A hook answers a few bytes ({"name": "..."}); a bigger body is a broken or hostile hook, and
# parsing megabytes of JSON in the event loop would stall every connection.
MAX_HOOK_BODY = 64 * 1024


def parse_hook_answer(status: int, body: bytes, *, action: Action) -> Decision:
    """2xx allows (its JSON object body may rename a publish: {"name": "KEY2"}); any other
    status denies. A 4xx is the hook's answer and may be cached; 5xx, 1xx/3xx (the client does
    not follow redirects) and unreadable 2xx bodies are failures, not answers."""
    if not 200 <= status <= 299:
        return Decision(False, f"hook answered HTTP {status}", cacheable=400 <= status <= 499)
    if len(body) > MAX_HOOK_BODY:
        return Decision(False, "hook answered a body that is too large", cacheable=False)
    if not body.strip():
        return Decision(True, "allowed by the auth hook")
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        answer = None
    if not isinstance(answer, dict):
        return Decision(False, "hook answered a body that is not JSON", cacheable=False)
    name = answer.get("name")
    if action != "publish" or name is None:
        return Decision(True, "allowed by the auth hook")
    if not isinstance(name, str) or not valid_name(name):
        return Decision(False, "hook answered an invalid name", cacheable=False)
    return Decision(True, "allowed by the auth hook", name=name)


def hook_failure(cause: str) -> Decision:
    """The hook could not be asked (timeout, refused, DNS...): deny, and ask again next time."""
    return Decision(False, f"auth hook unavailable: {cause}", cacheable=False)


class DecisionCache:
    """Hook answers per AuthRequest.cache_key() for ``ttl`` seconds; at most ``max_entries``,
    the oldest evicted first. ``ttl`` 0 turns it off (the issue's default)."""

    def __init__(self, ttl: float, max_entries: int = 10000) -> None:
        if not ttl >= 0:  # also refuses NaN
            raise ValueError(f"cache ttl must be >= 0 seconds, not {ttl}")
        if max_entries < 1:
            raise ValueError(f"cache max_entries must be >= 1, not {max_entries}")
        self.ttl = ttl
        self.max_entries = max_entries
        # Insertion order is expiry order (one ttl, ``now`` does not go back), so the front is
        # both the oldest and the first to expire.
        self._entries: OrderedDict[tuple[str, ...], tuple[float, Decision]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, request: AuthRequest, now: float) -> Decision | None:
        if self.ttl == 0:
            return None
        key = request.cache_key()
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, decision = entry
        if now >= expires:
            del self._entries[key]
            return None
        return decision

    def put(self, request: AuthRequest, decision: Decision, now: float) -> None:
        if self.ttl == 0 or not decision.cacheable:
            return
        key = request.cache_key()
        self._entries.pop(key, None)
        # Drop what has expired at the front, then the oldest while still full.
        while self._entries:
            expires, _ = next(iter(self._entries.values()))
            if now < expires and len(self._entries) < self.max_entries:
                break
            self._entries.popitem(last=False)
        self._entries[key] = (now + self.ttl, decision)
