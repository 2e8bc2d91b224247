"""The OpenAI chat shapes every adapter answers in, built here and nowhere else.

A `chat.completion` (`completion()`, its `assistant_message()` and `tool_call()`s) and the
`chat.completion.chunk`s of a stream (`ChunkStream`: the deltas, the finish chunk and the
usage chunk; `tool_call_start()` / `tool_call_arguments()` for streamed tool calls). Key
order is part of the shape: orjson writes a dict as it was built, and that is what the
client reads.

`ChunkStream.chunk()` runs once per streamed token, so it builds its dict in one literal
and copies the delta only once, to put the role on the first one.
"""

from __future__ import annotations

import time
from typing import Any


def tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    """One tool call of an assistant message; `arguments` is a JSON text."""
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def assistant_message(text: str, tool_calls: list[dict[str, Any]]) -> dict[str, Any]:
    """The assistant's message: its text, or null content when it only calls tools."""
    message: dict[str, Any] = {"role": "assistant", "content": text or (None if tool_calls else "")}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def completion(
    *,
    id: str,
    created: int,
    model: str,
    message: dict[str, Any],
    finish_reason: str,
    usage: dict[str, Any] | None = None,
    stop_reason: str | None = None,
    logprobs: bool = True,
) -> dict[str, Any]:
    """A `chat.completion` with one choice. `stop_reason` is the stop sequence that
    matched (the field vLLM uses); `logprobs=False` leaves the null `logprobs` out."""
    choice: dict[str, Any] = {"index": 0, "message": message}
    if logprobs:
        choice["logprobs"] = None
    choice["finish_reason"] = finish_reason
    if stop_reason:
        choice["stop_reason"] = stop_reason
    result: dict[str, Any] = {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [choice],
    }
    if usage is not None:
        result["usage"] = usage
    return result


def tool_call_start(index: int, call_id: str, name: str) -> dict[str, Any]:
    """The delta that opens streamed tool call number `index`, its arguments still empty."""
    return {
        "index": index,
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": ""},
    }


def tool_call_arguments(index: int, arguments: str) -> dict[str, Any]:
    """A piece of the JSON arguments of streamed tool call number `index`."""
    return {"index": index, "function": {"arguments": arguments}}


def usage_chunk(*, id: str, created: int, model: str, usage: dict[str, Any]) -> dict[str, Any]:
    """The chunk that ends a stream with its usage: no choices."""
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage,
    }


class ChunkStream:
    """The chunks of one streamed answer. `id` and `model` may be set as the upstream
    names them; the role rides on the first delta, not on a chunk of its own, so an
    upstream error before any content can still fall back to another route."""

    def __init__(
        self, model: str, *, id: str = "", created: int | None = None, logprobs: bool = True
    ) -> None:
        self.id = id
        self.model = model
        self.created = int(time.time()) if created is None else created
        self.logprobs = logprobs
        self.role_sent = False

    def chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        """A chunk with one choice carrying `delta` (and `finish`, the finish reason)."""
        if not self.role_sent:
            delta = {"role": "assistant", **delta}
            self.role_sent = True
        if self.logprobs:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        }

    def finish_chunk(self, reason: str, stop_reason: str | None = None) -> dict[str, Any]:
        """The empty delta that says why the answer ended (and which stop sequence
        matched, as `stop_reason`)."""
        last = self.chunk({}, reason)
        if stop_reason:
            last["choices"][0]["stop_reason"] = stop_reason
        return last

    def usage_chunk(self, usage: dict[str, Any]) -> dict[str, Any]:
        """The usage chunk that ends this stream."""
        return usage_chunk(id=self.id, created=self.created, model=self.model, usage=usage)
