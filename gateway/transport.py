"""httpx's HTTP transport on a plain-asyncio network backend, for the upstream client.

httpcore reaches asyncio through anyio, which costs a cancel scope for every read and
write, and it asks every idle pooled connection whether its socket is readable (a
poll() system call each) several times per request. This backend uses asyncio's
streams directly and answers "readable" from what the event loop already knows (the
peer closed, or the connection failed), which is the case httpcore checks for: a
server that dropped a keep-alive connection. A connection idle for IDLE_POLL_SECONDS or
more is also polled: a busy event loop may not yet have read the close that the
kernel already holds (an upstream closing keep-alives at 5 s, as uvicorn and Node do,
while the worker is loaded), and a request sent on it fails and cools the provider.
With the pool's bookkeeping made linear (AsyncioConnectionPool) it saves 0.4 to 1 ms
of CPU per upstream call, with the same HTTP/1.1 handling, TLS and exceptions.
BENCHMARKS.md ("What made it faster"): one worker, non-stream 3.2 → 2.8 ms, stream 5.2
→ 4.7 ms; the linear bookkeeping, 50 concurrent requests, 3.5 → 2.9 ms.

The backend and stream are httpcore's public interface (AsyncNetworkBackend,
AsyncNetworkStream). This module is the one place that uses httpx's and httpcore's
private parts, which is why pyproject.toml pins both exactly and
tests/gateway/test_transport.py checks each against the installed releases:

- httpx `AsyncHTTPTransport._pool`: httpx offers no way to choose the network backend,
  so AsyncioTransport replaces the pool its __init__ builds with an equivalent one.
- httpcore `AsyncConnectionPool._assign_requests_to_connections()`: overridden by
  AsyncioConnectionPool, which reads the pool's `_connections`, `_requests`,
  `_max_connections` and `_max_keepalive_connections` and the private AsyncPoolRequest
  (`request`, `is_queued()`, `assign_to_connection()`).
- httpcore's HTTP/1.1 connection asking its stream for the undocumented extra info
  "is_readable" before it reuses an idle connection (AsyncioStream answers it).
- h11's `ChunkedReader` (its `_bytes_in_chunk`, `_bytes_to_discard` and
  `_reading_trailer` state) and the `READERS` table, where CoalescingChunkedReader is
  installed in its place (pyproject.toml pins h11 exactly too).
"""

from __future__ import annotations

import asyncio
import select
import ssl
import time
from collections.abc import Iterable
from typing import Any

import h11
import httpcore
import httpx
from h11._readers import READERS, ChunkedReader, chunk_header_re

EXTRA_INFO = {
    "ssl_object": "ssl_object",
    "client_addr": "sockname",
    "server_addr": "peername",
    "socket": "socket",
}
IDLE_POLL_SECONDS = 0.5
"""A connection unused this long is polled before reuse; busier ones are not."""
POLL_EVERY_SECONDS = 0.05
"""And at most this often: the pool asks after each idle connection two or three times
a request, and a poll for each of them costs more than the rest of the request's
bookkeeping."""


class CoalescingChunkedReader(ChunkedReader):
    """h11's chunked-body reader, giving every complete chunk the buffer holds as one
    Data event.

    An upstream's stream is one HTTP chunk per event; h11 makes each chunk an event of
    its own (a regular expression, a state machine step and an event object per chunk),
    which httpcore and httpx then pass up through six layers before the SSE parser sees
    it, while the chunks of one network read are all there already. Between chunks,
    this reads every complete one in the buffer at once; a partial chunk, the last
    (zero-size) chunk with its trailer, and anything malformed are left to h11's own
    steps, which also raise its errors. The bytes are the same, only fewer and larger;
    nothing in httpcore or httpx reads the chunk boundaries.
    """

    def __call__(self, buf: Any) -> h11.Data | h11.EndOfMessage | None:
        if self._bytes_in_chunk or self._reading_trailer:
            return super().__call__(buf)
        data = bytes(buf)
        parts = []
        # The CRLF that closes the chunk before, when h11 read that one.
        position = len(self._bytes_to_discard)
        if data[:position] != self._bytes_to_discard:
            return super().__call__(buf)
        while (line_end := data.find(b"\r\n", position)) >= 0:
            header = chunk_header_re.fullmatch(data, position, line_end + 2)
            if header is None or (size := int(header["chunk_size"], 16)) == 0:
                break
            start, stop = line_end + 2, line_end + 2 + size
            if data[stop : stop + 2] != b"\r\n":
                break  # not all here yet (or a malformed footer, which h11 reports)
            parts.append(data[start:stop])
            position = stop + 2
        if not parts:
            return super().__call__(buf)
        self._bytes_to_discard = b""
        buf.maybe_extract_at_most(position)
        return h11.Data(data=b"".join(parts), chunk_start=True, chunk_end=True)


