"""One pooled httpx.AsyncClient per event loop (one per worker process in production)."""

from __future__ import annotations

import asyncio

import httpx
from django.conf import settings

from gateway.state import on_reset

_clients: dict[int, httpx.AsyncClient] = {}


def upstream_client() -> httpx.AsyncClient:
    loop_id = id(asyncio.get_running_loop())
    client = _clients.get(loop_id)
    if client is None:
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(
                settings.UPSTREAM_READ_TIMEOUT, connect=settings.UPSTREAM_CONNECT_TIMEOUT
            ),
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200),
            follow_redirects=False,
        )
        _clients[loop_id] = client
    return client


@on_reset
def forget_clients() -> None:
    # The loops these belong to may be gone; drop them without awaiting aclose().
    _clients.clear()
