"""Outgoing rtmps:// (push and pull relays): SNI, the system CAs plus tls_ca_file, and a
refused certificate named in the relay's error."""

from __future__ import annotations

import ssl
from functools import partial
from pathlib import Path

import pytest
import trio
import trustme

from gateway.config import Settings
from gateway.relay import _why, open_target, target_opener
from gateway.relay_config import parse_target
from gateway.tls import describe_tls_error
from tests.gateway.test_rtmps import write_pem


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def serve_tls(nursery: trio.Nursery, cert: str, key: str, names: list[str | None]) -> int:
    """A TLS server that records the SNI name of each ClientHello and closes after the
    handshake; returns its port."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda _sock, name, _ctx: names.append(name)

    async def handle(tcp: trio.SocketStream) -> None:
        stream = trio.SSLStream(tcp, context, server_side=True)
        try:
            with trio.move_on_after(10):
                await stream.do_handshake()
        except trio.BrokenResourceError:
            pass  # the client refused our certificate
        finally:
            await trio.aclose_forcefully(stream)

    listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
    return int(listeners[0].socket.getsockname()[1])


async def test_outgoing_rtmps_sends_sni_and_trusts_tls_ca_file(
    nursery: trio.Nursery, ca: trustme.CA, tmp_path: Path
) -> None:
    cert, key = write_pem(ca, tmp_path, "localhost")
    names: list[str | None] = []
    port = await serve_tls(nursery, cert, key, names)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    opener = target_opener(Settings(tls_ca_file=str(ca_file)))
    with trio.fail_after(10):
        stream = await opener(parse_target(f"rtmps://localhost:{port}/live/x"))
    assert isinstance(stream, trio.SSLStream)
    await trio.aclose_forcefully(stream)
    assert names == ["localhost"]


@pytest.mark.parametrize(
    ("hosts", "trusted", "why"),
    [
        (("localhost",), False, "unable to get local issuer certificate"),
        (("other.example",), True, "Hostname mismatch"),
    ],
)
async def test_outgoing_rtmps_refuses_a_certificate_and_names_why(
    nursery: trio.Nursery,
    ca: trustme.CA,
    tmp_path: Path,
    hosts: tuple[str, ...],
    trusted: bool,
    why: str,
) -> None:
    cert, key = write_pem(ca, tmp_path, *hosts)
    port = await serve_tls(nursery, cert, key, [])
    context = ssl.create_default_context()
    if trusted:
        ca.configure_trust(context)
    with pytest.raises(trio.BrokenResourceError) as caught, trio.fail_after(10):
        await open_target(parse_target(f"rtmps://localhost:{port}/live/x"), context)
    text = describe_tls_error(caught.value)
    assert text is not None and text.startswith("TLS certificate not accepted: ")
    assert why in text
    assert _why(caught.value) == text  # what a relay's or pull's log line says
