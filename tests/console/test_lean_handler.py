"""The /v1 handler (console.lean_handler): what it does, and the Django internals it uses.

The contract tests below fail, naming Django's version and the private name, when a
Django release changes a part of ASGIHandler or BaseHandler the lean handler replaces
or calls; the behaviour tests drive it with raw ASGI messages.
"""

from __future__ import annotations

import asyncio
from importlib.metadata import version
from typing import Any

import django
from django.core import signals
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpRequest, HttpResponse
from django.urls import path
from packaging.specifiers import SpecifierSet

from console.lean_handler import LeanASGIHandler
from tests.contracts import assert_parameters, assert_reads, assert_source_unchanged, pinned

DJANGO = "5.2.19"  # the release the hashes below were taken from
USER = "console/lean_handler.py"
TIMEOUT = 5

# Django's code that LeanASGIHandler replaces, as it was when the handler was written.
REPLACED = {
    ASGIHandler.__call__: "f756809e9c9308dcccb78a301fccf09196e80cdc4745690f80384d09b69dd102",
    ASGIHandler.handle: "98faeb5bef800331e6a8002fbc96b30e4122a23438ae45a047190a531ea11323",
    BaseHandler.load_middleware: "a1fb7ee5f8586195da2174d1bbc2bbfc7ca19b9d26ea66412cb434f45bf6d467",
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


urlpatterns = [path("slow", slow)]


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
