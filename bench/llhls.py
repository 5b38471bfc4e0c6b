"""What an LL-HLS player needs from a media playlist, and a lean HTTP/1.1 client to ask for it.

``parse`` reads the few tags a part-following player uses (draft-pantos-hls-rfc8216bis §4.4.4.9
EXT-X-PART, §4.4.5.3 EXT-X-PRELOAD-HINT, §4.4.3.7 EXT-X-PART-INF, §4.4.4.6 PROGRAM-DATE-TIME) with
plain line handling: the ``m3u8`` package costs more CPU per playlist than the whole request, and
the bench's client CPU is what limits how many viewers one core can simulate.

``HttpConnection`` is one keep-alive HTTP/1.1 connection on a raw trio socket (RFC 9112: one
request at a time, Content-Length or chunked bodies, gzip). httpx costs several times the CPU
per request, which at 1000 viewers x 2 requests per 0.2 s part is the difference between
measuring the server and measuring the client.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import datetime

import trio

# Bytes asked of the kernel per read: a 0.2 s part of a 2.5 Mbit/s stream is ~65 kB.
READ_SIZE = 262144


@dataclass(frozen=True, slots=True)
class Part:
    msn: int  # media sequence number of its parent segment
    index: int  # position in the parent segment, from 0
    uri: str
    duration: float
    byterange: tuple[int, int] | None  # (offset, length) of an EXT-X-PART BYTERANGE
    end_wall: float | None  # wall clock of the part's end, from PROGRAM-DATE-TIME (epoch s)


@dataclass(slots=True)
class LLPlaylist:
    media_sequence: int = 0
    part_target: float | None = None
    can_block_reload: bool = False
    parts: dict[tuple[int, int], Part] = field(default_factory=dict)
    open_msn: int = 0  # media sequence number of the segment being made (the next one)
    open_parts: int = 0  # parts of it listed so far
    hint: str | None = None  # EXT-X-PRELOAD-HINT TYPE=PART URI
    ended: bool = False
    has_pdt: bool = False
    segments: int = 0  # complete segments listed
    # msn -> wall clock of its start from PROGRAM-DATE-TIME (the tag's or carried on by EXTINF)
    starts: dict[int, float] = field(default_factory=dict)

    def next_after(self, msn: int, index: int) -> tuple[int, int]:
        """The part a player asks for after (msn, index): the next of the same segment, or
        part 0 of the next segment once this one is complete and (msn, index) was its last."""
        if msn < self.open_msn and (msn, index + 1) not in self.parts:
            return msn + 1, 0
        return msn, index + 1

    @property
    def edge(self) -> tuple[int, int]:
        """The part being made: what a player joining now asks for first."""
        return self.open_msn, self.open_parts


def _attrs(value: str) -> dict[str, str]:
    """Attribute list (RFC 8216 §4.2) -> dict; quoted strings unquoted."""
    out = {}
    rest = value
    while rest:
        name, _, rest = rest.partition("=")
        if rest.startswith('"'):
            end = rest.index('"', 1)
            out[name.strip()] = rest[1:end]
            rest = rest[end + 1 :].lstrip(",")
        else:
            val, _, rest = rest.partition(",")
            out[name.strip()] = val
    return out


def _pdt(value: str) -> float:
    return datetime.fromisoformat(value.strip()).timestamp()


def parse(text: str) -> LLPlaylist:
    pl = LLPlaylist()
    seq0 = 0
    complete = 0
    seg_start: float | None = None  # wall clock start of the segment being read
    pending_pdt: float | None = None
    cursor = 0.0  # seconds into the segment being read (sum of its parts so far)
    parts: list[tuple[str, float, tuple[int, int] | None]] = []
    extinf: float | None = None
    last_range_end = 0
    for line in text.splitlines():
        if not line:
            continue
        if line[0] != "#":  # a segment URI completes the segment
            msn = seq0 + complete
            if pending_pdt is not None:
                seg_start, pending_pdt = pending_pdt, None
            if seg_start is not None:
                pl.starts[msn] = seg_start
            _add_parts(pl, msn, parts, seg_start)
            if seg_start is not None and extinf is not None:
                seg_start += extinf
            complete += 1
            parts, extinf, cursor = [], None, 0.0
            continue
        tag, _, value = line.partition(":")
        if tag == "#EXT-X-PART":
            a = _attrs(value)
            dur = float(a["DURATION"])
            br = None
            if "BYTERANGE" in a:
                length, _, off = a["BYTERANGE"].partition("@")
                offset = int(off) if off else last_range_end
                br = (offset, int(length))
                last_range_end = offset + int(length)
            parts.append((a["URI"], dur, br))
            cursor += dur
        elif tag == "#EXTINF":
            extinf = float(value.partition(",")[0])
        elif tag == "#EXT-X-PROGRAM-DATE-TIME":
            pending_pdt = _pdt(value)
            pl.has_pdt = True
        elif tag == "#EXT-X-MEDIA-SEQUENCE":
            seq0 = int(value)
        elif tag == "#EXT-X-PRELOAD-HINT":
            a = _attrs(value)
            if a.get("TYPE") == "PART":
                pl.hint = a.get("URI")
        elif tag == "#EXT-X-PART-INF":
            pl.part_target = float(_attrs(value)["PART-TARGET"])
        elif tag == "#EXT-X-SERVER-CONTROL":
            pl.can_block_reload = _attrs(value).get("CAN-BLOCK-RELOAD") == "YES"
        elif tag == "#EXT-X-ENDLIST":
            pl.ended = True
        elif tag == "#EXT-X-SKIP":
            complete += int(_attrs(value)["SKIPPED-SEGMENTS"])
            seg_start = None  # the skipped durations are unknown here
    pl.media_sequence = seq0
    pl.segments = complete
    pl.open_msn = seq0 + complete
    if pending_pdt is not None:
        seg_start = pending_pdt
    if seg_start is not None:
        pl.starts[pl.open_msn] = seg_start
    _add_parts(pl, pl.open_msn, parts, seg_start)
    pl.open_parts = len(parts)
    return pl


def _add_parts(
    pl: LLPlaylist,
    msn: int,
    parts: list[tuple[str, float, tuple[int, int] | None]],
    start: float | None,
) -> None:
    end = start
    for index, (uri, dur, br) in enumerate(parts):
        end = None if end is None else end + dur
        pl.parts[msn, index] = Part(msn, index, uri, dur, br, end)


def resolve(base_path: str, uri: str) -> str:
    """A playlist-relative URI as a request target on the same server (RFC 3986 §5.2, the
    cases playlists use: absolute path or a name beside the playlist)."""
    if uri.startswith("/"):
        return uri
    if "://" in uri:
        rest = uri.split("://", 1)[1]
        return "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    return base_path.rsplit("/", 1)[0] + "/" + uri


class HttpError(Exception):
    pass


@dataclass(slots=True)
class Response:
    status: int
    body: bytes  # as sent (b"" when the caller did not keep it)
    size: int  # body bytes on the wire
    gzip: bool  # Content-Encoding: gzip

    def text(self) -> str:
        data = zlib.decompress(self.body, wbits=31) if self.gzip and self.body else self.body
        return data.decode("utf-8", "replace")


class HttpConnection:
    """One keep-alive connection; ``get`` reconnects once if the server had closed it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._sock: trio.socket.SocketType | None = None
        self._buf = bytearray()
        self._host_header = f"Host: {host}:{port}\r\n".encode()

    async def _connect(self) -> trio.socket.SocketType:
        sock = trio.socket.socket()
        try:
            await sock.connect((self.host, self.port))
        except BaseException:
            sock.close()
            raise
        self._buf.clear()
        self._sock = sock
        return sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def get(self, target: str, headers: bytes = b"", *, keep_body: bool = True) -> Response:
        fresh = self._sock is None
        sock = self._sock or await self._connect()
        request = b"GET " + target.encode() + b" HTTP/1.1\r\n" + self._host_header + headers
        request += b"\r\n"
        try:
            await sock.send(request)  # small: one send takes it all on loopback
            return await self._response(sock, keep_body)
        except (OSError, HttpError):
            self.close()
            if fresh:
                raise
        # The server closed an idle keep-alive connection: one retry on a new one.
        sock = await self._connect()
        await sock.send(request)
        return await self._response(sock, keep_body)

    async def _fill(self, sock: trio.socket.SocketType) -> None:
        data = await sock.recv(READ_SIZE)
        if not data:
            raise HttpError("connection closed by the server")
        self._buf += data

    async def _response(self, sock: trio.socket.SocketType, keep_body: bool) -> Response:
        buf = self._buf
        while (end := buf.find(b"\r\n\r\n")) < 0:
            await self._fill(sock)
        head = bytes(buf[:end]).split(b"\r\n")
        del buf[: end + 4]
        try:
            status = int(head[0].split(b" ", 2)[1])
        except (IndexError, ValueError):
            raise HttpError(f"bad status line {head[0][:80]!r}") from None
        length = None
        chunked = gz = close = False
        for line in head[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"content-encoding":
                gz = b"gzip" in value.lower()
            elif name == b"connection":
                close = b"close" in value.lower()
        if chunked:
            body = await self._chunked(sock)
        elif length is not None:
            while len(buf) < length:
                await self._fill(sock)
            body = bytes(buf[:length]) if keep_body else b""
            del buf[:length]
        else:  # delimited by close (RFC 9112 §6.3)
            try:
                while True:
                    await self._fill(sock)
            except HttpError:
                pass
            body, close = bytes(buf), True
            buf.clear()
        size = len(body) if length is None else length
        if close:
            self.close()
        return Response(status, body, size, gz)

    async def _chunked(self, sock: trio.socket.SocketType) -> bytes:
        buf = self._buf
        out = bytearray()
        while True:
            while (end := buf.find(b"\r\n")) < 0:
                await self._fill(sock)
            size = int(bytes(buf[:end]).split(b";")[0], 16)
            del buf[: end + 2]
            while len(buf) < size + 2:
                await self._fill(sock)
            out += buf[:size]
            del buf[: size + 2]
            if size == 0:
                return bytes(out)
