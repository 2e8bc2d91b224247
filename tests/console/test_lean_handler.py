"""The /v1 handler (console.lean_handler): what it does, and the Django internals it uses.

The contract tests below fail, naming Django's version and the private name, when a
Django release changes a part of ASGIHandler or BaseHandler the lean handler replaces
or calls; the behaviour tests drive it with raw ASGI messages, and its BatchedSend with a
fake client's `send`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from importlib.metadata import version
from typing import Any

import django
import pytest
from django.core import signals
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import path
from packaging.specifiers import SpecifierSet

from console.lean_handler import BatchedSend, LeanASGIHandler
from tests.contracts import assert_parameters, assert_reads, assert_source_unchanged, pinned

DJANGO = "5.2.19"  # the release the hashes below were taken from
USER = "console/lean_handler.py"
TIMEOUT = 5

# Django's code that LeanASGIHandler replaces, as it was when the handler was written.
REPLACED = {
    ASGIHandler.__call__: "f756809e9c9308dcccb78a301fccf09196e80cdc4745690f80384d09b69dd102",
    ASGIHandler.handle: "98faeb5bef800331e6a8002fbc96b30e4122a23438ae45a047190a531ea11323",
    BaseHandler.load_middleware: "a1fb7ee5f8586195da2174d1bbc2bbfc7ca19b9d26ea66412cb434f45bf6d467",
    # Replaced for async streams (the headers built as it builds them).
    ASGIHandler.send_response: "77eda2b08689b44ee277c936092bde02e50f84727f7398480a127e7e9e1dad06",
    # Where an async stream's iterator is kept (`_iterator`, with `is_async`), read as is.
    StreamingHttpResponse._set_streaming_content: (
        "c11520c56e73d757cfe83ef0f79eebaa225dd2e23b283d51b1e52adc8a695add"
    ),
}

slow_view_state: dict[str, asyncio.Event] = {}


async def slow(request: HttpRequest) -> HttpResponse:
    slow_view_state["started"].set()
    try:
        await asyncio.sleep(TIMEOUT * 2)
    except asyncio.CancelledError:
        slow_view_state["cancelled"].set()
        raise
    return HttpResponse("too late")


stream_state: dict[str, asyncio.Event] = {}


async def parts_made_together() -> AsyncIterator[bytes]:
    for part in (b"one ", b"two ", b"three"):
        yield part


async def parts_made_on_either_side_of_a_wait() -> AsyncIterator[bytes]:
    yield b"a"
    yield b"b"
    # The client has "ab" before anything more is made: a send that waited for a later
    # part would wait here for ever.
    await stream_state["ab_sent"].wait()
    yield b"c"
    yield b"d"


async def together(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(parts_made_together())


async def paced(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(parts_made_on_either_side_of_a_wait())


async def events() -> AsyncIterator[str]:
    for name in ("one", "two"):
        yield f"data: {name}\n\n"  # text, made bytes as Django makes them


async def with_cookie(request: HttpRequest) -> StreamingHttpResponse:
    response = StreamingHttpResponse(events(), status=201, content_type="text/event-stream")
    response["X-Marker"] = "café"
    response.set_cookie("seen", "1")
    return response


urlpatterns = [
    path("slow", slow),
    path("together", together),
    path("paced", paced),
    path("with-cookie", with_cookie),
]


class Exchange:
    """One HTTP request to an ASGI application, with the client's side in our hands."""

    def __init__(self, path: str, *, query_string: bytes = b"", send_body: bool = True) -> None:
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query_string,
            "root_path": "",
            "headers": [(b"host", b"testserver")],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        if send_body:
            self.inbox.put_nowait({"type": "http.request", "body": b"", "more_body": False})
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        return await self.inbox.get()

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    async def run(self, app: Any) -> None:
        await asyncio.wait_for(app(self.scope, self.receive, self.send), TIMEOUT)

    @property
    def status(self) -> int:
        return self.sent[0]["status"]

    @property
    def headers(self) -> dict[bytes, bytes]:
        return {name.lower(): value for name, value in self.sent[0]["headers"]}

    @property
    def body(self) -> bytes:
        return b"".join(message.get("body", b"") for message in self.sent[1:])

    @property
    def body_messages(self) -> list[bytes]:
        return [message.get("body", b"") for message in self.sent[1:]]


class PacedExchange(Exchange):
    """An exchange that lets the paced view go on once the client has "ab"."""

    async def send(self, message: dict[str, Any]) -> None:
        await super().send(message)
        if self.body == b"ab":
            stream_state["ab_sent"].set()


