"""The built-in demo provider: no network, a deterministic answer with realistic pacing.

It counts tokens honestly (tiktoken, like every other estimate here), honours
max_tokens (finish_reason "length"), answers JSON for `response_format`, and calls
the first tool when `tool_choice` requires one, so every feature can be tried offline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from django.conf import settings

from gateway.providers.base import Adapter, usage_dict
from gateway.tokens import count_prompt, encoding


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return " ".join(
                part.get("text", "") for part in content or [] if part.get("type") == "text"
            )
    return ""


def demo_answer(body: dict[str, Any]) -> str:
    said = " ".join(_last_user_text(body["messages"]).split())
    if len(said) > 160:
        said = said[:157] + "…"
    text = (
        "Hello from the Switchboard demo model. "
        f'You said: "{said}". '
        "I am not a real language model: I answer the same way every time, so you can try "
        "streaming, billing and usage logs without any upstream account."
    )
    fmt = (body.get("response_format") or {}).get("type")
    if fmt in {"json_object", "json_schema"}:
        return orjson.dumps({"answer": text, "model": "demo"}).decode()
    return text


def _tool_to_call(body: dict[str, Any]) -> dict[str, Any] | None:
    tools = body.get("tools") or []
    choice = body.get("tool_choice")
    if not tools or choice in (None, "none", "auto"):
        return None
    if isinstance(choice, dict):
        name = choice.get("function", {}).get("name")
        return next((t for t in tools if t["function"]["name"] == name), tools[0])
    return tools[0]


class DemoAdapter(Adapter):
    def _plan(self, body: dict[str, Any]) -> tuple[list[str], str]:
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        tokens = encoding().encode_ordinary(demo_answer(body))
        finish = "stop"
        if limit is not None and len(tokens) > limit:
            tokens, finish = tokens[:limit], "length"
        pieces = [encoding().decode([t]) for t in tokens]
        return pieces, finish

    async def complete(self, body: dict[str, Any], upstream_model: str) -> dict[str, Any]:
        created = int(time.time())
        prompt = count_prompt(body["messages"], body.get("tools"))
        tool = _tool_to_call(body)
        if tool is not None:
            message: dict[str, Any] = {
                "role": "assistant",
                "content": None,
                "tool_calls": [_tool_call(tool)],
            }
            completion, finish = 8, "tool_calls"
        else:
            pieces, finish = self._plan(body)
            completion = len(pieces)
            message = {"role": "assistant", "content": "".join(pieces)}
            await asyncio.sleep(settings.DEMO_TOKEN_DELAY_MS * completion / 1000 / 4)
        return {
            "id": "",
            "object": "chat.completion",
            "created": created,
            "model": upstream_model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": usage_dict(prompt, completion),
        }

    async def stream(
        self, body: dict[str, Any], upstream_model: str
    ) -> AsyncIterator[dict[str, Any]]:
        created = int(time.time())
        delay = settings.DEMO_TOKEN_DELAY_MS / 1000
        prompt = count_prompt(body["messages"], body.get("tools"))

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                "id": "",
                "object": "chat.completion.chunk",
                "created": created,
                "model": upstream_model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        yield chunk({"role": "assistant", "content": ""})
        tool = _tool_to_call(body)
        if tool is not None:
            call = _tool_call(tool)
            yield chunk(
                {
                    "tool_calls": [
                        {"index": 0, **call, "function": {**call["function"], "arguments": ""}}
                    ]
                }
            )
            yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]})
            yield chunk({}, "tool_calls")
            completion = 8
        else:
            pieces, finish = self._plan(body)
            for piece in pieces:
                if delay:
                    await asyncio.sleep(delay)
                yield chunk({"content": piece})
            yield chunk({}, finish)
            completion = len(pieces)
        usage_chunk = chunk({})
        usage_chunk["choices"] = []
        usage_chunk["usage"] = usage_dict(prompt, completion)
        yield usage_chunk


def _tool_call(tool: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"call_demo_{tool['function']['name']}",
        "type": "function",
        "function": {"name": tool["function"]["name"], "arguments": "{}"},
    }
