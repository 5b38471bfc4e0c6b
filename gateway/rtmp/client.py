"""Client role of the RTMP connection: a publisher as FFmpeg and librtmp are (docs/protocol.md §4).

:class:`ClientMixin` gives :class:`~gateway.rtmp.connection.Connection` its client methods. They
only queue bytes (h11 style): ``connect`` waits for the handshake, stream commands wait for the
connect ``_result``. :func:`handle_command` turns the server's answers into events
(ConnectResult, StreamCreated, Status, CallFailed). Split from connection.py to keep one idea
per module; the server side of the same commands lives in commands.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, cast

from gateway.rtmp import amf0, ertmp, events
from gateway.rtmp import messages as m
from gateway.rtmp.errors import LocalProtocolError, RemoteProtocolError

if TYPE_CHECKING:
    from gateway.rtmp.connection import Connection

__all__ = ["FLASH_VER", "ClientMixin", "ClientState", "handle_command", "set_data_frame"]

# What we call ourselves in connect's flashVer; "FMLE/3.0" makes servers treat us as an encoder,
# like FFmpeg's "FMLE/3.0 (compatible; Lavf...)".
FLASH_VER: Final = "FMLE/3.0 (compatible; rtmp-gateway)"
CONNECT_SUCCESS: Final = "NetConnection.Connect.Success"
PUBLISH_START: Final = "NetStream.Publish.Start"
PLAY_START: Final = "NetStream.Play.Start"
# SetBufferLength a player announces after play (§7.1.7); FFmpeg sends 3000 ms too.
PLAY_BUFFER_MS: Final = 3000
SET_DATA_FRAME: Final = "@setDataFrame"
_MAX_STREAM_ID: Final = 0xFFFFFFFF  # §6.1.1: message stream ids are u32


def set_data_frame(body: bytes) -> bytes:
    """Wrap a data body ("onMetaData", {...}) as publishers send it (docs/protocol.md §4.5)."""
    return amf0.encode(SET_DATA_FRAME) + body


@dataclass
class ClientState:
    next_txn: float = 1.0  # §7.2.1.1: connect is transaction 1, later calls count up
    calls: dict[float, str] = field(default_factory=dict)  # txn -> command awaiting its answer
    publish_after: dict[float, tuple[str, str]] = field(default_factory=dict)  # createStream txn
    play_after: dict[float, tuple[str, float]] = field(default_factory=dict)  # createStream txn
    connect_obj: dict[str, Any] | None = None
    deferred: list[Callable[[], object]] = field(default_factory=list)  # until connect succeeds
    window_sent: int = 0  # last Window Ack Size we announced (§5.4.5)


class ClientMixin:
    """Publisher and player methods of Connection(role=Role.CLIENT)."""

    def connect(
        self,
        app: str,
        tc_url: str,
        *,
        flash_ver: str = FLASH_VER,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """§7.2.1.1 connect; sent as soon as the handshake is done. ``extra`` adds or
        overrides command object members (e.g. fourCcList for Enhanced RTMP)."""
        from gateway.rtmp.connection import State

        conn = _conn(self)
        cli = _client(conn)
        if cli.connect_obj is not None or conn.state not in (State.HANDSHAKE, State.WAIT_CONNECT):
            raise LocalProtocolError("duplicate-connect")
        obj: dict[str, Any] = {"app": app, "type": "nonprivate", "flashVer": flash_ver}
        obj["tcUrl"] = tc_url
        obj.update(extra or {})
        cli.connect_obj = obj
        if conn.state is State.WAIT_CONNECT:
            conn._send_connect()

    def create_stream(self) -> None:
        """§7.2.1.3; the answer is a StreamCreated event."""
        conn = _conn(self)
        _when_connected(conn, lambda: _call(conn, "createStream"))

    def publish(
        self, name: str, publish_type: str = "live", *, stream_id: int | None = None
    ) -> None:
        """Publish ``name`` (query string allowed). Without ``stream_id``: releaseStream,
        FCPublish and createStream, then publish on the new stream, FFmpeg's order. With it:
        only publish on that created stream (§7.2.2.6). The answer is a Status event."""
        conn = _conn(self)
        if stream_id is not None:
            _client(conn)
            _publish_on(conn, stream_id, name, publish_type)
            return

        def sequence() -> None:
            _call(conn, "releaseStream", name)
            _call(conn, "FCPublish", name)
            _client(conn).publish_after[_call(conn, "createStream")] = (name, publish_type)

        _when_connected(conn, sequence)

    def play(self, name: str, *, start: float = -1000.0) -> None:
        """Play ``name`` (query allowed): createStream, then play on the new stream and announce
        a buffer length, as FFmpeg does (§7.2.2.1; start -1000: live only). The answer is a
        Status event (NetStream.Play.Start, or an error such as StreamNotFound); media then
        arrives as Media events."""
        conn = _conn(self)

        def sequence() -> None:
            _client(conn).play_after[_call(conn, "createStream")] = (name, start)

        _when_connected(conn, sequence)

    def delete_stream(self, stream_id: int) -> None:
        """FCUnpublish (if publishing) then deleteStream (§7.2.2.3), as FFmpeg closes."""
        from gateway.rtmp.connection import State, StreamState

        conn = _conn(self)
        _client(conn)
        if conn.state is not State.CONNECTED:
            raise LocalProtocolError("not-connected")
        st = conn.streams.pop(stream_id, None)
        if st is None:
            raise LocalProtocolError("unknown-stream")
        if st.state in (StreamState.PUBLISHING, StreamState.PUBLISH_PENDING):
            _call(conn, "FCUnpublish", st.name)
        _call(conn, "deleteStream", float(stream_id))

    # ---- hooks called by Connection -----------------------------------------------------

    def _send_connect(self) -> None:
        from gateway.rtmp.connection import State

        conn = _conn(self)
        cli = _client(conn)
        assert cli.connect_obj is not None
        # Our chunk size first (as OBS does) so even connect goes out in large chunks (§5.4.1).
        conn._send_control(m.SetChunkSize(conn.limits.out_chunk_size))
        _call(conn, "connect", obj=cli.connect_obj)
        cli.window_sent = conn.limits.window_ack_size
        conn._send_control(m.WindowAckSize(cli.window_sent))  # §5.4.4, FFmpeg sends it too
        conn._state = State.CONNECT_PENDING

    def _on_peer_bandwidth(self, size: int) -> None:
        """§5.4.5: answer Set Peer Bandwidth with Window Ack Size if it differs from ours."""
        conn = _conn(self)
        cli = conn._cli
        if cli is not None and size != cli.window_sent:
            cli.window_sent = size
            conn._send_control(m.WindowAckSize(size))


def _client(conn: Connection) -> ClientState:
    conn._check_error()
    if conn._cli is None:
        raise LocalProtocolError("not-a-client")
    return conn._cli


def _call(conn: Connection, name: str, *args: Any, obj: Any = None, stream_id: int = 0) -> float:
    """Send a command that expects _result/_error, remembering its transaction id."""
    from gateway.rtmp.connection import CSID_COMMAND, CSID_STREAM

    cli = _client(conn)
    txn = cli.next_txn
    cli.next_txn += 1
    cli.calls[txn] = name
    csid = CSID_STREAM if stream_id else CSID_COMMAND
    conn.send_command(csid, stream_id, name, txn, obj, *args)
    return txn


def _when_connected(conn: Connection, action: Callable[[], object]) -> None:
    from gateway.rtmp.connection import State

    cli = _client(conn)
    if conn.state is State.CONNECTED:
        action()
    elif conn.state in (State.HANDSHAKE, State.WAIT_CONNECT, State.CONNECT_PENDING):
        cli.deferred.append(action)
    else:
        raise LocalProtocolError(f"wrong-state: {conn.state.value}")


def _publish_on(conn: Connection, stream_id: int, name: str, publish_type: str) -> None:
    from gateway.rtmp.connection import StreamState

    st = conn.streams.get(stream_id)
    if st is None or st.state is not StreamState.CREATED:
        raise LocalProtocolError("stream-not-created")
    st.name, st.state = name, StreamState.PUBLISH_PENDING
    _call(conn, "publish", name, publish_type, stream_id=stream_id)


def _info(cmd: m.Command) -> dict[str, Any]:
    """The information object: first argument after the command object (§7.2.1.1)."""
    v = cmd.args[0] if cmd.args else None
    return dict(v) if isinstance(v, dict) else {}


def _text(info: dict[str, Any], key: str) -> str:
    v = info.get(key)
    return v if isinstance(v, str) else ""


def handle_command(conn: Connection, stream_id: int, cmd: m.Command) -> None:
    """Answers from the server. Calls the server makes on us (onBWDone, onFCPublish, ...)
    need no reply from an encoder and are ignored, as librtmp and FFmpeg do."""
    from gateway.rtmp.connection import State

    cli = _client(conn)
    if conn.state is State.REJECTED:
        return
    if cmd.name in ("_result", "_error"):
        called = cli.calls.pop(cmd.transaction_id, None)
        if called == "connect":
            _on_connect_reply(conn, cli, cmd)
        elif called == "createStream":
            _on_create_reply(conn, cli, cmd)
        elif called is not None and cmd.name == "_error":
            info = _info(cmd)
            conn._queue(events.CallFailed(called, _text(info, "code"), _text(info, "description")))
    elif cmd.name == "onStatus":
        _on_status(conn, stream_id, _info(cmd))


def _on_connect_reply(conn: Connection, cli: ClientState, cmd: m.Command) -> None:
    from gateway.rtmp.connection import State

    info = _info(cmd)
    ok = cmd.name == "_result" and _text(info, "level") != "error"
    code = _text(info, "code") or (CONNECT_SUCCESS if ok else "")
    props = dict(cmd.command_object) if isinstance(cmd.command_object, dict) else {}
    conn.peer_caps = ertmp.parse_capabilities(props)[0]  # a malformed hint is just ignored
    conn._queue(events.ConnectResult(ok, code, _text(info, "description"), info, props))
    deferred, cli.deferred = cli.deferred, []
    if not ok:
        conn._state = State.REJECTED
        return
    conn._state = State.CONNECTED
    for action in deferred:
        action()


def _on_create_reply(conn: Connection, cli: ClientState, cmd: m.Command) -> None:
    """§7.2.1.3: _result(txn, null, stream id); librtmp reads the id at AMF index 3."""
    from gateway.rtmp.connection import MessageStream

    pending = cli.publish_after.pop(cmd.transaction_id, None)
    if cmd.name == "_error":
        cli.play_after.pop(cmd.transaction_id, None)
        info = _info(cmd)
        conn._queue(
            events.CallFailed("createStream", _text(info, "code"), _text(info, "description"))
        )
        return
    sid = cmd.args[0] if cmd.args else None
    if (
        isinstance(sid, bool)
        or not isinstance(sid, int | float)
        or not 0 < sid <= _MAX_STREAM_ID
        or sid != int(sid)
    ):
        raise RemoteProtocolError("bad-stream-id")
    sid = int(sid)
    conn.streams[sid] = MessageStream()
    conn._queue(events.StreamCreated(sid))
    if pending is not None:
        _publish_on(conn, sid, *pending)
    play = cli.play_after.pop(cmd.transaction_id, None)
    if play is not None:
        _play_on(conn, sid, *play)


def _play_on(conn: Connection, stream_id: int, name: str, start: float) -> None:
    from gateway.rtmp.connection import CSID_STREAM, StreamState

    st = conn.streams[stream_id]
    st.name, st.state = name, StreamState.PLAY_PENDING
    # play has no _result: transaction id 0, answered with onStatus (§7.2.2.1).
    conn.send_command(CSID_STREAM, stream_id, "play", 0.0, None, name, start)
    conn._send_control(m.user_control(m.SetBufferLength(stream_id, PLAY_BUFFER_MS)))


def _on_status(conn: Connection, stream_id: int, info: dict[str, Any]) -> None:
    """§7.2.2: onStatus(0, null, {level, code, description}); moves a pending publish on."""
    from gateway.rtmp.connection import StreamState

    if _text(info, "code") == ertmp.RECONNECT_REQUEST and stream_id == 0:
        # E-RTMP v2: a NetConnection status, not one of a stream's (never remapped below).
        cli = _client(conn)
        ref = _text(info, "tcUrl")
        current = _text(cli.connect_obj or {}, "tcUrl")
        tc_url = ertmp.resolve_tc_url(current, ref) if ref else None
        conn._queue(events.ReconnectRequest(tc_url, _text(info, "description")))
        return
    waiting = (StreamState.PUBLISH_PENDING, StreamState.PLAY_PENDING)
    pending = [sid for sid, s in conn.streams.items() if s.state in waiting]
    if stream_id not in conn.streams and len(pending) == 1:
        stream_id = pending[0]  # some servers answer on message stream 0
    level, code = _text(info, "level"), _text(info, "code")
    st = conn.streams.get(stream_id)
    if st is not None and st.state in waiting:
        started = PUBLISH_START if st.state is StreamState.PUBLISH_PENDING else PLAY_START
        if code == started:
            st.state = StreamState.PUBLISHING if started == PUBLISH_START else StreamState.PLAYING
        elif level == "error":
            st.state = StreamState.CREATED
    conn._queue(events.Status(stream_id, level, code, _text(info, "description"), info))


def _conn(mixin: ClientMixin) -> Connection:
    return cast("Connection", mixin)  # ClientMixin is only ever a base of Connection