class FakeClient:
    """An ASGI `send` that records body messages, blocks while `open` is clear, and
    raises `error` (the client gone) instead when it is set."""

    def __init__(self, error: Exception | None = None) -> None:
        self.open = asyncio.Event()
        self.open.set()
        self.sending = asyncio.Event()
        self.failed = asyncio.Event()
        self.error = error
        self.bodies: list[bytes] = []
        self.last: dict[str, Any] | None = None

    async def send(self, message: dict[str, Any]) -> None:
        self.bodies.append(message.get("body", b""))
        self.last = message
        self.sending.set()
        if self.error is not None:
            self.failed.set()
            raise self.error
        await self.open.wait()


def part(body: bytes) -> dict[str, Any]:
    return {"type": "http.response.body", "body": body, "more_body": True}


FINAL = {"type": "http.response.body"}


async def let_the_loop_turn(turns: int = 20) -> None:
    """Give every task that can run some turns of the event loop (no wall clock)."""
    for _ in range(turns):
        await asyncio.sleep(0)


def only_this_task_runs() -> bool:
    return asyncio.all_tasks() == {asyncio.current_task()}


def test_django_is_pinned_to_the_series_the_lean_handler_was_checked_against():
    requirement = pinned("Django")
    assert requirement.specifier == SpecifierSet(">=5.2,<5.3"), (
        f"pyproject.toml requires {requirement}: {USER} replaces parts of Django 5.2's "
        "ASGIHandler; check them against the new series before widening the pin."
    )
    assert django.VERSION[:2] == (5, 2), (
        f"Django {version('Django')} is installed, {USER} was written against Django 5.2."
    )


def test_the_django_code_the_lean_handler_replaces_has_not_changed():
    for replaced, sha256 in REPLACED.items():
        assert_source_unchanged(replaced, sha256, distribution="Django", checked=DJANGO, user=USER)


def test_django_still_has_the_handler_steps_the_lean_handler_calls():
    steps = {
        ASGIHandler.read_body: ["self", "receive"],
        ASGIHandler.create_request: ["self", "scope", "body_file"],
        ASGIHandler.run_get_response: ["self", "request"],
        ASGIHandler.send_response: ["self", "response", "send"],
        ASGIHandler.listen_for_disconnect: ["self", "receive"],
        BaseHandler._get_response_async: ["self", "request"],
        get_script_prefix: ["scope"],
        convert_exception_to_response: ["get_response"],
    }
    for step, parameters in steps.items():
        assert_parameters(step, parameters, distribution="Django", user=USER)
    # The attributes load_middleware() sets are read here; the lean one sets them too.
    reads = {
        BaseHandler.get_response_async: "await self._middleware_chain(request)",
        BaseHandler._get_response_async: "self._view_middleware",
        ASGIHandler.__init__: "self.load_middleware(is_async=True)",
    }
    for reader, fragment in reads.items():
        assert_reads(reader, fragment, distribution="Django", user=USER)
    assert_reads(
        BaseHandler._get_response_async,
        "self._template_response_middleware",
        distribution="Django",
        user=USER,
    )
    assert_reads(
        BaseHandler.process_exception_by_middleware,
        "self._exception_middleware",
        distribution="Django",
        user=USER,
    )


async def test_it_answers_a_request():
    exchange = Exchange("/healthz")

    await exchange.run(LeanASGIHandler())

    assert exchange.status == 200
    assert exchange.body == b'{"status": "ok"}'
    assert exchange.sent[-1].get("more_body", False) is False


async def test_it_runs_no_middleware_and_sends_no_request_signals(settings):
    assert "django.middleware.clickjacking.XFrameOptionsMiddleware" in settings.MIDDLEWARE
    sent = []

    def receiver(sender: object, **kwargs: object) -> None:
        sent.append(sender)

    signals.request_started.connect(receiver)
    signals.request_finished.connect(receiver)
    try:
        exchange = Exchange("/healthz")
        await exchange.run(LeanASGIHandler())
    finally:
        signals.request_started.disconnect(receiver)
        signals.request_finished.disconnect(receiver)

    assert exchange.status == 200
    assert b"x-frame-options" not in exchange.headers
    assert sent == []


async def test_a_request_django_cannot_decode_is_a_400():
    exchange = Exchange("/healthz", query_string=b"q=\xff")

    await exchange.run(LeanASGIHandler())

    assert exchange.status == 400


