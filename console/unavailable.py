"""The site while the database or Redis is away: a friendly 503, never a 500 traceback.

`OutageMiddleware` answers every page with templates/503.html while the database is
known to be away (gateway.outages, probed once a second), and turns an outage met
while a page was being made into that page too. Under /api/ (the account API) the
answer is the API's JSON error instead. Both carry Retry-After. The chat's websockets
are turned away at their handshake meanwhile (`websockets_refused_while_away`).

The page is rendered without the request, so that rendering it touches neither the
session nor the user, which live in the database.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.template.loader import render_to_string

from gateway import outages

API_PREFIX = "/api/"
CLOSE_TRY_AGAIN_LATER = 1013
PLAIN_WORDS = {outages.DATABASE: "our database", outages.REDIS: "our rate-limit store"}


def unavailable_response(request: HttpRequest, kind: str) -> HttpResponse:
    """The 503 for a site request that needs `kind` while it is away."""
    if request.path.startswith(API_PREFIX):
        return outages.unavailable(kind).response()
    page = render_to_string(
        "503.html",
        {
            "SITE_NAME": settings.SITE_NAME,
            "what": PLAIN_WORDS[kind],
            "retry_after": outages.RETRY_AFTER_SECONDS,
            "path": request.path,
        },
    )
    response = HttpResponse(page, status=503)
    response["Retry-After"] = str(outages.RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response


class OutageMiddleware:
    """503 at once while the database is away; 503 for an outage a view runs into."""

    sync_capable = True
    async_capable = True

    def __init__(
        self, get_response: Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]
    ) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self._acall(request)
        if not outages.admit(outages.DATABASE):
            return unavailable_response(request, outages.DATABASE)
        return self.get_response(request)  # type: ignore[return-value]

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        if not await outages.admit_async(outages.DATABASE):
            return unavailable_response(request, outages.DATABASE)
        return await self.get_response(request)  # type: ignore[misc]

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        kind = outages.kind_of(exception)
        if kind is None:
            return None
        outages.note(kind, exception)
        return unavailable_response(request, kind)


ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def websockets_refused_while_away(app: ASGIApp) -> ASGIApp:
    """`app` (the chat's websockets), but a handshake while the database is away is
    refused (HTTP 403, as ASGI does for a close before accept) instead of failing in
    the session and user lookup with a traceback; a page's socket reconnects later."""

    async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if await outages.admit_async(outages.DATABASE):
            try:
                await app(scope, receive, send)
                return
            except Exception as exc:
                kind = outages.kind_of(exc)
                if kind is None:
                    raise
                outages.note(kind, exc)
        with contextlib.suppress(Exception):  # the socket may be gone or closed already
            await send({"type": "websocket.close", "code": CLOSE_TRY_AGAIN_LATER})

    return guarded


class SkipServiceUnavailable(logging.Filter):
    """Leaves out django.request's line for each 503: an outage is logged once, by
    gateway.outages, and a cooling provider by gateway.calls."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "status_code", None) != 503
