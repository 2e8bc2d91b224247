"""The /v1 handler: Django's ASGIHandler with no middleware, no request signals and no
thread per request.

Django wraps each request in a ThreadSensitiveContext and sends request_started and
request_finished through it, which starts a thread per request for receivers that have
nothing to do here: they close the database connections of the thread they run on and
reset DEBUG's query log, while /v1 reaches the database only through db_sync_to_async,
which hands its connections back itself. The API authenticates by key and needs no
sessions, CSRF, messages or htmx, and every middleware would run on each call.
BENCHMARKS.md ("What made it faster", the first row): CPU per non-stream request 7.5 →
6.6 ms, per stream 10.0 → 8.8 ms. Each request resolves through settings.API_URLCONF
(console.lean_urls, as Django's per-request `request.urlconf`), so an API-only worker
never imports the console's views.

Django has no public way to do this, so this module is the one place that uses Django
5.2's handler internals (pyproject.toml keeps Django within 5.2;
tests/console/test_lean_handler.py checks every name below against the installed
Django and fails, naming it, when a release changes one):

- `BaseHandler.load_middleware()` is replaced. It sets what Django's sets for an empty
  MIDDLEWARE: `_view_middleware`, `_template_response_middleware` and
  `_exception_middleware` (read by `_get_response_async()` and
  `process_exception_by_middleware()`), and `_middleware_chain` (awaited by
  `get_response_async()`) around the private `_get_response_async()`.
- `ASGIHandler.__call__()` and `handle()` are replaced. `handle()` is Django's, less
  the request signals and the final `response.close()` (which only sends
  request_finished and closes the request's uploaded files, which /v1 never parses),
  built on its undocumented steps `read_body()`, `create_request()`,
  `run_get_response()`, `send_response()` and `listen_for_disconnect()`, and on
  `django.core.handlers.asgi.get_script_prefix()` and
  `django.core.handlers.exception.convert_exception_to_response()`.
- `send_response()` is Django's for every answer but an async stream, whose parts it
  reads from `StreamingHttpResponse._iterator` (the private attribute Django's own
  `streaming_content` reads) into a `BatchedSend`: the parts of a stream that are
  ready together leave in one write.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.urls import set_script_prefix

# A stream's parts wait for the writer up to this many bytes before the stream waits.
STREAM_BATCH_BYTES = 64 * 1024


class BatchedSend:
    """An ASGI `send` for a streaming response that writes what is ready in one message.

    A relayed stream's upstream events often arrive several to a read (an upstream
    sends tokens faster than they are relayed, or a network delivers them together);
    Django sends each part as its own message, a write system call each. Here a part
    is queued and a writer task sends the queue as one message whenever the stream's
    producer waits for something (the upstream, the database), so nothing waits for
    a later part: a part that arrives alone leaves as soon as it is made. Past
    STREAM_BATCH_BYTES queued the producer waits for the writer (the client's flow
    control reaches the producer as before). The final message goes after the queue.
    """

    def __init__(self, send: Any, limit: int = STREAM_BATCH_BYTES) -> None:
        self._send = send
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._ending = False
        self._writer: asyncio.Task[None] | None = None

    async def __call__(self, message: Mapping[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("more_body"):
            await self.part(message["body"])
            return
        await self._finish()
        await self._send(message)

    async def part(self, body: bytes) -> None:
        """Queue one part of the body."""
        self._check_writer()
        self._parts.append(body)
        self._size += len(body)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write())
        self._ready.set()
        if self._size >= self._limit:
            self._room.clear()
            await self._room.wait()
            self._check_writer()

    def _check_writer(self) -> None:
        if self._writer is not None and self._writer.done():
            self._writer.result()  # the writer's failure, raised in the producer

    async def _write(self) -> None:
        try:
            while True:
                await self._ready.wait()
                self._ready.clear()
                if self._parts:
                    body = b"".join(self._parts)
                    self._parts.clear()
                    self._size = 0
                    self._room.set()
                    message = {"type": "http.response.body", "body": body, "more_body": True}
                    await self._send(message)
                if self._ending and not self._parts:
                    return
        finally:
            self._room.set()

    async def _finish(self) -> None:
        if self._writer is None:
            return
        self._ending = True
        self._ready.set()
        writer, self._writer = self._writer, None
        await writer

    def cancel(self) -> None:
        if self._writer is not None:
            self._writer.cancel()


def response_headers(response: Any) -> list[tuple[bytes, bytes]]:
    """A response's headers and cookies as ASGI wants them (Django's send_response)."""
    headers = [
        (
            header.encode("ascii") if isinstance(header, str) else bytes(header),
            value.encode("latin1") if isinstance(value, str) else bytes(value),
        )
        for header, value in response.items()
    ]
    for cookie in response.cookies.values():
        headers.append((b"Set-Cookie", cookie.output(header="").encode("ascii").strip()))
    return headers


class LeanASGIHandler(ASGIHandler):
    """Django's ASGI handler with an empty middleware chain and no per-request thread,
    for HTTP only (console.asgi routes websockets elsewhere)."""

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware: list[Any] = []
        self._template_response_middleware: list[Any] = []
        self._exception_middleware: list[Any] = []
        self._middleware_chain = convert_exception_to_response(
            self._get_response_async  # type: ignore[attr-defined]
        )

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.handle(scope, receive, send)

    async def send_response(self, response: Any, send: Any) -> None:
        """Django's, but an async stream's parts (bytes, from the /v1 relays) go through
        BatchedSend as they are, without the three wrappers Django puts around each one
        (StreamingHttpResponse.__aiter__, its make_bytes wrapper, chunk_bytes): about 2 µs
        per streamed event."""
        if not (response.streaming and response.is_async):
            await super().send_response(response, send)
            return
        batched = BatchedSend(send)
        try:
            start = {"type": "http.response.start", "status": response.status_code}
            await batched({**start, "headers": response_headers(response)})
            async with contextlib.aclosing(response._iterator) as parts:
                async for part in parts:
                    await batched.part(part if type(part) is bytes else response.make_bytes(part))
            await batched({"type": "http.response.body"})
        finally:
            batched.cancel()

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Django's handle(), less the signals: answer, and stop the view if the client leaves."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            if error_response is not None:
                await self.send_response(error_response, send)
            return
        request.urlconf = settings.API_URLCONF  # Django's per-request URL conf

        async def process_request() -> None:
            response = await self.run_get_response(request)
            with contextlib.suppress(asyncio.CancelledError):
                await self.send_response(response, send)

        disconnect = asyncio.create_task(self.listen_for_disconnect(receive))
        answer = asyncio.create_task(process_request())
        tasks = (disconnect, answer)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
        finally:
            body_file.close()
        # Read, not awaited: an exception raised here would hold this frame (and so the
        # request and its body) in a reference cycle that only the garbage collector ends.
        for task in tasks:
            error = None if task.cancelled() else task.exception()
            if error is not None and not isinstance(error, RequestAborted):
                raise error
