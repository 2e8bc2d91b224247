"""The upstream client's plain-asyncio transport: HTTP and TLS, keep-alive, errors, the
chunked-body reader that makes the chunks of one read one event, and the httpx,
httpcore and h11 internals it relies on.

The contract tests fail, naming the library, its version and the private name, when an
httpx, httpcore or h11 release changes what gateway/transport.py overrides or replaces.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib.metadata import version
from pathlib import Path

import h11
import h11._connection
import h11._readers
import httpcore
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from httpcore._async.connection_pool import AsyncPoolRequest, PoolByteStream
from httpcore._async.http11 import AsyncHTTP11Connection

from gateway.http import forget_clients, upstream_client
from gateway.transport import (
    IDLE_POLL_SECONDS,
    AsyncioConnectionPool,
    AsyncioStream,
    AsyncioTransport,
    CoalescingChunkedReader,
)
from tests.conftest import free_port
from tests.contracts import assert_reads, assert_source_unchanged, pinned

# The releases gateway/transport.py was written against: pyproject.toml pins exactly these.
CHECKED = {"httpx": "0.28.1", "httpcore": "1.0.9", "h11": "0.16.0"}
USER = "gateway/transport.py"

LIMITS = httpx.Limits(max_connections=10, max_keepalive_connections=5)
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"


def answer(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def awaiting_a_response() -> h11.Connection:
    """A client's h11 connection that has sent a GET and waits for the answer."""
    connection = h11.Connection(our_role=h11.CLIENT)
    connection.send(h11.Request(method="GET", target="/", headers=[("host", "127.0.0.1")]))
    connection.send(h11.EndOfMessage())
    return connection


def next_events(connection: h11.Connection, count: int) -> list[object]:
    return [connection.next_event() for _ in range(count)]


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
    # httpx sent both through the pool it was given (its private _pool), on AsyncioBackend.
    assert isinstance(first.extensions["network_stream"], AsyncioStream)
    assert second.extensions["network_stream"] is first.extensions["network_stream"]


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


