"""The chat socket refuses bad input cleanly and bills nothing.

A path outside the chat route, or a conversation the user may not open, is closed
before the handshake completes (4404, or 4403 when signed out), never a traceback.
On an open socket, a frame the page would never send gets the status line's message
and the socket stays open; no message is stored and no money moves.

`world` commits the user, their session and a conversation once for the module (the
consumer reads them on worker threads) and flushes once at the end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.management import call_command

from accounts.models import User
from chat.models import MAX_MESSAGE_CHARS, Conversation, Message
from tests.books import money_snapshot
from tests.chat.conftest import session_cookie

pytestmark = pytest.mark.django_db

TIMEOUT = 5
NOT_FOUND = 4404

# (id, path): each closed with 4404 before it is accepted.
BAD_PATHS: list[tuple[str, str]] = [
    ("negative-id", "/ws/chat/-1/"),
    ("letters", "/ws/chat/abc/"),
    ("no-trailing-slash", "/ws/chat/{pk}"),
    ("extra-segment", "/ws/chat/{pk}/extra/"),
    ("empty-id", "/ws/chat//"),
    ("beyond-int64", "/ws/chat/99999999999999999999/"),
    ("just-beyond-int64", "/ws/chat/9223372036854775808/"),
    ("nul", "/ws/chat/1%00/"),
    ("newline", "/ws/chat/1%0a/"),
    ("ws-root", "/ws/"),
    ("site-root", "/"),
    ("another-socket", "/ws/notifications/"),
    ("v1-path", "/v1/chat/completions"),
    ("unknown-conversation", "/ws/chat/0/"),
    ("someone-elses-conversation", "/ws/chat/{other}/"),
]

# (id, frame as text, or bytes for a binary frame, expected status text)
UNEXPECTED = "The page sent something unexpected."
BAD_FRAMES: list[tuple[str, str | bytes, str]] = [
    ("not-json", "hello", UNEXPECTED),
    ("blank-frame", "  ", UNEXPECTED),
    ("truncated-json", '{"message": "hi', UNEXPECTED),
    ("array", '["hi"]', UNEXPECTED),
    ("null", "null", UNEXPECTED),
    ("number", "42", UNEXPECTED),
    ("string", '"hi"', UNEXPECTED),
    ("deeply-nested", "[" * 5_000 + "]" * 5_000, UNEXPECTED),
    ("lone-surrogate", '{"message": "\\ud800"}', UNEXPECTED),
    ("nan", '{"message": NaN}', UNEXPECTED),
    ("binary-not-utf8", b"\xff\xfe\x00", UNEXPECTED),
    ("binary-array", b"[1, 2]", UNEXPECTED),
    ("message-number", '{"message": 5}', UNEXPECTED),
    ("message-true", '{"message": true}', UNEXPECTED),
    ("message-list", '{"message": ["hi"]}', UNEXPECTED),
    ("message-object", '{"message": {"text": "hi"}}', UNEXPECTED),
    ("empty-object", "{}", "Type a message first."),
    ("message-null", '{"message": null}', "Type a message first."),
    ("message-empty", '{"message": ""}', "Type a message first."),
    ("message-blank", '{"message": "  \\n\\t "}', "Type a message first."),
    ("unknown-action", '{"action": "bogus"}', "unexpected"),
    ("action-number", '{"action": 5}', "unexpected"),
    (
        "message-too-long",
        orjson.dumps({"message": "x" * (MAX_MESSAGE_CHARS + 1)}).decode(),
        f"at most {MAX_MESSAGE_CHARS:,} characters",
    ),
    ("message-with-nul", '{"message": "a\\u0000b"}', "Null characters are not allowed."),
]


@pytest.fixture(scope="module")
def world(django_db_setup: None, django_db_blocker: Any) -> Iterator[dict[str, Any]]:
    with django_db_blocker.unblock():
        call_command("synccatalog", "--demo-only", verbosity=0)
        user = User.objects.create_user("socket-bad-inputs@example.com", "pw-123-secret")
        other = User.objects.create_user("socket-other@example.com", "pw-123-secret")
        yield {
            "user": user,
            "cookie": session_cookie(user),
            "conversation": Conversation.objects.create(user=user, model="demo"),
            "other": Conversation.objects.create(user=other, model="demo"),
        }
        call_command("flush", interactive=False, verbosity=0)


def communicator(path: str, cookie: str | None) -> WebsocketCommunicator:
    from console.asgi import application

    headers = [(b"origin", b"http://testserver"), (b"host", b"testserver")]
    if cookie is not None:
        headers.append((b"cookie", f"sessionid={cookie}".encode()))
    return WebsocketCommunicator(application, path, headers=headers)


@pytest.fixture
async def unchanged(world: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """The world; afterwards no money moved and no chat message was stored."""
    before = await sync_to_async(money_snapshot)()
    messages = await Message.objects.acount()
    yield world
    assert await sync_to_async(money_snapshot)() == before
    assert await Message.objects.acount() == messages


@pytest.mark.parametrize("template", [pytest.param(p, id=n) for n, p in BAD_PATHS])
async def test_a_path_without_a_chat_it_may_open_is_closed_with_4404(
    unchanged: dict[str, Any], template: str
) -> None:
    path = template.format(pk=unchanged["conversation"].pk, other=unchanged["other"].pk)
    socket = communicator(path, unchanged["cookie"])
    connected, code = await socket.connect(timeout=TIMEOUT)
    assert (connected, code) == (False, NOT_FOUND)
    await socket.disconnect()


@pytest.mark.parametrize("path", ["/ws/chat/{pk}/", "/ws/chat/-1/", "/ws/elsewhere/"])
async def test_a_signed_out_visitor_is_closed_without_a_traceback(
    unchanged: dict[str, Any], path: str
) -> None:
    socket = communicator(path.format(pk=unchanged["conversation"].pk), None)
    connected, code = await socket.connect(timeout=TIMEOUT)
    assert not connected and code in {4403, NOT_FOUND}
    await socket.disconnect()


@pytest.mark.parametrize(
    ("frame", "expected"), [pytest.param(f, e, id=n) for n, f, e in BAD_FRAMES]
)
async def test_a_frame_the_page_never_sends_gets_a_status_message(
    unchanged: dict[str, Any], frame: str | bytes, expected: str
) -> None:
    socket = communicator(f"/ws/chat/{unchanged['conversation'].pk}/", unchanged["cookie"])
    connected, _ = await socket.connect(timeout=TIMEOUT)
    assert connected
    try:
        if isinstance(frame, bytes):
            await socket.send_to(bytes_data=frame)
        else:
            await socket.send_to(text_data=frame)
        reply = await socket.receive_from(timeout=TIMEOUT)
        assert 'id="chat-status"' in reply
        assert expected in reply.replace("&#x27;", "'")
        await socket.send_to(text_data='{"action": "stop"}')
        assert await socket.receive_nothing(timeout=0.05)
    finally:
        await socket.disconnect(timeout=TIMEOUT)
