"""One question and its streamed answer: the web chat as a caller of the gateway engine.

The chat calls the same `open_call` → `Call.open_stream` → `Call.chunks` path as
POST /v1/chat/completions, with the user's web key and `source=web`, so it is
checked, rate limited, billed and logged exactly like an API call. A regenerate or an
edit is simply a new call: the answer it replaces stays billed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from django.utils.safestring import SafeString

from accounts.models import User
from billing.models import UsageRecord
from chat import context
from chat.markdown import GrowingAnswer
from chat.models import Conversation, Message, web_key_for
from gateway import calls
from gateway.auth import KeyInfo, key_info
from gateway.catalog import get_catalog
from gateway.errors import GatewayError
from gateway.sync import db_sync_to_async

# The growing answer is re-rendered at most this often (the tail of a long block less
# often still: GrowingAnswer.tail_interval).
RENDER_INTERVAL = 0.1


@dataclass(slots=True)
class Started:
    question: Message
    answer: Message
    replaced: list[Message] = field(default_factory=list)
    asked: bool = True


@dataclass(slots=True)
class Rendered:
    """The answer so far: newly finished blocks to append, the unfinished tail to show."""

    answer: Message
    finished: SafeString
    tail: SafeString


@dataclass(slots=True)
class Finished:
    answer: Message
    meter: context.Meter | None = None


Event = Started | Rendered | Finished


@dataclass(slots=True)
class Turn:
    """What the page asked for: a new question, a regenerate (`redo`, no text) or an
    edit of the last question (`redo` with text)."""

    text: str | None = None
    redo: bool = False
    # RAG: ground the answer in the user's documents (gateway/documents/grounding.py).
    use_documents: bool = False


def _start(conversation: Conversation, turn: Turn) -> tuple[Started, list[dict[str, Any]]]:
    # Settings may have been changed on the page since the socket opened.
    conversation.refresh_from_db()
    if turn.redo:
        last = conversation.last_question()
        if last is None:
            raise LookupError("There is no question to answer again yet.")
        history = conversation.history(before=last)
        text = turn.text if turn.text is not None else last.content
    else:
        history, text = conversation.history(), turn.text or ""
    model = get_catalog().resolve(conversation.model)
    system = conversation.system_messages()
    trimmed = 0
    if model is None:
        # Let the engine refuse it with its model_not_found answer.
        messages = [*system, *history, {"role": "user", "content": text}]
    else:
        messages, trimmed = context.fit(
            system=system,
            history=history,
            question=text,
            model=model,
            max_tokens=conversation.max_tokens,
        )
    if turn.redo:
        question, answer, replaced = conversation.redo_turn(turn.text)
        started = Started(question, answer, replaced, asked=turn.text is not None)
    else:
        question, answer = conversation.start_turn(text)
        started = Started(question, answer)
    if trimmed:
        answer.trimmed = trimmed
        answer.save(update_fields=["trimmed"])
    return started, messages


def _web_key_prefix(user: User) -> str:
    return web_key_for(user).prefix


def _conversation_key_prefix(conversation: Conversation) -> str:
    # The conversation's owner is read here, in a thread, not on the event loop.
    return _web_key_prefix(conversation.user)


def _finish(
    answer: Message, content: str, status: str, error: str, code: str, request_id: str
) -> Finished:
    # Settled records only: a refused call's record (the request log's) bills nothing.
    usage = UsageRecord.objects.settled().filter(request_id=request_id).first()
    answer.finish(content=content, status=status, error=error, error_code=code, usage=usage)
    return Finished(answer, context.meter_for(answer.conversation))


_start_async = db_sync_to_async(_start)
_prefix_async = db_sync_to_async(_web_key_prefix)
_conversation_prefix_async = db_sync_to_async(_conversation_key_prefix)
_finish_async = db_sync_to_async(_finish)


async def _usable_key(prefix: str) -> KeyInfo:
    info = await key_info(prefix)
    if info is None or info.revoked:
        raise GatewayError(403, "This account can no longer use the chat.", code="key_revoked")
    return info


async def web_key(user: User) -> KeyInfo:
    """The user's web key (minted on first use), through the per-process key cache: what
    the web chat and a signed-in caller of the chat API are billed and limited by."""
    return await _usable_key(await _prefix_async(user))


async def _web_key(conversation: Conversation) -> KeyInfo:
    return await _usable_key(await _conversation_prefix_async(conversation))


def delta_text(chunk: dict[str, Any]) -> str:
    return "".join(
        (choice.get("delta") or {}).get("content") or "" for choice in chunk.get("choices") or ()
    )


async def take_turn(*, conversation: Conversation, turn: Turn) -> AsyncGenerator[Event, None]:
    """Store the question, stream the answer from the engine, store what it cost (and,
    with `turn.use_documents`, the passages of the user's documents it was grounded in).

    Raises context.TooLong (nothing stored, nothing held) when the question cannot fit
    the model's window, LookupError when there is nothing to regenerate. Close this
    generator (aclose) when the page goes away: the upstream is cancelled and what was
    generated is billed, as for an API client that hangs up.
    """
    started, messages = await _start_async(conversation, turn)
    answer = started.answer
    yield started
    request_id = calls.new_request_id()
    growing = GrowingAnswer()
    rendered_at = 0.0
    status, error, code = Message.Status.OK, "", ""
    try:
        body: dict[str, Any] = {
            "model": conversation.model,
            "messages": messages,
            "stream": True,
            **conversation.request_options(),
        }
        if turn.use_documents:
            body["rag"] = {"enabled": True}
        call = await calls.open_call(
            key=await _web_key(conversation),
            body=body,
            request_id=request_id,
            source=UsageRecord.Source.WEB,
        )
        await call.open_stream()
        async with contextlib.aclosing(call.chunks()) as events:
            async for event in events:
                if "error" in event:
                    status, error = Message.Status.ERROR, event["error"]["message"]
                    code = event["error"].get("code") or ""
                elif piece := delta_text(event):
                    growing.add(piece)
                    now = time.monotonic()
                    if now - rendered_at >= max(RENDER_INTERVAL, growing.tail_interval()):
                        rendered_at = now
                        yield Rendered(answer, *growing.update())
    except GatewayError as exc:
        status, error, code = Message.Status.ERROR, exc.message, exc.code or ""
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
            _finish_async(answer, growing.text, status, error, code, request_id)
        )
        finished = await asyncio.shield(saving)
    yield finished