async def test_a_connection_dropped_while_the_event_loop_was_busy_is_not_reused():
    """The server (on a thread of its own) closes the kept-alive connection while the
    client's loop is blocked, so the loop has not seen the close when the pool picks a
    connection: an idle connection is polled, and the second request gets a new one."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted = []

    def serve() -> None:
        for _ in range(2):
            connection, _ = listener.accept()
            accepted.append(connection)
            connection.recv(65536)
            connection.sendall(answer(b"once"))
            time.sleep(0.05)
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        async with httpx.AsyncClient(transport=AsyncioTransport(limits=LIMITS)) as client:
            first = await client.get(f"http://127.0.0.1:{port}/")
            time.sleep(IDLE_POLL_SECONDS + 0.1)  # blocks the loop: the close goes unseen
            second = await client.get(f"http://127.0.0.1:{port}/")
    finally:
        thread.join(timeout=5)
        listener.close()

    assert (first.text, second.text) == ("once", "once")
    assert len(accepted) == 2


async def test_the_upstream_client_lets_a_connection_go_once_idle_for_its_keep_alive(settings):
    settings.UPSTREAM_KEEPALIVE_SECONDS = 0.2
    connections = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                await read_request(reader)
                writer.write(answer(b"ok"))
                await writer.drain()
        writer.close()

    forget_clients()
    client = upstream_client()
    try:
        async with server(handle) as port:
            url = f"http://127.0.0.1:{port}/"
            await client.get(url)
            await client.get(url)
            kept = len(connections)
            await asyncio.sleep(0.3)
            await client.get(url)
    finally:
        await client.aclose()
        forget_clients()

    assert (kept, len(connections)) == (1, 2)


def test_the_upstream_keep_alive_is_shorter_than_uvicorns_and_nodes_five_seconds(settings):
    assert settings.UPSTREAM_KEEPALIVE_SECONDS < 5


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


def test_httpx_httpcore_and_h11_are_pinned_to_the_releases_the_transport_was_checked_against():
    for distribution, checked in CHECKED.items():
        requirement = pinned(distribution)
        assert str(requirement.specifier) == f"=={checked}", (
            f"pyproject.toml requires {requirement}, but {USER} was checked against "
            f"{distribution} {checked} only: run this file's contract tests against the new "
            f"release, then update CHECKED and the hashes here."
        )
        installed = version(distribution)
        assert installed == checked, (
            f"{distribution} {installed} is installed, {USER} was checked against {checked} "
            "(and pyproject.toml pins it): reinstall with `pip install -e '.[dev]'`."
        )


def test_the_httpcore_bookkeeping_the_pool_overrides_has_not_changed():
    # AsyncioConnectionPool._assign_requests_to_connections makes the same decisions as
    # this method, in linear time.
    assert_source_unchanged(
        httpcore.AsyncConnectionPool._assign_requests_to_connections,
        "ea1547e78a655633653bde5257e611ee458cfd46b8ab4543de13c5bae095b0ae",
        distribution="httpcore",
        checked=CHECKED["httpcore"],
        user=f"{USER} (AsyncioConnectionPool)",
    )
    override = AsyncioConnectionPool._assign_requests_to_connections
    assert override is not httpcore.AsyncConnectionPool._assign_requests_to_connections


def test_httpcore_still_calls_the_bookkeeping_and_keeps_the_state_it_reads():
    user = f"{USER} (AsyncioConnectionPool)"
    callers = {
        httpcore.AsyncConnectionPool.handle_async_request: (
            "self._assign_requests_to_connections()"
        ),
        PoolByteStream.aclose: "self._pool._assign_requests_to_connections()",
    }
    for caller, fragment in callers.items():
        assert_reads(caller, fragment, distribution="httpcore", user=user)
    pool = httpcore.AsyncConnectionPool(max_connections=4, max_keepalive_connections=2)
    state = {
        "_connections": [],
        "_requests": [],
        "_max_connections": 4,
        "_max_keepalive_connections": 2,
    }
    for name, value in state.items():
        assert getattr(pool, name, None) == value, (
            f"httpcore {version('httpcore')}: AsyncConnectionPool has no {name} == {value!r}, "
            f"which {user} reads."
        )
    pool_request = AsyncPoolRequest(httpcore.Request("GET", "http://127.0.0.1/"))
    for name in ("request", "is_queued", "assign_to_connection"):
        assert hasattr(pool_request, name), (
            f"httpcore {version('httpcore')}: AsyncPoolRequest has no {name}, which {user} uses."
        )


def test_httpcore_still_asks_the_stream_whether_an_idle_connection_is_readable():
    # AsyncioStream answers "is_readable" from the event loop's state instead of a poll().
    assert_reads(
        AsyncHTTP11Connection.has_expired,
        'self._network_stream.get_extra_info("is_readable")',
        distribution="httpcore",
        user=f"{USER} (AsyncioStream)",
    )


def test_the_httpx_pool_the_transport_replaces_has_not_changed():
    user = f"{USER} (AsyncioTransport replaces _pool)"
    # The replacement pool is built with what httpx's __init__ gives its own for these
    # arguments (no proxy, HTTP/1.1 only, no retries).
    assert_source_unchanged(
        httpx.AsyncHTTPTransport.__init__,
        "433c33239d86ec87383cba12229bd086b4a92985b25ff8b0859cf028f29250e0",
        distribution="httpx",
        checked=CHECKED["httpx"],
        user=user,
    )
    users = {
        httpx.AsyncHTTPTransport.handle_async_request: "await self._pool.handle_async_request(",
        httpx.AsyncHTTPTransport.aclose: "await self._pool.aclose()",
        httpx.AsyncHTTPTransport.__aenter__: "await self._pool.__aenter__()",
        httpx.AsyncHTTPTransport.__aexit__: "await self._pool.__aexit__(",
    }
    for method, fragment in users.items():
        assert_reads(method, fragment, distribution="httpx", user=user)


def test_the_h11_chunked_reader_the_transport_extends_has_not_changed():
    user = f"{USER} (CoalescingChunkedReader)"
    # CoalescingChunkedReader reads this reader's state (_bytes_in_chunk, _bytes_to_discard,
    # _reading_trailer) and leaves it a partial chunk, the last chunk and malformed framing,
    # relying on it returning Data, EndOfMessage or None (more bytes needed).
    assert_source_unchanged(
        h11._readers.ChunkedReader,
        "4d2629eeaaf366b636b5d890b9eedf3c71d316ddb89e10d58786fc7cee1105fe",
        distribution="h11",
        checked=CHECKED["h11"],
        user=user,
    )
    assert h11._connection.READERS is h11._readers.READERS, (
        f"h11 {version('h11')}: h11._connection no longer picks its readers from "
        f"h11._readers.READERS, where {user} is installed."
    )
    assert_reads(
        h11.Connection._respond_to_state_changes,
        "self._get_io_object(self.their_role, event, READERS)",
        distribution="h11",
        user=user,
    )
    assert h11._readers.READERS[h11.SEND_BODY]["chunked"] is CoalescingChunkedReader  # type: ignore[index]


def test_the_chunks_of_one_read_are_one_data_event_then_the_end_of_the_message():
    connection = awaiting_a_response()
    payloads = [b"data: %d\n\n" % number for number in range(5)]
    connection.receive_data(CHUNKED_HEAD + b"".join(map(chunk, payloads)) + LAST_CHUNK)

    response, data = next_events(connection, 2)

    assert isinstance(response, h11.Response) and response.status_code == 200
    assert data == h11.Data(data=b"".join(payloads), chunk_start=True, chunk_end=True)
    assert isinstance(connection.next_event(), h11.EndOfMessage)


def test_a_chunk_split_across_reads_comes_as_what_arrived_then_the_rest():
    connection = awaiting_a_response()
    connection.receive_data(CHUNKED_HEAD + chunk(b"one ") + chunk(b"two ") + b"5\r\nthr")

    assert next_events(connection, 4)[1:] == [
        h11.Data(data=b"one two ", chunk_start=True, chunk_end=True),
        h11.Data(data=b"thr", chunk_start=True, chunk_end=False),
        h11.NEED_DATA,
    ]
    connection.receive_data(b"ee\r\n" + chunk(b" four") + chunk(b" five") + LAST_CHUNK)
    assert next_events(connection, 3) == [
        h11.Data(data=b"ee", chunk_start=False, chunk_end=True),
        h11.Data(data=b" four five", chunk_start=True, chunk_end=True),
        h11.EndOfMessage(),
    ]


def test_chunk_extensions_and_trailers_still_parse():
    connection = awaiting_a_response()
    connection.receive_data(
        CHUNKED_HEAD + b"5;name=value\r\nhello\r\n" + chunk(b" world") + b"0\r\nx-done: yes\r\n\r\n"
    )

    assert next_events(connection, 3)[1:] == [
        h11.Data(data=b"hello world", chunk_start=True, chunk_end=True),
        h11.EndOfMessage(headers=[("x-done", "yes")]),
    ]


def test_a_body_cut_short_is_still_a_remote_protocol_error():
    connection = awaiting_a_response()
    connection.receive_data(CHUNKED_HEAD + chunk(b"one ") + chunk(b"two ") + b"5\r\nth")

    assert next_events(connection, 4)[1:] == [
        h11.Data(data=b"one two ", chunk_start=True, chunk_end=True),
        h11.Data(data=b"th", chunk_start=True, chunk_end=False),
        h11.NEED_DATA,
    ]
    connection.receive_data(b"")
    with pytest.raises(h11.RemoteProtocolError, match="incomplete chunked read"):
        connection.next_event()


@pytest.mark.parametrize(
    ("framing", "before", "error"),
    [
        # h11 gives a chunk's data before it reads the CRLF that should follow it.
        (b"5\r\nworldXX", b"one two world", "malformed chunk footer"),
        (b"zz\r\nworld\r\n", b"one two ", "illegal chunk header"),
    ],
    ids=["footer", "header"],
)
def test_malformed_framing_after_good_chunks_is_h11s_protocol_error(framing, before, error):
    connection = awaiting_a_response()
    connection.receive_data(CHUNKED_HEAD + chunk(b"one ") + chunk(b"two ") + framing)
    assert isinstance(connection.next_event(), h11.Response)

    received = b""
    with pytest.raises(h11.RemoteProtocolError, match=error):
        for _ in range(5):
            event = connection.next_event()
            assert isinstance(event, h11.Data)
            received += event.data
    assert received == before


async def test_a_stream_written_at_once_reaches_httpx_in_fewer_larger_pieces():
    payloads = [b'data: {"token": %d}\n\n' % number for number in range(50)]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(CHUNKED_HEAD + b"".join(map(chunk, payloads)) + LAST_CHUNK)
        await writer.drain()
        writer.close()

    async with (
        server(handle) as port,
        httpx.AsyncClient(transport=AsyncioTransport(limits=LIMITS)) as client,
        client.stream("GET", f"http://127.0.0.1:{port}/") as response,
    ):
        pieces = [piece async for piece in response.aiter_bytes()]

    assert b"".join(pieces) == b"".join(payloads)
    assert len(pieces) < len(payloads)
