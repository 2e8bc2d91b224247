"""A request's body is freed when its call ends, not when the garbage collector next runs:
no reference cycle holds the request (the lean handler's frame) or an upstream exchange
(httpx's Response and its stream refer to each other).

Live: the real ASGI application under uvicorn in a thread of this process, so its
garbage is this process's; the test's own calls use http.client, not httpx.
"""

from __future__ import annotations

import gc
import http.client
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from django.core.handlers.asgi import ASGIRequest

from tests.conftest import Customer, LiveServer
from tests.fakes.upstream import FakeUpstream
from tests.gateway.test_upstream_connections import (  # noqa: F401 (the fixture used by name)
    DOORS,
    Door,
    catalog,
)

pytestmark = pytest.mark.django_db(transaction=True)

# An agent's request is often this large; the cycles would keep every one in memory.
LARGE_PROMPT = "Summarise this file. " + "lorem ipsum dolor sit amet " * 4_000
HELD_TYPES = (ASGIRequest, httpx.Request, httpx.Response)


def call(url: str, door: Door, customer: Customer, *, stream: bool) -> bytes:
    """One call through `door` with the large prompt; the whole answer."""
    body: dict[str, Any] = {**door.body, "stream": stream}
    if "messages" in body:
        body["messages"] = [{"role": "user", "content": LARGE_PROMPT}]
    else:
        body["input"] = LARGE_PROMPT
    address = urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=10)
    try:
        headers = {**door.headers(customer.secret), "content-type": "application/json"}
        connection.request("POST", door.path, body=orjson.dumps(body), headers=headers)
        response = connection.getresponse()
        answer = response.read()
    finally:
        connection.close()
    assert response.status == 200, answer
    return answer


@pytest.fixture
def collector_off() -> Iterator[None]:
    """The garbage collector off for the test, and as it was afterwards."""
    flags, enabled = gc.get_debug(), gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.set_debug(flags)
        gc.garbage.clear()
        if enabled:
            gc.enable()


def test_no_reference_cycle_holds_a_request_or_an_upstream_exchange(
    live_server_url: str,
    gateway_server: LiveServer,
    customer: Customer,
    catalog: FakeUpstream,  # noqa: F811
    collector_off: None,
) -> None:
    for door in DOORS.values():
        for stream in (False, True):
            assert call(live_server_url, door, customer, stream=stream)
    gateway_server.wait_until_idle()

    # What only the collector would free: kept in gc.garbage to be looked at.
    gc.set_debug(gc.DEBUG_SAVEALL)
    gc.collect()
    held = sorted(
        {type(garbage).__name__ for garbage in gc.garbage if isinstance(garbage, HELD_TYPES)}
    )

    assert held == []
