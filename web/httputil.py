"""Pure HTTP header helpers (no I/O): byte ranges and content-coding negotiation."""

from __future__ import annotations

from dataclasses import dataclass

# A Range header longer than this is ignored: one byte range never needs more (RFC 9110 §14.2
# lets a server ignore Range), and it bounds the work an attacker can make us do.
MAX_RANGE_HEADER = 200
# Digits in one range bound: 18 decimal digits is far beyond any segment, and keeps ints small.
MAX_RANGE_DIGITS = 18


@dataclass(frozen=True)
class ByteRange:
    """A satisfiable single byte range: ``start`` and ``end`` are inclusive (RFC 9110 §14.1.2)."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, complete_length: int) -> str:
        # RFC 9110 §14.4: "bytes first-last/complete-length".
        return f"bytes {self.start}-{self.end}/{complete_length}"


class Unsatisfiable:
    """Marker: the Range header is valid but no range overlaps the representation (-> 416)."""

    def content_range(self, complete_length: int) -> str:
        # RFC 9110 §15.5.17: a 416 carries "bytes */complete-length".
        return f"bytes */{complete_length}"


UNSATISFIABLE = Unsatisfiable()


def _bound(text: str) -> int | None:
    if not text or len(text) > MAX_RANGE_DIGITS or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def parse_byte_range(header: str | None, length: int) -> ByteRange | Unsatisfiable | None:
    """Interpret a Range header for a representation of ``length`` bytes.

    Returns None when the header must be ignored and the whole body served with 200: absent,
    malformed, another unit, or several ranges (RFC 9110 §14.2: a server MAY ignore Range; we
    serve single ranges only, which is all HLS clients ask for).
    """
    if header is None or len(header) > MAX_RANGE_HEADER:
        return None
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    spec = spec.strip()
    if "," in spec:
        return None
    first_text, dash, last_text = spec.partition("-")
    if not dash:
        return None
    first_text, last_text = first_text.strip(), last_text.strip()
    if not first_text:
        # suffix-range "-N": the last N bytes (RFC 9110 §14.1.2).
        suffix = _bound(last_text)
        if suffix is None:
            return None
        if suffix == 0 or length == 0:
            return UNSATISFIABLE
        return ByteRange(max(0, length - suffix), length - 1)
    first = _bound(first_text)
    if first is None:
        return None
    if last_text:
        last = _bound(last_text)
        if last is None or last < first:
            return None  # syntactically invalid -> ignore (RFC 9110 §14.1.1)
    else:
        last = length - 1
    if first >= length:
        return UNSATISFIABLE
    return ByteRange(first, min(last, length - 1))


def accepts_gzip(header: str | None) -> bool:
    """True when Accept-Encoding allows gzip (RFC 9110 §12.5.3), honouring q=0 refusals."""
    if not header:
        return False
    star: bool | None = None
    for item in header.split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = 0.0
        coding = coding.lower()
        if coding in ("gzip", "x-gzip"):
            return quality > 0
        if coding == "*":
            star = quality > 0
    return bool(star)


# What a cross-origin player may read besides the safelisted headers (Fetch §3.2.3): the range
# answer of a segment.
EXPOSE_HEADERS = "Content-Length, Content-Range, Accept-Ranges"


def cors_headers(
    allowed: tuple[str, ...], origin: str | None, vary: str | None, has_allow_origin: bool
) -> list[tuple[str, str]]:
    """The CORS headers to set (each replacing one of the same name) on a response.

    Fetch §3.2 (CORS protocol): "*" or an echo of an allowed ``origin`` plus Vary: Origin, merged
    into the response's own ``vary``. ``has_allow_origin``: the response already carries one.
    """
    out: list[tuple[str, str]] = []
    if "*" in allowed:
        out.append(("access-control-allow-origin", "*"))
    elif origin is not None and origin in allowed:
        out.append(("access-control-allow-origin", origin))
        out.append(("vary", "Origin" if vary is None else vary + ", Origin"))
    if out or has_allow_origin:
        out.append(("access-control-expose-headers", EXPOSE_HEADERS))
    return out


def preflight_headers(max_age: int) -> list[tuple[str, str]]:
    """Headers of the 204 answer to a CORS preflight (Fetch §3.2.2), in the order sent."""
    return [
        ("access-control-allow-methods", "GET, HEAD, OPTIONS"),
        # hls.js may ask for byte ranges of segments.
        ("access-control-allow-headers", "Range"),
        ("access-control-max-age", str(max_age)),
        ("allow", "GET, HEAD, OPTIONS"),
    ]


def plain_error(
    code: int, reason: str, message: str, extra: list[tuple[str, str]] | None = None
) -> tuple[list[tuple[str, str]], bytes]:
    """Headers and body of a plain-text error page. Never cacheable: an error may be temporary
    (stream not started yet). ``extra`` headers go before Cache-Control (e.g. Allow)."""
    body = f"{code} {reason}: {message}\n".encode()
    headers = [
        ("content-type", "text/plain; charset=utf-8"),
        ("content-length", str(len(body))),
        *(extra or ()),
        ("cache-control", "no-cache"),
    ]
    return headers, body