async def test_a_client_that_leaves_before_its_body_gets_no_answer():
    exchange = Exchange("/healthz", send_body=False)
    exchange.inbox.put_nowait({"type": "http.disconnect"})

    await exchange.run(LeanASGIHandler())

    assert exchange.sent == []


async def test_a_client_that_disconnects_cancels_the_view(settings):
    settings.API_URLCONF = __name__
    slow_view_state.update(started=asyncio.Event(), cancelled=asyncio.Event())
    exchange = Exchange("/slow")
    handling = asyncio.create_task(exchange.run(LeanASGIHandler()))

    await asyncio.wait_for(slow_view_state["started"].wait(), TIMEOUT)
    exchange.inbox.put_nowait({"type": "http.disconnect"})
    await asyncio.wait_for(slow_view_state["cancelled"].wait(), TIMEOUT)
    await handling

    assert exchange.sent == []


async def test_a_non_streaming_response_is_still_one_body_message():
    exchange = Exchange("/healthz")

    await exchange.run(LeanASGIHandler())

    assert exchange.sent[0]["type"] == "http.response.start"
    assert exchange.sent[1:] == [
        {"type": "http.response.body", "body": b'{"status": "ok"}', "more_body": False}
    ]


async def test_stream_parts_made_together_leave_in_one_message_then_the_closing_one(settings):
    settings.API_URLCONF = __name__
    exchange = Exchange("/together")

    await exchange.run(LeanASGIHandler())

    assert exchange.status == 200
    assert exchange.body_messages == [b"one two three", b""]
    assert [message.get("more_body", False) for message in exchange.sent[1:]] == [True, False]


async def test_a_part_followed_by_a_wait_leaves_before_the_next_part_is_made(settings):
    settings.API_URLCONF = __name__
    stream_state["ab_sent"] = asyncio.Event()
    exchange = PacedExchange("/paced")

    await exchange.run(LeanASGIHandler())

    assert stream_state["ab_sent"].is_set()
    assert exchange.body_messages == [b"ab", b"cd", b""]


async def test_the_producer_waits_for_the_writer_past_the_batch_limit():
    client = FakeClient()
    client.open.clear()
    batched = BatchedSend(client.send, limit=10)
    offered: list[bytes] = []

    async def produce() -> None:
        for number in range(20):
            body = b"%04d" % number
            offered.append(body)
            await batched(part(body))

    producer = asyncio.create_task(produce())
    await asyncio.wait_for(client.sending.wait(), TIMEOUT)
    await let_the_loop_turn()

    assert not producer.done()
    # Offered to the batched send, not yet given to the client: the limit, within a part.
    queued = sum(map(len, offered)) - sum(map(len, client.bodies))
    assert 10 <= queued < 10 + 4
    client.open.set()
    await asyncio.wait_for(producer, TIMEOUT)
    await asyncio.wait_for(batched(FINAL), TIMEOUT)
    assert b"".join(client.bodies) == b"".join(b"%04d" % number for number in range(20))
    assert client.last == FINAL
    assert only_this_task_runs()


@pytest.mark.parametrize("next_message", [part(b"more"), FINAL], ids=["next-part", "final"])
async def test_a_client_gone_fails_the_producer_and_leaves_no_task(next_message):
    client = FakeClient(error=OSError("the client went away"))
    batched = BatchedSend(client.send)

    await batched(part(b"first"))
    await asyncio.wait_for(client.failed.wait(), TIMEOUT)

    with pytest.raises(OSError, match="the client went away"):
        await batched(next_message)
    assert client.bodies == [b"first"]
    assert only_this_task_runs()


async def test_cancel_stops_a_writer_that_is_still_sending():
    client = FakeClient()
    client.open.clear()
    batched = BatchedSend(client.send)
    await batched(part(b"stuck"))
    await asyncio.wait_for(client.sending.wait(), TIMEOUT)

    batched.cancel()
    await let_the_loop_turn()

    assert client.bodies == [b"stuck"]
    assert only_this_task_runs()


async def test_a_stream_answers_with_its_status_headers_and_cookies(settings):
    settings.API_URLCONF = __name__
    exchange = Exchange("/with-cookie")

    await exchange.run(LeanASGIHandler())

    assert exchange.status == 201
    assert exchange.headers[b"content-type"] == b"text/event-stream"
    assert exchange.headers[b"x-marker"] == b"caf\xe9"
    assert (b"Set-Cookie", b"seen=1; Path=/") in exchange.sent[0]["headers"]
    assert exchange.body == b"data: one\n\ndata: two\n\n"
