"""Chat fixtures: a signed-in customer's conversation with the demo model, and a
WebsocketCommunicator on the real ASGI application carrying their session cookie."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client


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
