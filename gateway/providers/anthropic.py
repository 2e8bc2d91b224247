"""Anthropic's Messages API (`POST {base_url}/messages`, base_url like https://api.anthropic.com/v1).

Request mapping: system and developer messages become `system`; tool results become
`tool_result` blocks in a user turn and assistant tool calls `tool_use` blocks;
consecutive turns of one role are merged; image parts become image blocks (base64 for
data URLs, url sources otherwise). `max_tokens` is required upstream: the request's
max_completion_tokens / max_tokens, else DEFAULT_MAX_TOKENS. `temperature` is clamped
to Anthropic's 0..1. Anthropic has no JSON mode, so `response_format` json_object /
json_schema is best effort: an instruction (with the schema) appended to `system`.

A matched stop sequence is kept on the choice as `stop_reason` (the field vLLM uses), so
the Messages door can answer `stop_sequence` with the sequence that matched.

A Messages request from the Messages door (NativeRequest "anthropic") is sent on as it
came, cache marks, thinking and betas included; the answer is turned into the canonical
shapes for metering, with the upstream's own message or events under "native".

Usage: prompt_tokens = input_tokens + cache_read_input_tokens +
cache_creation_input_tokens (each token once), cached_tokens = cache_read_input_tokens.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import orjson

from gateway.catalog import ProviderInfo
from gateway.providers import envelopes
from gateway.providers.base import (
    Adapter,
    NativeRequest,
    ProviderError,
    content_text,
    masked,
    usage_dict,
)

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
RETRYABLE_STREAM_ERRORS = {"overloaded_error", "api_error", "rate_limit_error", "timeout_error"}


def _invalid(message: str) -> ProviderError:
    return ProviderError(message, status=400)


def _image_block(url: str) -> dict[str, Any]:
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header[5:].split(";")[0]
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    return {"type": "image", "source": {"type": "url", "url": url}}


def _content_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content or []:
        kind = part.get("type")
        if kind in ("text", "refusal"):
            text = part.get("text") or part.get("refusal") or ""
            if text:
                block = {"type": "text", "text": text}
                if part.get("cache_control"):
                    block["cache_control"] = part["cache_control"]
                blocks.append(block)
        elif kind == "image_url":
            blocks.append(_image_block(part["image_url"]["url"]))
        else:
            raise _invalid(f"Anthropic models do not accept '{kind}' content parts.")
    return blocks


def _tool_use(call: dict[str, Any]) -> dict[str, Any]:
    arguments = call["function"].get("arguments") or "{}"
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError as exc:
        raise _invalid("A tool call's arguments are not valid JSON.") from exc
    return {
        "type": "tool_use",
        "id": call["id"],
        "name": call["function"]["name"],
        "input": parsed if isinstance(parsed, dict) else {"value": parsed},
    }


def convert_messages(messages: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """OpenAI messages → (system texts, Messages API turns with merged roles)."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        role = message["role"]
        if role in ("system", "developer"):
            system.append(content_text(message.get("content")))
            continue
        if role == "user":
            blocks = _content_blocks(message.get("content"))
        elif role == "assistant":
            blocks = _content_blocks(message.get("content"))
            blocks += [_tool_use(call) for call in message.get("tool_calls") or []]
        elif role == "tool":
            role = "user"
            blocks = [
                {
                    "type": "tool_result",
                    "tool_use_id": message["tool_call_id"],
                    "content": content_text(message.get("content")),
                }
            ]
        else:
            raise _invalid(f"Anthropic models do not accept '{role}' messages; use tools.")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


def _json_instruction(response_format: dict[str, Any] | None) -> str | None:
    kind = (response_format or {}).get("type")
    if kind == "json_object":
        return "Answer with one JSON object and nothing else: no prose, no code fences."
    if kind == "json_schema":
        schema = (response_format or {}).get("json_schema", {}).get("schema", {})
        return (
            "Answer with one JSON object that matches this JSON schema, and nothing else "
            f"(no prose, no code fences):\n{orjson.dumps(schema).decode()}"
        )
    return None


def _tool_choice(body: dict[str, Any]) -> dict[str, Any] | None:
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        result: dict[str, Any] = {"type": "tool", "name": choice["function"]["name"]}
    elif choice == "required":
        result = {"type": "any"}
    elif choice == "none":
        result = {"type": "none"}
    elif choice == "auto" or body.get("parallel_tool_calls") is False:
        result = {"type": "auto"}
    else:
        return None
    if body.get("parallel_tool_calls") is False and result["type"] != "none":
        result["disable_parallel_tool_use"] = True
    return result


