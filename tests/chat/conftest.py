"""Chat fixtures: a signed-in customer's conversation with the demo model, and a
WebsocketCommunicator on the real ASGI application carrying their session cookie."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client

FRAMES = 1_000
TIMEOUT = 10


async def ask(communicator: WebsocketCommunicator, text: str, **extra: str) -> None:
    """Send what the composer sends: the message, and an action for an edit."""
    await communicator.send_to(text_data=orjson.dumps({"message": text, **extra}).decode())


async def act(communicator: WebsocketCommunicator, action: str) -> None:
    """Send what an answer's button sends: {"action": …}."""
    await communicator.send_to(text_data=orjson.dumps({"action": action}).decode())


async def frames_until(communicator: WebsocketCommunicator, marker: str) -> list[str]:
    """Frames sent by the server up to and including the first that contains `marker`."""
    frames = []
    for _ in range(FRAMES):
        frame = await communicator.receive_from(timeout=TIMEOUT)
        frames.append(frame)
        if marker in frame:
            return frames
    raise AssertionError(f"no frame contained {marker!r} in {FRAMES} frames")


@asynccontextmanager
async def open_socket(communicator: WebsocketCommunicator) -> AsyncIterator[WebsocketCommunicator]:
    """The socket connected (within TIMEOUT), and disconnected however the block ends."""
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected
    try:
        yield communicator
    finally:
        await communicator.disconnect(timeout=TIMEOUT)


@pytest.fixture(autouse=True)
def _orm_beside_an_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Playwright's sync API and the async consumer tests run an event loop in the test
    thread; the ORM must still work there for set-up and assertions. Set per test, not
    at import, so `check --deploy` elsewhere in the run does not see it."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture
def fast_demo(settings: Any, demo_catalog: None) -> None:
    settings.DEMO_TOKEN_DELAY_MS = 0


@pytest.fixture
def make_conversation(demo_catalog: None) -> Callable[..., Any]:
    from chat.models import Conversation

    def make(user: Any, model: str = "demo", title: str = "") -> Conversation:
        return Conversation.objects.create(user=user, model=model, title=title)

    return make


@pytest.fixture
def conversation(customer: Any, make_conversation: Callable[..., Any]) -> Any:
    return make_conversation(customer.user)


def session_cookie(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


@pytest.fixture
def connect_as() -> Callable[..., WebsocketCommunicator]:
    """A communicator for /ws/chat/<id>/ as `user` (None: anonymous), from an allowed origin."""
    from console.asgi import application

    def connect(user: Any, conversation_id: int) -> WebsocketCommunicator:
        headers = [(b"origin", b"http://testserver"), (b"host", b"testserver")]
        if user is not None:
            headers.append((b"cookie", f"sessionid={session_cookie(user)}".encode()))
        return WebsocketCommunicator(application, f"/ws/chat/{conversation_id}/", headers=headers)

    return connect


@pytest.fixture
def upstream_conversation(fake_upstream, customer, make_conversation):
    """A conversation with `gpt-test`, served by the fake upstream at 127.0.0.1."""
    from gateway.models import Model, Provider, Route

    provider = Provider.objects.create(
        name="primary", kind="openai", base_url=fake_upstream.url + "/v1", api_key="k"
    )
    model = Model.objects.create(
        id="gpt-test", title="GPT Test", input_price=2_000_000, output_price=8_000_000
    )
    Route.objects.create(model=model, provider=provider, upstream_model="primary-model")
    return make_conversation(customer.user, model="gpt-test")
