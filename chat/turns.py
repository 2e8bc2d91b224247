"""One question and its streamed answer: the web chat as a caller of the gateway engine.

The chat calls the same `open_call` → `Call.open_stream` → `Call.chunks` path as
POST /v1/chat/completions, with the user's web key and `source=web`, so it is
checked, rate limited, billed and logged exactly like an API call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from accounts.models import User
from billing.models import UsageRecord
from chat.models import Conversation, Message, web_key_for
from gateway import calls
from gateway.auth import KeyInfo, key_info
from gateway.errors import GatewayError
from gateway.sync import db_sync_to_async


@dataclass(slots=True)
class Started:
    question: Message
    answer: Message


@dataclass(slots=True)
class Delta:
    answer: Message
    text: str


@dataclass(slots=True)
class Finished:
    answer: Message


Event = Started | Delta | Finished


def _start(
    conversation: Conversation, text: str
) -> tuple[Message, Message, list[dict[str, str]], User]:
    """The turn's messages, stored, and the conversation's owner (read here, in a thread,
    not on the event loop)."""
    history = conversation.history()
    question, answer = conversation.start_turn(text)
    return question, answer, [*history, {"role": "user", "content": text}], conversation.user


def _web_key_prefix(user: User) -> str:
    return web_key_for(user).prefix


def _finish(answer: Message, content: str, status: str, error: str, request_id: str) -> Message:
    usage = UsageRecord.objects.filter(request_id=request_id).first()
    answer.finish(content=content, status=status, error=error, usage=usage)
    return answer


_start_async = db_sync_to_async(_start)
_prefix_async = db_sync_to_async(_web_key_prefix)
_finish_async = db_sync_to_async(_finish)


async def web_key(user: User) -> KeyInfo:
    """The user's web key (minted on first use), through the per-process key cache: what
    the web chat and a signed-in caller of the chat API are billed and limited by."""
    info = await key_info(await _prefix_async(user))
    if info is None or info.revoked:
        raise GatewayError(403, "This account can no longer use the chat.", code="key_revoked")
    return info


def delta_text(chunk: dict[str, Any]) -> str:
    return "".join(
        (choice.get("delta") or {}).get("content") or "" for choice in chunk.get("choices") or ()
    )


async def take_turn(*, conversation: Conversation, text: str) -> AsyncGenerator[Event, None]:
    """Store the question, stream the answer from the engine, store what it cost.

    Close this generator (aclose) when the page goes away: the upstream is
    cancelled and what was generated is billed, as for an API client that hangs up.
    """
    question, answer, messages, owner = await _start_async(conversation, text)
    yield Started(question, answer)
    request_id = calls.new_request_id()
    parts: list[str] = []
    status, error = Message.Status.OK, ""
    try:
        call = await calls.open_call(
            key=await web_key(owner),
            body={"model": conversation.model, "messages": messages, "stream": True},
            request_id=request_id,
            source=UsageRecord.Source.WEB,
        )
        await call.open_stream()
        async with contextlib.aclosing(call.chunks()) as events:
            async for event in events:
                if "error" in event:
                    status, error = Message.Status.ERROR, event["error"]["message"]
                elif piece := delta_text(event):
                    parts.append(piece)
                    yield Delta(answer, piece)
    except GatewayError as exc:
        status, error = Message.Status.ERROR, exc.message
    except (asyncio.CancelledError, GeneratorExit):
        status, error = Message.Status.CANCELLED, "Stopped before the answer was complete."
        raise
    except Exception:
        status, error = Message.Status.ERROR, f"Something went wrong (request {request_id})."
        raise
    finally:
        # The books are settled by the engine; the page's copy is saved even when the
        # socket is gone and this task is being cancelled.
        saving = asyncio.ensure_future(
            _finish_async(answer, "".join(parts), status, error, request_id)
        )
        await asyncio.shield(saving)
    yield Finished(answer)
