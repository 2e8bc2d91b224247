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

from gateway.providers import envelopes
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
            message = envelopes.assistant_message("", [_tool_call(tool)])
            completion, finish = 8, "tool_calls"
        else:
            pieces, finish = self._plan(body)
            completion = len(pieces)
            message = envelopes.assistant_message("".join(pieces), [])
            await asyncio.sleep(settings.DEMO_TOKEN_DELAY_MS * completion / 1000 / 4)
        return envelopes.completion(
            id="",
            created=created,
            model=upstream_model,
            message=message,
            finish_reason=finish,
            usage=usage_dict(prompt, completion),
            logprobs=False,
        )

    async def stream(
        self, body: dict[str, Any], upstream_model: str
    ) -> AsyncIterator[dict[str, Any]]:
        stream = envelopes.ChunkStream(upstream_model, logprobs=False)
        delay = settings.DEMO_TOKEN_DELAY_MS / 1000
        prompt = count_prompt(body["messages"], body.get("tools"))
        # As OpenAI does: a first chunk with the role and empty content.
        yield stream.chunk({"content": ""})
        tool = _tool_to_call(body)
        if tool is not None:
            name = tool["function"]["name"]
            yield stream.chunk({"tool_calls": [envelopes.tool_call_start(0, _call_id(name), name)]})
            yield stream.chunk({"tool_calls": [envelopes.tool_call_arguments(0, "{}")]})
            yield stream.finish_chunk("tool_calls")
            completion = 8
        else:
            pieces, finish = self._plan(body)
            for piece in pieces:
                if delay:
                    await asyncio.sleep(delay)
                yield stream.chunk({"content": piece})
            yield stream.finish_chunk(finish)
            completion = len(pieces)
        yield stream.usage_chunk(usage_dict(prompt, completion))


def _call_id(name: str) -> str:
    return f"call_demo_{name}"


def _tool_call(tool: dict[str, Any]) -> dict[str, Any]:
    name = tool["function"]["name"]
    return envelopes.tool_call(_call_id(name), name, "{}")
