"""The upstream client's plain-asyncio transport: HTTP and TLS, keep-alive, errors."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.transport import AsyncioTransport
from tests.conftest import free_port

LIMITS = httpx.Limits(max_connections=10, max_keepalive_connections=5)
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def answer(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


async def read_request(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


@asynccontextmanager
async def server(handler: Handler, context: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    port = free_port()
    listening = await asyncio.start_server(handler, "127.0.0.1", port, ssl=context)
    async with listening:
        yield port


@pytest.fixture
def tls(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a self-signed certificate for 127.0.0.1, and a client
    context that trusts it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_file, key_file)
    return server_context, ssl.create_default_context(cafile=str(cert_file))


async def test_it_speaks_tls_and_reuses_the_connection(tls):
    server_context, client_context = tls
    connections = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        for number in (1, 2):
            await read_request(reader)
            writer.write(answer(b"answer %d" % number))
            await writer.drain()
        writer.close()

    async with server(handle, server_context) as port:
        transport = AsyncioTransport(limits=LIMITS, verify=client_context)
        async with httpx.AsyncClient(transport=transport) as client:
            first = await client.get(f"https://127.0.0.1:{port}/")
            second = await client.get(f"https://127.0.0.1:{port}/")

    assert (first.text, second.text) == ("answer 1", "answer 2")
    assert len(connections) == 1


async def test_it_refuses_a_certificate_it_does_not_trust(tls):
    server_context, _ = tls

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async with (
        server(handle, server_context) as port,
        httpx.AsyncClient(transport=AsyncioTransport(limits=LIMITS)) as client,
    ):
        with pytest.raises(httpx.ConnectError):
            await client.get(f"https://127.0.0.1:{port}/")


async def test_a_keep_alive_connection_the_server_dropped_is_not_reused():
    connections = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        await read_request(reader)
        writer.write(answer(b"once"))
        await writer.drain()
        writer.close()

    async with (
        server(handle) as port,
        httpx.AsyncClient(transport=AsyncioTransport(limits=LIMITS)) as client,
    ):
        first = await client.get(f"http://127.0.0.1:{port}/")
        await asyncio.sleep(0.1)
        second = await client.get(f"http://127.0.0.1:{port}/")

    assert (first.text, second.text) == ("once", "once")
    assert len(connections) == 2


async def test_a_silent_server_is_a_read_timeout_and_a_closed_port_a_connect_error():
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    async with (
        server(handle) as port,
        httpx.AsyncClient(transport=AsyncioTransport(limits=LIMITS)) as client,
    ):
        with pytest.raises(httpx.ReadTimeout):
            await client.get(f"http://127.0.0.1:{port}/", timeout=0.2)
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{free_port()}/")


async def test_the_pool_keeps_at_most_its_keep_alive_limit_of_idle_connections():
    connections = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                break
            await asyncio.sleep(0.05)
            writer.write(answer(b"ok"))
            await writer.drain()
        writer.close()

    limits = httpx.Limits(max_connections=8, max_keepalive_connections=2)
    transport = AsyncioTransport(limits=limits)
    async with server(handle) as port, httpx.AsyncClient(transport=transport) as client:
        url = f"http://127.0.0.1:{port}/"
        burst = await asyncio.gather(*(client.get(url) for _ in range(6)))
        kept = len(transport._pool.connections)
        after = await client.get(url)

    assert [response.text for response in burst] == ["ok"] * 6
    assert after.text == "ok"
    assert len(connections) == 6
    assert kept <= 2
