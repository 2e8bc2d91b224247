"""ASGI entry point.

/v1 (and the probes) go to a Django handler with no middleware: the API
authenticates by key and needs no sessions, CSRF, messages or htmx, and every
middleware would run on each call. Everything else goes through the full stack,
and websockets (the web chat) through Channels.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.core.exceptions import RequestAborted  # noqa: E402
from django.core.handlers.asgi import ASGIHandler, get_script_prefix  # noqa: E402
from django.core.handlers.exception import convert_exception_to_response  # noqa: E402
from django.urls import set_script_prefix  # noqa: E402

from chat.routing import websocket_urlpatterns  # noqa: E402
from gateway.metrics import instrumented  # noqa: E402

LEAN_PREFIXES = ("/v1/", "/healthz", "/readyz", "/metrics")


class LeanASGIHandler(ASGIHandler):
    """Django's ASGI handler with an empty middleware chain and no per-request thread.

    Django wraps each request in a ThreadSensitiveContext and sends request_started and
    request_finished through it, which starts a thread per request for receivers that
    have nothing to do here: they close the database connections of the thread they run
    on and reset DEBUG's query log, while /v1 reaches the database only through
    db_sync_to_async, which hands its connections back itself.
    """

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


lean_app = instrumented(LeanASGIHandler())
site_app = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"].startswith(LEAN_PREFIXES):
        await lean_app(scope, receive, send)
    else:
        await site_app(scope, receive, send)
