"""The /v1 handler: Django's ASGIHandler with no middleware, no request signals and no
thread per request.

Django wraps each request in a ThreadSensitiveContext and sends request_started and
request_finished through it, which starts a thread per request for receivers that have
nothing to do here: they close the database connections of the thread they run on and
reset DEBUG's query log, while /v1 reaches the database only through db_sync_to_async,
which hands its connections back itself. The API authenticates by key and needs no
sessions, CSRF, messages or htmx, and every middleware would run on each call.
BENCHMARKS.md ("What made it faster", the first row): CPU per non-stream request 7.5 →
6.6 ms, per stream 10.0 → 8.8 ms.

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
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.urls import set_script_prefix


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

        async def process_request() -> None:
            response = await self.run_get_response(request)
            with contextlib.suppress(asyncio.CancelledError):
                await self.send_response(response, send)

        disconnect = asyncio.create_task(self.listen_for_disconnect(receive))
        answer = asyncio.create_task(process_request())
        try:
            await asyncio.wait((disconnect, answer), return_when=asyncio.FIRST_COMPLETED)
            for task in (disconnect, answer):
                if not task.done():
                    task.cancel()
                with contextlib.suppress(RequestAborted, asyncio.CancelledError):
                    await task
        finally:
            body_file.close()
