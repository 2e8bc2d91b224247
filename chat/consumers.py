"""The chat socket: authenticate, hand the question to the engine, forward what it yields.

The page's htmx `ws-send` forms send `{"message": …}` for a question, `{"action":
"regenerate"}` (or "retry") to answer the last question again, `{"action": "edit",
"message": …}` to replace it, and `{"action": "stop"}`; every frame sent back is HTML
whose elements htmx swaps out of band by id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from channels.generic.websocket import AsyncWebsocketConsumer
from django.template.loader import render_to_string
from django.utils.html import format_html

from chat.context import TooLong
from chat.forms import QuestionForm
from chat.models import Conversation
from chat.turns import Event, Finished, Rendered, Started, Turn, take_turn
from gateway import outages
from gateway.sync import db_sync_to_async

log = logging.getLogger(__name__)

FORBIDDEN = 4403
NOT_FOUND = 4404
ACTIONS = {None, "stop", "regenerate", "retry", "edit"}


def _owned_conversation(user: Any, conversation_id: int) -> Conversation | None:
    return Conversation.objects.for_user(user).filter(pk=conversation_id).first()


_owned_conversation_async = db_sync_to_async(_owned_conversation)


def render_event(event: Event) -> str:
    """The out-of-band swaps that show one step of a turn on the page."""
    if isinstance(event, Rendered):
        tail = format_html(
            '<div id="answer-{}-tail" hx-swap-oob="innerHTML">{}</div>', event.answer.pk, event.tail
        )
        if not event.finished:
            return tail
        return (
            format_html(
                '<div id="answer-{}-done" hx-swap-oob="beforeend">{}</div>',
                event.answer.pk,
                event.finished,
            )
            + tail
        )
    if isinstance(event, Started):
        return render_to_string("chat/_turn_started.html", {"event": event})
    context = {"message": event.answer, "meter": event.meter}
    return render_to_string("chat/_turn_finished.html", context)


def render_status(text: str, *, busy: bool = False) -> str:
    return render_to_string("chat/_status.html", {"text": text, "busy": busy, "oob": True})


class ChatConsumer(AsyncWebsocketConsumer):
    # Nothing is sent to a chat from another consumer, so it listens on no channel
    # layer: its socket then needs no Redis, whose layer would end every open chat with
    # a traceback while Redis is away.
    channel_layer_alias = None
    conversation: Conversation
    turn: asyncio.Task[None] | None = None
    stop_requested = False

    async def connect(self) -> None:
        user = self.scope["user"]
        if not user.is_authenticated:
            await self.close(code=FORBIDDEN)
            return
        conversation_id = self.scope["url_route"]["kwargs"]["conversation_id"]
        conversation = await _owned_conversation_async(user, conversation_id)
        if conversation is None:
            await self.close(code=NOT_FOUND)
            return
        self.conversation = conversation
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            data = orjson.loads(text_data or bytes_data or b"")
        except orjson.JSONDecodeError:
            data = None
        # The page sends a string; a form would read 5 or ["hi"] as text and answer it.
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("message") or "", str)
            or (data.get("action") or None) not in ACTIONS
        ):
            await self.send(text_data=render_status("The page sent something unexpected."))
            return
        action = data.get("action") or None
        busy = self.turn is not None and not self.turn.done()
        if action == "stop":
            if self.turn is not None and busy:
                self.stop_requested = True
                self.turn.cancel()
            return
        if busy:
            await self.send(text_data=render_status("Still answering…", busy=True))
            return
        if action in {"regenerate", "retry"}:
            turn = Turn(redo=True)
        else:
            form = QuestionForm(data)
            if not form.is_valid():
                await self.send(text_data=render_status(str(form.errors["message"][0])))
                return
            turn = Turn(
                text=form.cleaned_data["message"],
                redo=action == "edit",
                use_documents=form.cleaned_data["use_documents"],
            )
        self.stop_requested = False
        self.turn = asyncio.create_task(self.answer(turn))

    async def answer(self, turn: Turn) -> None:
        started: Started | None = None
        try:
            async with contextlib.aclosing(
                take_turn(conversation=self.conversation, turn=turn)
            ) as events:
                async for event in events:
                    started = event if isinstance(event, Started) else started
                    await self.send(text_data=render_event(event))
        except (TooLong, LookupError) as exc:
            await self.send(text_data=render_status(str(exc)))
        except asyncio.CancelledError:
            if not self.stop_requested:
                raise
            # Stopped from the page: the socket is still open, so show what was kept.
            if started is not None:
                await self.send(text_data=render_event(Finished(started.answer)))
        except OSError:
            # The server could not send: the page is gone (uvicorn's ClientDisconnected).
            # Closing the turn above already cancelled the upstream and billed what came.
            return
        except Exception as exc:
            if not outages.noted(exc):
                log.exception("chat turn failed in conversation %s", self.conversation.pk)
            if started is None:
                await self.send(text_data=render_status("Something went wrong; reload the page."))
            else:
                await self.send(text_data=render_event(Finished(started.answer)))

    async def disconnect(self, code: int) -> None:
        if self.turn is not None and not self.turn.done():
            self.turn.cancel()
            await asyncio.wait({self.turn})
