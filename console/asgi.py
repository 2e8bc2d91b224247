"""ASGI entry point.

/v1 (and the probes) go to console.lean_handler, Django's handler with no middleware
and no request signals: the API authenticates by key and needs no sessions, CSRF,
messages or htmx, and every middleware would run on each call. Everything else goes
through the full stack, and websockets (the web chat) through Channels.
"""

from __future__ import annotations

import functools
import gc
import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from console.lean_handler import LeanASGIHandler  # noqa: E402
from console.sockets import unrouted  # noqa: E402
from console.unavailable import websockets_refused_while_away  # noqa: E402
from gateway.metrics import instrumented  # noqa: E402

LEAN_PREFIXES = ("/v1/", "/healthz", "/readyz", "/metrics")

lean_app = instrumented(LeanASGIHandler())


@functools.cache
def websocket_app() -> Any:
    """The web chat's sockets, built on the first connection: a worker that serves only
    the API never imports the chat (its Markdown renderer and highlighter)."""
    from chat.routing import websocket_urlpatterns

    return websockets_refused_while_away(
        AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter([*websocket_urlpatterns, unrouted]))
        )
    )


async def websockets(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await websocket_app()(scope, receive, send)


site_app = ProtocolTypeRouter({"http": django_asgi_app, "websocket": websockets})


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"].startswith(LEAN_PREFIXES):
        await lean_app(scope, receive, send)
    else:
        await site_app(scope, receive, send)


# What the worker has built by now (Django, the apps, the URL conf) lives as long as it
# does: frozen, the garbage collector's full passes no longer walk it (BENCHMARKS.md).
gc.freeze()
