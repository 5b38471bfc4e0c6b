"""What an RTMP connection's command handlers share with it: states, chunk stream ids, the
message stream record, the client role's bookkeeping, and the surface they act through.

``connection.Connection`` implements :class:`ConnectionCore`; the server-side handlers
(``commands``) and the client role (``client``) are written against the protocol, so neither
imports the connection module that dispatches to them and dependencies run one way:
``connection -> commands, client -> base``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from gateway.rtmp import ertmp
from gateway.rtmp import messages as m
from gateway.rtmp.events import Event
from gateway.rtmp.limits import Limits

# Outbound chunk stream ids (peers must not rely on numbers; these follow nginx-rtmp).
CSID_CONTROL: Final = 2  # §5.4: protocol control on csid 2
CSID_COMMAND: Final = 3  # NetConnection commands
CSID_STREAM: Final = 5  # NetStream commands, status and data
CSID_AUDIO: Final = 6
CSID_VIDEO: Final = 7


class Role(enum.Enum):
    SERVER = "server"
    CLIENT = "client"


class State(enum.Enum):
    HANDSHAKE = "handshake"  # waiting for C0+C1 (server) or S0+S1+S2 (client)
    HANDSHAKE_ACK = "handshake-ack"  # server: S0+S1+S2 sent, waiting for C2
    WAIT_CONNECT = "wait-connect"  # handshake done, no connect yet
    CONNECT_PENDING = "connect-pending"  # ConnectRequest surfaced, no decision yet
    CONNECTED = "connected"
    REJECTED = "rejected"  # connect refused: input is drained until EOF
    CLOSED = "closed"  # EOF seen and processed
    ERROR = "error"  # sticky after a remote protocol error


class StreamState(enum.Enum):
    CREATED = "created"
    PUBLISH_PENDING = "publish-pending"
    PUBLISHING = "publishing"
    PLAY_PENDING = "play-pending"
    PLAYING = "playing"


class MessageStream:
    """A message stream made by createStream (§7.2.1.3)."""

    __slots__ = ("name", "state")

    def __init__(self) -> None:
        self.state = StreamState.CREATED
        self.name = ""


@dataclass
class ClientState:
    """The client role's bookkeeping: transactions in flight and what waits for them."""

    next_txn: float = 1.0  # §7.2.1.1: connect is transaction 1, later calls count up
    calls: dict[float, str] = field(default_factory=dict)  # txn -> command awaiting its answer
    publish_after: dict[float, tuple[str, str]] = field(default_factory=dict)  # createStream txn
    play_after: dict[float, tuple[str, float]] = field(default_factory=dict)  # createStream txn
    connect_obj: dict[str, Any] | None = None
    deferred: list[Callable[[], object]] = field(default_factory=list)  # until connect succeeds
    window_sent: int = 0  # last Window Ack Size we announced (§5.4.5)


class ConnectionCore(Protocol):
    """The part of a connection that command handlers read and change. Everything else
    (buffers, chunk codec, handshake, clocks of media) stays private to ``Connection``."""

    role: Role
    limits: Limits
    state: State
    streams: dict[int, MessageStream]
    peer_caps: ertmp.Capabilities
    cli: ClientState | None  # the client role's state; None on the server side
    connect_txn: float  # transaction id of the peer's connect (server role)
    object_encoding: float  # the peer's objectEncoding (0 = AMF0)
    clocks: dict[int, tuple[int, int]]  # per message stream: (last 31-bit ts, unwrapped)

    def check_error(self) -> None:
        """Raise if a remote protocol error made the connection unusable."""

    def queue_event(self, event: Event) -> None:
        """Hand ``event`` to the next ``next_event`` call."""

    def send_control(self, msg: m.ControlMessage) -> None:
        """Queue a protocol or user control message (§5.4, §6.2)."""

    def send_command(self, csid: int, stream_id: int, name: str, txn: float, *args: Any) -> None:
        """Queue an AMF0 command message (§7.1.1)."""
