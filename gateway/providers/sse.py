"""Server-sent events from an httpx streaming response."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """Yield (event, data) pairs; `event` is "" when the server names none.

    Lines are split on the raw bytes (CR, LF or CRLF, as the SSE format allows) rather
    than through httpx's text and line decoders: this runs once per streamed token.
    """
    event = ""
    data: list[str] = []
    pending = b""
    async for piece in response.aiter_bytes():
        pending += piece
        if b"\r" in pending:
            if pending.endswith(b"\r"):
                # A CRLF may be split between two pieces: wait for the next one.
                pending, held = pending[:-1], b"\r"
            else:
                held = b""
            pending = pending.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        else:
            held = b""
        *lines, rest = pending.split(b"\n")
        pending = rest + held
        for line in lines:
            if not line:
                if data:
                    yield event, "\n".join(data)
                event, data = "", []
            elif line.startswith(b"data:"):
                data.append(line[5:].lstrip(b" ").decode(errors="replace"))
            elif line.startswith(b"event:"):
                event = line[6:].strip().decode(errors="replace")
    pending = pending.rstrip(b"\r")
    if pending.startswith(b"data:"):
        data.append(pending[5:].lstrip(b" ").decode(errors="replace"))
    if data:
        yield event, "\n".join(data)