def messages_request(body: dict[str, Any], upstream_model: str) -> dict[str, Any]:
    """The Messages API request for an OpenAI chat-completions body."""
    system, turns = convert_messages(body["messages"])
    if not turns:
        raise _invalid("Anthropic models need at least one user or assistant message.")
    instruction = _json_instruction(body.get("response_format"))
    if instruction:
        system.append(instruction)
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
    payload: dict[str, Any] = {"model": upstream_model, "max_tokens": limit, "messages": turns}
    if any(system):
        payload["system"] = "\n\n".join(text for text in system if text)
    if body.get("temperature") is not None:
        payload["temperature"] = min(float(body["temperature"]), 1.0)
    for name in ("top_p", "top_k"):
        if body.get(name) is not None:
            payload[name] = body[name]
    stop = body.get("stop")
    if stop:
        payload["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("tools"):
        payload["tools"] = [
            {
                "name": tool["function"]["name"],
                "description": tool["function"].get("description", ""),
                "input_schema": tool["function"].get("parameters")
                or {"type": "object", "properties": {}},
            }
            for tool in body["tools"]
        ]
        choice = _tool_choice(body)
        if choice:
            payload["tool_choice"] = choice
    if body.get("user"):
        payload["metadata"] = {"user_id": str(body["user"])}
    return payload


def anthropic_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """OpenAI usage from Anthropic's: cache reads and writes counted once, in the prompt,
    the writes split into 5-minute and 1-hour ones where Anthropic says."""
    cache_read = usage.get("cache_read_input_tokens") or 0
    cache_write = usage.get("cache_creation_input_tokens") or 0
    split = usage.get("cache_creation")
    if not isinstance(split, dict):
        split = {}
    cache_write_1h = min(split.get("ephemeral_1h_input_tokens") or 0, cache_write)
    prompt = (usage.get("input_tokens") or 0) + cache_read + cache_write
    return usage_dict(
        prompt, usage.get("output_tokens") or 0, cache_read, cache_write, cache_write_1h
    )


def matched_stop_sequence(answer: dict[str, Any]) -> str | None:
    """The stop sequence an answer (or a message_delta's delta) ended on, if any."""
    sequence = answer.get("stop_sequence")
    if answer.get("stop_reason") == "stop_sequence" and isinstance(sequence, str):
        return sequence
    return None


def chat_completion(result: dict[str, Any], upstream_model: str) -> dict[str, Any]:
    """A chat.completion from a Messages API answer."""
    content = result.get("content") or []
    text = "".join(block.get("text", "") for block in content if block.get("type") == "text")
    tool_calls = [
        envelopes.tool_call(
            block["id"], block["name"], orjson.dumps(block.get("input") or {}).decode()
        )
        for block in content
        if block.get("type") == "tool_use"
    ]
    usage = result.get("usage")
    return envelopes.completion(
        id=result.get("id", ""),
        created=int(time.time()),
        model=result.get("model") or upstream_model,
        message=envelopes.assistant_message(text, tool_calls),
        finish_reason=FINISH_REASONS.get(result.get("stop_reason") or "", "stop"),
        usage=anthropic_usage(usage) if isinstance(usage, dict) else None,
        stop_reason=matched_stop_sequence(result),
    )


def _is_message_stop(event: Any) -> bool:
    """Whether a Messages stream event is the stream's last."""
    return isinstance(event, dict) and event.get("type") == "message_stop"


class _StreamState(envelopes.ChunkStream):
    """Turns Messages API stream events into chat.completion.chunk dicts."""

    def __init__(self, provider: ProviderInfo, upstream_model: str) -> None:
        super().__init__(upstream_model)
        self.provider = provider
        self.usage: dict[str, Any] = {}
        self.finish = "stop"
        self.stop_sequence: str | None = None
        self.tool_index: dict[int, int] = {}

    def on_event(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self.id = message.get("id", "")
            self.model = message.get("model") or self.model
            self.usage.update(message.get("usage") or {})
        elif kind == "content_block_start":
            return self._block_start(event)
        elif kind == "content_block_delta":
            return self._block_delta(event)
        elif kind == "message_delta":
            delta = event.get("delta") or {}
            reason = delta.get("stop_reason")
            if reason:
                self.finish = FINISH_REASONS.get(reason, "stop")
            self.stop_sequence = matched_stop_sequence(delta)
            self.usage.update(
                {k: v for k, v in (event.get("usage") or {}).items() if v is not None}
            )
        elif kind == "error":
            error = event.get("error") or {}
            raise ProviderError(
                f"{self.provider.name} failed mid-stream: "
                f"{masked(str(error.get('message', 'stream error')), self.provider)}",
                retryable=error.get("type") in RETRYABLE_STREAM_ERRORS,
                body=event,
            )
        return []

    def _block_start(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        block = event.get("content_block") or {}
        if block.get("type") == "text" and block.get("text"):
            return [self.chunk({"content": block["text"]})]
        if block.get("type") == "tool_use":
            index = self.tool_index[event["index"]] = len(self.tool_index)
            call = envelopes.tool_call_start(index, block["id"], block["name"])
            return [self.chunk({"tool_calls": [call]})]
        return []

    def _block_delta(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        delta = event.get("delta") or {}
        if delta.get("type") == "text_delta" and delta.get("text"):
            return [self.chunk({"content": delta["text"]})]
        if delta.get("type") == "input_json_delta" and delta.get("partial_json"):
            index = self.tool_index.get(event["index"])
            if index is not None:
                arguments = envelopes.tool_call_arguments(index, delta["partial_json"])
                return [self.chunk({"tool_calls": [arguments]})]
        return []

    def closing(self) -> list[dict[str, Any]]:
        chunks = [self.finish_chunk(self.finish, self.stop_sequence)]
        if self.usage:
            chunks.append(self.usage_chunk(anthropic_usage(self.usage)))
        return chunks


class AnthropicAdapter(Adapter):
    requires_max_tokens = True
    native_protocol = "anthropic"

    def headers(self) -> dict[str, str]:
        return {
            "content-type": "application/json",
            "x-api-key": self.provider.api_key,
            "anthropic-version": API_VERSION,
        }

    def _url(self) -> str:
        return f"{self.provider.base_url}/messages"

    async def complete(self, body: dict[str, Any], upstream_model: str) -> dict[str, Any]:
        result = await self.post_json(self._url(), messages_request(body, upstream_model))
        if not isinstance(result, dict) or not isinstance(result.get("content"), list):
            raise ProviderError(f"{self.provider.name} sent no content", retryable=True)
        return chat_completion(result, upstream_model)

    async def stream(
        self, body: dict[str, Any], upstream_model: str
    ) -> AsyncIterator[dict[str, Any]]:
        payload = {**messages_request(body, upstream_model), "stream": True}
        state = _StreamState(self.provider, upstream_model)
        events = self.stream_events(self._url(), payload, last=_is_message_stop)
        async with aclosing(events):
            async for event in events:
                if not isinstance(event, dict):
                    continue
                if event.get("type") == "message_stop":
                    for chunk in state.closing():
                        yield chunk
                    return
                for chunk in state.on_event(event):
                    yield chunk
        raise self.ended_early()

    async def complete_native(self, native: NativeRequest, upstream_model: str) -> dict[str, Any]:
        payload = {**native.body, "model": upstream_model, "stream": False}
        result = await self.post_json(self._url(), payload, headers=native.headers)
        if not isinstance(result, dict) or not isinstance(result.get("content"), list):
            raise ProviderError(f"{self.provider.name} sent no content", retryable=True)
        completion = chat_completion(result, upstream_model)
        thinking = "".join(
            block.get("thinking") or ""
            for block in result["content"]
            if isinstance(block, dict) and block.get("type") == "thinking"
        )
        if thinking:
            # Counted as generated output when the usage is checked (gateway.metering).
            completion["choices"][0]["message"]["reasoning_content"] = thinking
        return {**completion, "native": result}

    async def stream_native(
        self, native: NativeRequest, upstream_model: str
    ) -> AsyncIterator[dict[str, Any]]:
        """The upstream's events, each carried (under "native") by the canonical chunk it
        became, or by a chunk with an empty delta; thinking is counted as reasoning."""
        payload = {**native.body, "model": upstream_model, "stream": True}
        state = _StreamState(self.provider, upstream_model)
        events = self.stream_events(
            self._url(), payload, headers=native.headers, last=_is_message_stop
        )
        async with aclosing(events) as upstream:
            async for event in upstream:
                if not isinstance(event, dict):
                    continue
                if event.get("type") == "message_stop":
                    chunks = state.closing()
                    chunks[0]["native"] = [event]
                    for chunk in chunks:
                        yield chunk
                    return
                chunks = state.on_event(event)
                thinking = (event.get("delta") or {}).get("thinking")
                if isinstance(thinking, str) and thinking:
                    chunks = [state.chunk({"reasoning_content": thinking})]
                if not chunks:
                    chunks = [state.chunk({})]
                chunks[0]["native"] = [event]
                for chunk in chunks:
                    yield chunk
        raise self.ended_early()
