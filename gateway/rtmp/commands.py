"""Server-side handling of command messages (RTMP 1.0 §7.2, docs/protocol.md §4).

Split out of connection.py to keep one idea per module: this file maps each command a
publisher or player sends to an event and/or an immediate reply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from gateway.rtmp import ertmp, events
from gateway.rtmp.errors import RemoteProtocolError
from gateway.rtmp.messages import Command

if TYPE_CHECKING:
    from gateway.rtmp.connection import Connection, MessageStream

__all__ = ["handle_command", "split_query"]

CALL_FAILED: Final = "NetConnection.Call.Failed"
# Replies from a client to our (nonexistent) calls, or notifications: never answered.
_SILENT: Final = frozenset(("_result", "_error", "onStatus", "onBWDone"))


def split_query(value: str) -> tuple[str, str]:
    """'live?token=x' -> ('live', 'token=x')."""
    base, _, query = value.partition("?")
    return base, query


def _str_arg(cmd: Command, index: int) -> str | None:
    v = cmd.args[index] if len(cmd.args) > index else None
    return v if isinstance(v, str) else None


def _num_arg(cmd: Command, index: int, default: float) -> float:
    v = cmd.args[index] if len(cmd.args) > index else None
    if isinstance(v, bool) or not isinstance(v, int | float) or v != v:
        return default
    return float(v)


def handle_command(conn: Connection, stream_id: int, cmd: Command) -> None:
    from gateway.rtmp.connection import CSID_COMMAND, State

    state = conn.state
    if state is State.REJECTED:
        return  # connect was refused: drain until the peer closes
    if cmd.name == "connect":
        if state is not State.WAIT_CONNECT:
            raise RemoteProtocolError("duplicate-connect")
        _connect(conn, cmd)
        return
    if state is State.WAIT_CONNECT:
        raise RemoteProtocolError("command-before-connect")
    handler = _HANDLERS.get(cmd.name)
    if handler is not None:
        handler(conn, stream_id, cmd)
    elif cmd.transaction_id > 0 and cmd.name not in _SILENT:
        # §7.2: a call we do not implement gets _error, and the connection lives on.
        info = {"level": "error", "code": CALL_FAILED, "description": f"unknown: {cmd.name}"}
        conn.send_command(CSID_COMMAND, 0, "_error", cmd.transaction_id, None, info)


def _connect(conn: Connection, cmd: Command) -> None:
    """§7.2.1.1; query string taken from app, else from tcUrl (OBS puts it in both)."""
    from gateway.rtmp.connection import State

    params: dict[str, Any] = (
        dict(cmd.command_object) if isinstance(cmd.command_object, dict) else {}
    )
    raw_app = params.get("app")
    app, query = split_query(raw_app if isinstance(raw_app, str) else "")
    tc_url = params.get("tcUrl", params.get("tcurl"))
    if not isinstance(tc_url, str):
        tc_url = None
    if not query and tc_url is not None:
        query = split_query(tc_url)[1]
    enc = params.get("objectEncoding", 0.0)
    conn._object_encoding = float(enc) if isinstance(enc, int | float) else 0.0
    conn._connect_txn = cmd.transaction_id
    caps, problems = ertmp.parse_capabilities(params)
    conn.peer_caps = caps
    conn._state = State.CONNECT_PENDING
    conn._queue(
        events.ConnectRequest(cmd.transaction_id, app, tc_url, params, query, caps, tuple(problems))
    )


def _result(conn: Connection, cmd: Command, *values: Any) -> None:
    from gateway.rtmp.connection import CSID_COMMAND

    if cmd.transaction_id > 0:
        conn.send_command(CSID_COMMAND, 0, "_result", cmd.transaction_id, None, *values)


def _release_stream(conn: Connection, stream_id: int, cmd: Command) -> None:
    _result(conn, cmd)
    conn._queue(events.ReleaseStream(split_query(_str_arg(cmd, 0) or "")[0]))


def _fc_publish(conn: Connection, stream_id: int, cmd: Command) -> None:
    from gateway.rtmp.connection import CSID_COMMAND

    name = split_query(_str_arg(cmd, 0) or "")[0]  # names in events never carry the query
    info = {"code": "NetStream.Publish.Start", "description": name}
    conn.send_command(CSID_COMMAND, 0, "onFCPublish", 0.0, None, info)
    conn._queue(events.FCPublish(name))


def _fc_unpublish(conn: Connection, stream_id: int, cmd: Command) -> None:
    from gateway.rtmp.connection import CSID_COMMAND, StreamState

    name = split_query(_str_arg(cmd, 0) or "")[0]
    info = {"code": "NetStream.Unpublish.Success", "description": name}
    conn.send_command(CSID_COMMAND, 0, "onFCUnpublish", 0.0, None, info)
    # FCUnpublish travels on stream 0 (librtmp): find the stream by its published name.
    found = 0
    for sid, st in conn.streams.items():
        if st.name == name and st.state in (StreamState.PUBLISHING, StreamState.PUBLISH_PENDING):
            st.state = StreamState.CREATED
            found = sid
            break
    conn._queue(events.Unpublish(found, name))


def _create_stream(conn: Connection, stream_id: int, cmd: Command) -> None:
    """§7.2.1.3: ids from 1, the smallest free one, at most max_message_streams alive."""
    from gateway.rtmp.connection import MessageStream

    if len(conn.streams) >= conn.limits.max_message_streams:
        limit = conn.limits.max_message_streams
        raise RemoteProtocolError("too-many-streams", f"createStream past {limit} open streams")
    sid = 1
    while sid in conn.streams:
        sid += 1
    conn.streams[sid] = MessageStream()
    _result(conn, cmd, float(sid))
    conn._queue(events.StreamCreated(sid))


def _stream(conn: Connection, stream_id: int) -> MessageStream:
    st = conn.streams.get(stream_id)
    if st is None:
        raise RemoteProtocolError("unknown-stream", f"command on stream {stream_id}, never created")
    return st


def _publish(conn: Connection, stream_id: int, cmd: Command) -> None:
    """§7.2.2.6: publish(0, null, name, type) on the created stream."""
    from gateway.rtmp.connection import StreamState

    st = _stream(conn, stream_id)
    if st.state is not StreamState.CREATED:
        raise RemoteProtocolError("stream-busy", f"publish on stream {stream_id}, already in use")
    name, query = split_query(_str_arg(cmd, 0) or "")
    st.name, st.state = name, StreamState.PUBLISH_PENDING
    conn._queue(events.PublishRequest(stream_id, name, query, _str_arg(cmd, 1) or "live"))


def _play(conn: Connection, stream_id: int, cmd: Command) -> None:
    """§7.2.2.1: play(0, null, name, start=-2, duration=-1, reset=true)."""
    from gateway.rtmp.connection import StreamState

    st = _stream(conn, stream_id)
    if st.state is not StreamState.CREATED:
        raise RemoteProtocolError("stream-busy", f"publish on stream {stream_id}, already in use")
    name, query = split_query(_str_arg(cmd, 0) or "")
    reset_v = cmd.args[3] if len(cmd.args) > 3 else True
    reset = reset_v if isinstance(reset_v, bool) else True
    st.name, st.state = name, StreamState.PLAY_PENDING
    start, duration = _num_arg(cmd, 1, -2.0), _num_arg(cmd, 2, -1.0)
    conn._queue(events.PlayRequest(stream_id, name, query, start, duration, reset))


def _delete_stream(conn: Connection, stream_id: int, cmd: Command) -> None:
    """§7.2.2.3: deleteStream(0, null, id) frees the id."""
    sid = int(_num_arg(cmd, 0, -1.0))
    if conn.streams.pop(sid, None) is not None:
        conn._clocks.pop(sid, None)
        conn._queue(events.StreamDeleted(sid))


def _close_stream(conn: Connection, stream_id: int, cmd: Command) -> None:
    """closeStream on the stream itself: back to CREATED (the id stays allocated)."""
    from gateway.rtmp.connection import StreamState

    st = conn.streams.get(stream_id)
    if st is not None:
        st.state, st.name = StreamState.CREATED, ""
        conn._queue(events.StreamDeleted(stream_id))


def _pause(conn: Connection, stream_id: int, cmd: Command) -> None:
    """§7.2.2.8: pause(0, null, pause flag, position ms); the server layer answers Notify."""
    from gateway.rtmp.connection import StreamState

    st = conn.streams.get(stream_id)
    flag = cmd.args[0] if cmd.args else None
    if st is None or st.state is not StreamState.PLAYING or not isinstance(flag, bool):
        return  # nothing to pause: ignored, as FMS and nginx-rtmp do
    conn._queue(events.PauseRequest(stream_id, flag, _num_arg(cmd, 1, 0.0)))


def _fc_subscribe(conn: Connection, stream_id: int, cmd: Command) -> None:
    """FCSubscribe(name) (CDN edge convention): acknowledged with onFCSubscribe."""
    from gateway.rtmp.connection import CSID_COMMAND

    name = split_query(_str_arg(cmd, 0) or "")[0]
    info = {"code": "NetStream.Play.Start", "description": name}
    conn.send_command(CSID_COMMAND, 0, "onFCSubscribe", 0.0, None, info)


def _get_stream_length(conn: Connection, stream_id: int, cmd: Command) -> None:
    _result(conn, cmd, 0.0)  # live streams have no length


_HANDLERS: Final = {
    "releaseStream": _release_stream,
    "FCPublish": _fc_publish,
    "FCUnpublish": _fc_unpublish,
    "createStream": _create_stream,
    "publish": _publish,
    "play": _play,
    "deleteStream": _delete_stream,
    "closeStream": _close_stream,
    "getStreamLength": _get_stream_length,
    "pause": _pause,
    "FCSubscribe": _fc_subscribe,
}
