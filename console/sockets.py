"""Websocket paths that no app routes."""

from __future__ import annotations

from channels.generic.websocket import AsyncWebsocketConsumer
from django.urls import re_path

NOT_FOUND = 4404


class NoSuchSocket(AsyncWebsocketConsumer):
    """Refuses the handshake with 4404, as the chat does for a conversation it cannot
    find; without it Channels' router raises for the path (a 500 and a traceback)."""

    async def connect(self) -> None:
        await self.close(code=NOT_FOUND)


# Last in the router: anything, newlines included.
unrouted = re_path(r"^[\s\S]*$", NoSuchSocket.as_asgi())
