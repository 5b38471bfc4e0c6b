"""At most N HTTP requests in flight per client address (429 past it).

A blocking LL-HLS reload holds its request open for up to three target durations, so one
address opening thousands of them would hold as many tasks and sockets. Counting requests in
flight (not connections, which hypercorn accepts out of our sight) bounds exactly that; an
HTTP/1.1 browser has at most six connections per origin anyway. Viewers behind one NAT share an
address, hence a generous default (``http_max_requests_per_ip``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope

from web.access import client_ip
from web.httputil import plain_error

if TYPE_CHECKING:
    from collections.abc import Coroutine
    from typing import Any

    ASGIApp = Callable[[Scope, ASGIReceiveCallable, ASGISendCallable], Coroutine[Any, Any, None]]

__all__ = ["per_address_limit"]


def per_address_limit(
    inner: ASGIApp, limit: int, on_refusal: Callable[[], None] | None = None
) -> ASGIApp:
    """Wrap ``inner``: an address with ``limit`` requests in flight gets 429 for the next one
    (RFC 6585 §4) until one ends. ``limit`` 0 = no limit."""
    if limit <= 0:
        return inner
    in_flight: dict[str, int] = {}

    async def asgi(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] != "http":
            await inner(scope, receive, send)
            return
        ip = client_ip(scope.get("client"))
        count = in_flight.get(ip, 0)
        if count >= limit:
            if on_refusal is not None:
                on_refusal()
            message = f"{limit} requests from {ip or 'this address'} are already in progress"
            headers, body = plain_error(429, "Too Many Requests", message, [("retry-after", "1")])
            await send(
                {
                    "type": "http.response.start",
                    "status": 429,
                    "headers": [(n.encode(), v.encode()) for n, v in headers],
                }
            )
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        in_flight[ip] = count + 1
        try:
            await inner(scope, receive, send)
        finally:
            left = in_flight.pop(ip) - 1
            if left:
                in_flight[ip] = left

    return asgi
