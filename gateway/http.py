"""One pooled httpx.AsyncClient per event loop (one per worker process in production).

It runs on gateway.transport's plain-asyncio backend, unless proxies are set in the
environment (HTTPS_PROXY and friends): then httpx's own transport, which honours them.
"""

from __future__ import annotations

import asyncio
from urllib.request import getproxies

import httpx
from django.conf import settings

from gateway.state import on_reset
from gateway.transport import AsyncioTransport

_clients: dict[int, httpx.AsyncClient] = {}


def upstream_client() -> httpx.AsyncClient:
    loop_id = id(asyncio.get_running_loop())
    client = _clients.get(loop_id)
    if client is None:
        limits = httpx.Limits(
            max_connections=1000,
            max_keepalive_connections=200,
            keepalive_expiry=settings.UPSTREAM_KEEPALIVE_SECONDS,
        )
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(
                settings.UPSTREAM_READ_TIMEOUT, connect=settings.UPSTREAM_CONNECT_TIMEOUT
            ),
            limits=limits,
            transport=None if getproxies() else AsyncioTransport(limits=limits),
            follow_redirects=False,
        )
        _clients[loop_id] = client
    return client


@on_reset
def forget_clients() -> None:
    # The loops these belong to may be gone; drop them without awaiting aclose().
    _clients.clear()