READERS[h11.SEND_BODY]["chunked"] = CoalescingChunkedReader  # type: ignore[index]


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One TCP (or TLS) connection as asyncio's StreamReader and StreamWriter."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._used_at = self._polled_at = time.monotonic()

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                data = await self._reader.read(max_bytes)
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.ReadError(str(exc)) from exc
        self._used_at = time.monotonic()
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            self._writer.write(buffer)
            async with asyncio.timeout(timeout):
                await self._writer.drain()
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.WriteError(str(exc)) from exc
        self._used_at = time.monotonic()

    async def aclose(self) -> None:
        self._writer.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except TimeoutError as exc:
            self._writer.close()
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except (OSError, ssl.SSLError) as exc:
            self._writer.close()
            raise httpcore.ConnectError(str(exc)) from exc
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return (
                self._reader.at_eof()
                or self._reader.exception() is not None
                or self._writer.transport.is_closing()
                or self._closed_unseen()
            )
        name = EXTRA_INFO.get(info)
        return self._writer.get_extra_info(name) if name else None

    def _closed_unseen(self) -> bool:
        """Whether the kernel has something to read on the socket of a connection idle
        IDLE_POLL_SECONDS (idle, that can only be the server closing it), as httpcore's
        own streams find out; polled once per POLL_EVERY_SECONDS at most."""
        now = time.monotonic()
        if now - self._used_at < IDLE_POLL_SECONDS or now - self._polled_at < POLL_EVERY_SECONDS:
            return False
        self._polled_at = now
        sock = self._writer.get_extra_info("socket")
        if sock is None or sock.fileno() == -1:
            return True
        poll = select.poll()
        poll.register(sock.fileno(), select.POLLIN)
        return bool(poll.poll(0))


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, local_addr=(local_address, 0) if local_address else None
                )
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        sock = writer.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return AsyncioStream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class AsyncioConnectionPool(httpcore.AsyncConnectionPool):
    """httpcore's pool with its bookkeeping in linear time.

    httpcore 1.0 runs its private _assign_requests_to_connections() two or three times
    per request and, for every idle connection, rebuilds a list over all connections
    only to take its length (the number of connections): quadratic in the pool size,
    about 0.5 ms of CPU per request with 50 upstream connections. This is httpcore
    1.0.9's method, making the same decisions, with that length read once; the contract
    test holds a hash of the original, so a new httpcore is re-read before it is used.
    """

    def _assign_requests_to_connections(self) -> list[httpcore.AsyncConnectionInterface]:
        closing = []
        for connection in list(self._connections):
            if connection.is_closed():
                self._connections.remove(connection)
            elif connection.has_expired() or (
                connection.is_idle() and len(self._connections) > self._max_keepalive_connections
            ):
                self._connections.remove(connection)
                closing.append(connection)
        for pool_request in [request for request in self._requests if request.is_queued()]:
            origin = pool_request.request.url.origin
            available = [
                connection
                for connection in self._connections
                if connection.can_handle_request(origin) and connection.is_available()
            ]
            if available:
                pool_request.assign_to_connection(available[0])
                continue
            if len(self._connections) >= self._max_connections:
                idle = [connection for connection in self._connections if connection.is_idle()]
                if not idle:
                    continue
                self._connections.remove(idle[0])
                closing.append(idle[0])
            connection = self.create_connection(origin)
            self._connections.append(connection)
            pool_request.assign_to_connection(connection)
        return closing


class AsyncioTransport(httpx.AsyncHTTPTransport):
    """AsyncHTTPTransport whose connection pool runs on AsyncioBackend."""

    def __init__(self, *, limits: httpx.Limits, verify: ssl.SSLContext | str | bool = True) -> None:
        ssl_context = httpx.create_ssl_context(verify=verify)
        super().__init__(limits=limits, verify=ssl_context)
        # httpx offers no way to choose the network backend, so its pool is replaced
        # by an equivalent one that runs on AsyncioBackend.
        self._pool = AsyncioConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=AsyncioBackend(),
        )
