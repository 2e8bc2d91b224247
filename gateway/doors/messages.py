"""POST /v1/messages and /v1/messages/count_tokens: the Anthropic Messages API door.

Claude Code and the Anthropic SDKs speak this protocol. The door translates at the edge:
a Messages request becomes the canonical OpenAI chat body (`to_chat`), runs through
`gateway.calls` like any chat completion (hold, route with fallback, relay, settle), and
the canonical answer comes back as a Messages `message` (`to_message`) or as Anthropic's
stream of events (`MessageStream`). Errors are Anthropic's error object
(`anthropic_error`); what the canonical body cannot carry is dropped on purpose (README,
"The Messages door").

The request as it came also rides along (`native_request`): a route whose adapter
speaks Anthropic sends it on untranslated, and its own message or events are relayed
(`NativeStream`), so cache marks, thinking and betas survive.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import secrets
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, TypeGuard

import orjson
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

from billing.models import UsageRecord
from gateway import calls
from gateway.doors import read_json, sse_event
from gateway.errors import GatewayError, invalid
from gateway.idempotency import idempotent
from gateway.providers.base import NativeRequest
from gateway.tokens import count_prompt
from gateway.views import api_view, json_response, open_request_call

log = logging.getLogger(__name__)

# A stream whose upstream is silent this long gets a `ping` event, so clients and
# proxies between them do not take the quiet for a dead connection.
PING_SECONDS = 5.0

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
# Anthropic's status for "no upstream can serve this now"; its SDKs retry it.
OVERLOADED = 529

KNOWN_FIELDS = {
    "model",
    "messages",
    "max_tokens",
    "system",
    "stream",
    "tools",
    "tool_choice",
    "thinking",
    "metadata",
    "stop_sequences",
    "temperature",
    "top_p",
    "top_k",
    "context_management",
    "service_tier",
    "container",
    "mcp_servers",
    "cache_control",
    "output_config",
    "speed",
    "inference_geo",
    "diagnostics",
    "user_profile_id",
    "workspace_id",
}
# Accepted and not sent on: the canonical body has no place for them (README).
DROPPED_FIELDS = (
    "thinking",
    "context_management",
    "service_tier",
    "cache_control",
    "speed",
    "inference_geo",
    "diagnostics",
    "user_profile_id",
    "workspace_id",
)
# Features the canonical path cannot serve at all: refused rather than ignored.
UNSERVED_FIELDS = {
    "container": "code-execution containers are not served by this gateway",
    "mcp_servers": "remote MCP servers are not served by this gateway",
}
# Not sent on even to an Anthropic upstream: they change its price (a faster or
# regional tier) or name the customer's Anthropic workspace, not the operator's.
NOT_PASSED_THROUGH = ("speed", "inference_geo", "service_tier", "user_profile_id", "workspace_id")
MAX_STOP_SEQUENCES = 4  # what OpenAI-compatible upstreams take
IMAGE_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


# --- errors ----------------------------------------------------------------------------


def anthropic_error(exc: GatewayError, headers: dict[str, str]) -> HttpResponse:
    """A GatewayError as Anthropic's `{"type": "error", "error": {type, message}}`.

    No healthy upstream (503) is Anthropic's 529 `overloaded_error`. Out of credit
    (402) says `x-should-retry: false`, so no Anthropic SDK retries it.
    """
    status = OVERLOADED if exc.status == 503 else exc.status
    payload = {
        "type": "error",
        "error": {"type": ERROR_TYPES.get(status, "invalid_request_error"), "message": exc.message},
    }
    response = HttpResponse(orjson.dumps(payload), status=status, content_type="application/json")
    for name, value in {**headers, **exc.headers}.items():
        response[name] = value
    if status == 402:
        response["x-should-retry"] = "false"
    if "x-request-id" in response:
        response["request-id"] = response["x-request-id"]
    return response


def anthropic_credentials(request: HttpRequest) -> str | None:
    """The key from `x-api-key` (the SDKs' api_key), else `Authorization: Bearer`
    (their auth_token, and Claude Code's ANTHROPIC_AUTH_TOKEN)."""
    key = request.headers.get("x-api-key")
    if key:
        return f"Bearer {key}"
    return request.headers.get("Authorization")


def _stream_error(error: dict[str, Any]) -> dict[str, Any]:
    """The chunk stream's closing `{"error": …}` event as Anthropic's `error` event."""
    kind = "overloaded_error" if error.get("type") == "service_unavailable" else "api_error"
    return {"type": "error", "error": {"type": kind, "message": str(error.get("message", ""))}}


# --- the request ------------------------------------------------------------------------


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is not None and (not _is_number(value) or not low <= value <= high):
        raise invalid(f"{name}: must be a number between {low:g} and {high:g}.", name)


def _text_block(block: Any, where: str) -> str:
    if not isinstance(block, dict) or block.get("type") != "text":
        raise invalid(f"{where}: must be a text block.", where)
    if not isinstance(block.get("text"), str):
        raise invalid(f"{where}.text: must be a string.", where)
    return str(block["text"])


def _system(system: Any, where: str = "system") -> str:
    if isinstance(system, str):
        return system
    if not isinstance(system, list):
        raise invalid(f"{where}: must be a string or an array of text blocks.", where)
    return "\n\n".join(
        text
        for index, block in enumerate(system)
        if (text := _text_block(block, f"{where}.{index}"))
    )


def _image(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64":
        assert isinstance(source, dict)
        media_type, data = source.get("media_type"), source.get("data")
        if media_type not in IMAGE_TYPES:
            raise invalid(
                f"{where}.source.media_type: must be one of {', '.join(sorted(IMAGE_TYPES))}.",
                where,
            )
        if not isinstance(data, str) or not data:
            raise invalid(f"{where}.source.data: must be a non-empty base64 string.", where)
        url = f"data:{media_type};base64,{data}"
    elif kind == "url":
        assert isinstance(source, dict)
        if not isinstance(source.get("url"), str) or not source["url"]:
            raise invalid(f"{where}.source.url: must be a non-empty string.", where)
        url = source["url"]
    else:
        raise invalid(f"{where}.source: must be a base64 or url image source.", where)
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_result(block: dict[str, Any], where: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A tool_result block as an OpenAI tool message, and the images it carried (which a
    tool message cannot hold: they follow in a user message)."""
    tool_use_id = block.get("tool_use_id")
    if not isinstance(tool_use_id, str) or not tool_use_id:
        raise invalid(f"{where}.tool_use_id: must be a non-empty string.", where)
    content = block.get("content", "")
    images: list[dict[str, Any]] = []
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        texts = []
        for index, part in enumerate(content):
            part_where = f"{where}.content.{index}"
            if isinstance(part, dict) and part.get("type") == "image":
                images.append(_image(part, part_where))
            else:
                texts.append(_text_block(part, part_where))
        text = "\n".join(texts)
    else:
        raise invalid(f"{where}.content: must be a string or an array of blocks.", where)
    is_error = block.get("is_error")
    if is_error is not None and not isinstance(is_error, bool):
        raise invalid(f"{where}.is_error: must be a boolean.", where)
    if is_error:
        # OpenAI's tool message has no error flag; the model reads it in the text.
        text = f"Error: {text}"
    return {"role": "tool", "tool_call_id": tool_use_id, "content": text}, images


def _tool_call(block: dict[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(block.get("id"), str) or not block["id"]:
        raise invalid(f"{where}.id: must be a non-empty string.", where)
    if not isinstance(block.get("name"), str) or not block["name"]:
        raise invalid(f"{where}.name: must be a non-empty string.", where)
    if not isinstance(block.get("input"), dict):
        raise invalid(f"{where}.input: must be an object.", where)
    return {
        "id": block["id"],
        "type": "function",
        "function": {"name": block["name"], "arguments": orjson.dumps(block["input"]).decode()},
    }


def _turn(message: Any, index: int) -> list[dict[str, Any]]:
    """One Messages turn as OpenAI messages (a user turn with tool results becomes the
    tool messages, then the user's own parts)."""
    where = f"messages.{index}"
    if not isinstance(message, dict):
        raise invalid(f"{where}: must be an object.", where)
    role = message.get("role")
    if role not in ("user", "assistant", "system"):
        raise invalid(
            f"{where}.role: must be 'user', 'assistant' or 'system'; got {role!r}.", where
        )
    content = message.get("content")
    if role == "system":
        # A mid-conversation system turn (Claude Code sends its environment and
        # reminders this way): a system message in place; routes that have one system
        # prompt gather it there.
        if isinstance(content, list) and not content:
            raise invalid(f"{where}.content: must be a string or a non-empty array.", where)
        return [{"role": "system", "content": _system(content, f"{where}.content")}]
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list) or not content:
        raise invalid(f"{where}.content: must be a string or a non-empty array of blocks.", where)
    parts: list[dict[str, Any]] = []
    tool_messages: list[dict[str, Any]] = []
    tool_calls: list[dict[str, Any]] = []
    for block_index, block in enumerate(content):
        block_where = f"{where}.content.{block_index}"
        kind = block.get("type") if isinstance(block, dict) else None
        if not isinstance(kind, str):
            raise invalid(f"{block_where}: must be an object with a 'type'.", block_where)
        assert isinstance(block, dict)
        if kind == "text":
            parts.append({"type": "text", "text": _text_block(block, block_where)})
        elif kind == "image" and role == "user":
            parts.append(_image(block, block_where))
        elif kind == "tool_result" and role == "user":
            tool_message, images = _tool_result(block, block_where)
            tool_messages.append(tool_message)
            parts.extend(images)
        elif kind == "tool_use" and role == "assistant":
            tool_calls.append(_tool_call(block, block_where))
        elif kind in ("thinking", "redacted_thinking") and role == "assistant":
            continue  # earlier reasoning: the canonical body has no place for it
        elif kind == "document":
            raise invalid(
                f"{block_where}: document blocks (PDF) are not served by this gateway.",
                block_where,
            )
        else:
            raise invalid(
                f"{block_where}: a {role} turn cannot hold a '{kind}' block.", block_where
            )
    if role == "assistant":
        text = "".join(part["text"] for part in parts)
        turn: dict[str, Any] = {
            "role": "assistant",
            "content": text or ("" if not tool_calls else None),
        }
        if tool_calls:
            turn["tool_calls"] = tool_calls
        return [turn]
    if parts:
        tool_messages.append({"role": "user", "content": parts})
    return tool_messages


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise invalid("tools: must be an array.", "tools")
    converted = []
    for index, tool in enumerate(tools):
        where = f"tools.{index}"
        if not isinstance(tool, dict):
            raise invalid(f"{where}: must be an object.", where)
        if tool.get("type") not in (None, "custom"):
            raise invalid(
                f"{where}: server tools ('{tool.get('type')}') are not served by this gateway; "
                "send tools with a name and an input_schema.",
                where,
            )
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise invalid(f"{where}.name: must be a non-empty string.", where)
        if not isinstance(tool.get("input_schema"), dict):
            raise invalid(f"{where}.input_schema: must be a JSON schema object.", where)
        description = tool.get("description")
        if description is not None and not isinstance(description, str):
            raise invalid(f"{where}.description: must be a string.", where)
        function: dict[str, Any] = {"name": tool["name"], "parameters": tool["input_schema"]}
        if description:
            function["description"] = description
        converted.append({"type": "function", "function": function})
    return converted


def _tool_choice(choice: Any, chat: dict[str, Any]) -> None:
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind not in ("auto", "any", "tool", "none"):
        raise invalid(
            "tool_choice: must be an object whose type is auto, any, tool or none.", "tool_choice"
        )
    assert isinstance(choice, dict)
    if kind == "tool":
        if not isinstance(choice.get("name"), str) or not choice["name"]:
            raise invalid("tool_choice.name: must name one of the tools.", "tool_choice")
        if not chat.get("tools"):
            raise invalid("tool_choice: names a tool but no tools were given.", "tool_choice")
        chat["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        chat["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
    parallel = choice.get("disable_parallel_tool_use")
    if parallel is not None and not isinstance(parallel, bool):
        raise invalid("tool_choice.disable_parallel_tool_use: must be a boolean.", "tool_choice")
    if parallel and chat.get("tools"):
        chat["parallel_tool_calls"] = False


def _thinking(thinking: Any, max_tokens: Any) -> None:
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind not in ("enabled", "disabled", "adaptive"):
        raise invalid("thinking: must be an object whose type is enabled or disabled.", "thinking")
    assert isinstance(thinking, dict)
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if not _is_int(budget) or budget < 1024:
            raise invalid(
                "thinking.budget_tokens: must be an integer of at least 1024.", "thinking"
            )
        if _is_int(max_tokens) and budget >= max_tokens:
            raise invalid("thinking.budget_tokens: must be less than max_tokens.", "thinking")


def _stop_sequences(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
        raise invalid("stop_sequences: must be an array of non-empty strings.", "stop_sequences")
    if len(value) > MAX_STOP_SEQUENCES:
        raise invalid(
            f"stop_sequences: at most {MAX_STOP_SEQUENCES} are served by this gateway.",
            "stop_sequences",
        )
    return list(value)


def to_chat(body: dict[str, Any], *, counting: bool = False) -> dict[str, Any]:
    """The canonical OpenAI chat body for a Messages request, or a 400 for the first
    problem found. `counting` (count_tokens) does not require max_tokens."""
    unknown = sorted(set(body) - KNOWN_FIELDS)
    if unknown:
        raise invalid(f"{unknown[0]}: Extra inputs are not permitted.", unknown[0])
    for name, why in UNSERVED_FIELDS.items():
        if body.get(name) is not None:
            raise invalid(f"{name}: {why}.", name)
    model = body.get("model")
    if not isinstance(model, str) or not model.strip() or len(model) > 200:
        raise invalid("model: Field required (a non-empty string).", "model")
    max_tokens = body.get("max_tokens")
    if (max_tokens is not None or not counting) and not (_is_int(max_tokens) and max_tokens >= 1):
        raise invalid("max_tokens: Field required (an integer of at least 1).", "max_tokens")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages: Field required (a non-empty array).", "messages")
    chat: dict[str, Any] = {"model": model, "messages": []}
    if body.get("system") is not None and (system := _system(body["system"])):
        chat["messages"].append({"role": "system", "content": system})
    for index, message in enumerate(messages):
        chat["messages"].extend(_turn(message, index))
    if max_tokens is not None:
        chat["max_tokens"] = max_tokens
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid("stream: must be a boolean.", "stream")
    if stream:
        chat["stream"] = True
    _number(body, "temperature", 0, 1)
    _number(body, "top_p", 0, 1)
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            chat[name] = body[name]
    top_k = body.get("top_k")
    if top_k is not None:
        if not _is_int(top_k) or top_k < 0:
            raise invalid("top_k: must be an integer of at least 0.", "top_k")
        chat["top_k"] = top_k
    if body.get("stop_sequences") is not None and (
        stops := _stop_sequences(body["stop_sequences"])
    ):
        chat["stop"] = stops
    if body.get("tools") is not None and (tools := _tools(body["tools"])):
        chat["tools"] = tools
    if body.get("tool_choice") is not None:
        _tool_choice(body["tool_choice"], chat)
    if body.get("thinking") is not None:
        _thinking(body["thinking"], max_tokens)
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise invalid("metadata: must be an object.", "metadata")
        user_id = metadata.get("user_id")
        if user_id is not None and not isinstance(user_id, str):
            raise invalid("metadata.user_id: must be a string.", "metadata")
        if user_id:
            chat["user"] = user_id
    if body.get("output_config") is not None:
        _output_config(body["output_config"], chat)
    for name in ("context_management", "cache_control", "diagnostics"):
        if body.get(name) is not None and not isinstance(body[name], dict):
            raise invalid(f"{name}: must be an object.", name)
    for name in ("service_tier", "speed", "inference_geo", "user_profile_id", "workspace_id"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise invalid(f"{name}: must be a string.", name)
    return chat


def _output_config(config: Any, chat: dict[str, Any]) -> None:
    """`output_config.format` (structured output) becomes the canonical JSON-schema
    response format; `effort` is dropped (README)."""
    if not isinstance(config, dict):
        raise invalid("output_config: must be an object.", "output_config")
    fmt = config.get("format")
    if fmt is None:
        return
    if (
        not isinstance(fmt, dict)
        or fmt.get("type") != "json_schema"
        or not isinstance(fmt.get("schema"), dict)
    ):
        raise invalid(
            "output_config.format: must be {'type': 'json_schema', 'schema': {…}}.",
            "output_config",
        )
    chat["response_format"] = {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": fmt["schema"]},
    }


def native_request(body: dict[str, Any], request: HttpRequest) -> NativeRequest:
    """The request as it came, for an Anthropic-kind route (cache marks, thinking and
    context management kept), with the client's anthropic-beta header."""
    native = {name: value for name, value in body.items() if name not in NOT_PASSED_THROUGH}
    headers = {}
    if beta := request.headers.get("anthropic-beta"):
        headers["anthropic-beta"] = beta
    return NativeRequest("anthropic", native, headers)


# --- the answer -------------------------------------------------------------------------


def message_id(request_id: str) -> str:
    return f"msg_{request_id.removeprefix('req_')}"


def anthropic_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """Anthropic's usage from OpenAI's: input_tokens excludes the cache reads."""
    cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    return {
        "input_tokens": int(usage.get("prompt_tokens") or 0) - cached,
        "output_tokens": int(usage.get("completion_tokens") or 0),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }


def stop_reason(choice: dict[str, Any]) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence) for a canonical choice. A matched stop sequence is
    known when the upstream names it in the choice's `stop_reason` (vLLM's field, which
    the Anthropic adapter fills too)."""
    finish = choice.get("finish_reason") or "stop"
    matched = choice.get("stop_reason")
    if finish == "stop" and isinstance(matched, str) and matched:
        return "stop_sequence", matched
    return STOP_REASONS.get(finish, "end_turn"), None


def _tool_input(arguments: str) -> dict[str, Any]:
    try:
        parsed = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        log.warning("a tool call's arguments are not JSON; sent as an empty input")
        return {}
    return parsed if isinstance(parsed, dict) else {"value": parsed}


def to_message(result: dict[str, Any], *, request_id: str, model: str) -> dict[str, Any]:
    """A Messages `message` for a canonical chat.completion; an Anthropic upstream's own
    message when it carries one (native), under our id and model."""
    if isinstance(result.get("native"), dict):
        return {**result["native"], "id": message_id(request_id), "model": model}
    choice = (result.get("choices") or [{}])[0]
    answer = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if isinstance(answer.get("reasoning_content"), str) and answer["reasoning_content"]:
        content.append(
            {"type": "thinking", "thinking": answer["reasoning_content"], "signature": ""}
        )
    if isinstance(answer.get("content"), str) and answer["content"]:
        content.append({"type": "text", "text": answer["content"]})
    for call in answer.get("tool_calls") or ():
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{secrets.token_hex(12)}",
                "name": function.get("name", ""),
                "input": _tool_input(function.get("arguments") or ""),
            }
        )
    reason, sequence = stop_reason(choice)
    return {
        "id": message_id(request_id),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": anthropic_usage(result.get("usage") or {}),
    }


class MessageStream:
    """Canonical chunks in, Anthropic's stream events out (one content block at a time:
    thinking, text or tool_use, each started, filled and stopped with one index)."""

    def __init__(self, *, request_id: str, model: str, prompt_estimate: int) -> None:
        self.request_id = request_id
        self.model = model
        self.prompt_estimate = prompt_estimate
        self.index = -1
        self.open: str | None = None  # the kind of the block being filled, if any
        self.tool_blocks: dict[int, int] = {}  # the upstream's tool-call index → block index
        self.reason: str = "end_turn"
        self.sequence: str | None = None

    def start(self) -> list[bytes]:
        usage = {
            "input_tokens": self.prompt_estimate,
            "output_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
        message: dict[str, Any] = {
            "id": message_id(self.request_id),
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        return [sse_event("message_start", {"type": "message_start", "message": message})]

    def _close(self) -> list[bytes]:
        if self.open is None:
            return []
        self.open = None
        return [
            sse_event("content_block_stop", {"type": "content_block_stop", "index": self.index})
        ]

    def _begin(self, kind: str, block: dict[str, Any]) -> list[bytes]:
        events = self._close()
        self.index += 1
        self.open = kind
        start = {"type": "content_block_start", "index": self.index, "content_block": block}
        return [*events, sse_event("content_block_start", start)]

    def _delta(self, delta: dict[str, Any], index: int | None = None) -> bytes:
        event = {
            "type": "content_block_delta",
            "index": self.index if index is None else index,
            "delta": delta,
        }
        return sse_event("content_block_delta", event)

    def on_chunk(self, chunk: dict[str, Any]) -> list[bytes]:
        events: list[bytes] = []
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            thinking = delta.get("reasoning_content")
            if isinstance(thinking, str) and thinking:
                if self.open != "thinking":
                    events += self._begin(
                        "thinking", {"type": "thinking", "thinking": "", "signature": ""}
                    )
                events.append(self._delta({"type": "thinking_delta", "thinking": thinking}))
            text = delta.get("content")
            if isinstance(text, str) and text:
                if self.open != "text":
                    events += self._begin("text", {"type": "text", "text": ""})
                events.append(self._delta({"type": "text_delta", "text": text}))
            for call in delta.get("tool_calls") or ():
                events += self._tool_call(call)
            if choice.get("finish_reason"):
                self.reason, self.sequence = stop_reason(choice)
        return events

    def _tool_call(self, call: dict[str, Any]) -> list[bytes]:
        events: list[bytes] = []
        position = call.get("index", 0)
        function = call.get("function") or {}
        if position not in self.tool_blocks:
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{secrets.token_hex(12)}",
                "name": function.get("name") or "",
                "input": {},
            }
            events += self._begin("tool_use", block)
            self.tool_blocks[position] = self.index
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            block_index = self.tool_blocks[position]
            if block_index == self.index and self.open == "tool_use":
                events.append(self._delta({"type": "input_json_delta", "partial_json": arguments}))
            else:
                log.warning("%s: arguments for a closed tool call dropped", self.request_id)
        return events

    def finish(self, usage: dict[str, Any]) -> list[bytes]:
        """The closing events, with the final usage (and the call's cost: an extra field)."""
        final = {**anthropic_usage(usage)}
        if "cost_micro_usd" in usage:
            final["cost_micro_usd"] = usage["cost_micro_usd"]
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": self.reason, "stop_sequence": self.sequence},
            "usage": final,
        }
        return [
            *self._close(),
            sse_event("message_delta", delta),
            sse_event("message_stop", {"type": "message_stop"}),
        ]


class NativeStream:
    """An Anthropic upstream's own events, relayed as they came but for our message id
    and model, and the closing usage, which gets the call's cost."""

    def __init__(self, *, request_id: str, model: str) -> None:
        self.request_id = request_id
        self.model = model
        self.closing: dict[str, Any] = {"type": "message_delta", "delta": {}, "usage": {}}

    def start(self) -> list[bytes]:
        return []  # the upstream's message_start is relayed

    def on_chunk(self, chunk: dict[str, Any]) -> list[bytes]:
        events: list[bytes] = []
        for event in chunk.get("native") or ():
            kind = event.get("type")
            if kind == "message_start":
                message = {
                    **(event.get("message") or {}),
                    "id": message_id(self.request_id),
                    "model": self.model,
                }
                events.append(sse_event(kind, {**event, "message": message}))
            elif kind == "message_delta":
                self.closing = event  # sent with the cost once the call is settled
            elif kind != "message_stop" and isinstance(kind, str):
                events.append(sse_event(kind, event))
        return events

    def finish(self, usage: dict[str, Any]) -> list[bytes]:
        final = {**(self.closing.get("usage") or {})}
        if "cost_micro_usd" in usage:
            final["cost_micro_usd"] = usage["cost_micro_usd"]
        return [
            sse_event("message_delta", {**self.closing, "usage": final}),
            sse_event("message_stop", {"type": "message_stop"}),
        ]


PING = sse_event("ping", {"type": "ping"})
# How many events the pump may read ahead of the client.
PUMPED_AHEAD = 64


class _Ended:
    """What the pump leaves in the queue when the events end (or fail: `error`)."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


async def with_pings(
    events: AsyncGenerator[dict[str, Any], None], every: float
) -> AsyncGenerator[dict[str, Any] | None, None]:
    """`events`, with a None whenever `every` seconds pass without one. Closing this
    closes `events` (a pending read is cancelled first, as the caller would).

    One task pumps `events` into a short line (a deque) and one timer, re-armed only
    when it fires, adds a None after `every` quiet seconds; a future is made only when
    the reader must wait for the pump, or the pump for room (PUMPED_AHEAD). A task per
    event (with `asyncio.wait`'s futures) cost 5 ms of CPU per 300-event stream, an
    asyncio.Queue 0.3 ms."""
    loop = asyncio.get_running_loop()
    line: collections.deque[dict[str, Any] | _Ended | None] = collections.deque()
    waiting: list[asyncio.Future[None]] = []  # the reader's, or the pump's, at most one
    last = loop.time()
    timer: asyncio.TimerHandle | None = None

    def wake() -> None:
        if waiting:
            waiter = waiting.pop()
            if not waiter.done():
                waiter.set_result(None)

    async def pump() -> None:
        nonlocal last
        try:
            async for event in events:
                last = loop.time()
                line.append(event)
                wake()
                if len(line) >= PUMPED_AHEAD:
                    waiting.append(loop.create_future())
                    await waiting[-1]
        except Exception as exc:
            line.append(_Ended(exc))
        else:
            line.append(_Ended())
        wake()

    def tick() -> None:
        nonlocal last, timer
        now = loop.time()
        if now - last >= every and not line:
            last = now
            line.append(None)
            wake()
        timer = loop.call_at(last + every, tick)

    pumping = asyncio.ensure_future(pump())
    timer = loop.call_at(last + every, tick)
    try:
        while True:
            while not line:
                waiting.append(loop.create_future())
                await waiting[-1]
            item = line.popleft()
            if len(line) < PUMPED_AHEAD:
                wake()
            if isinstance(item, _Ended):
                break
            yield item
        if item.error is not None:
            raise item.error
    finally:
        assert timer is not None
        timer.cancel()
        pumping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pumping
        await events.aclose()


async def relay(call: calls.Call) -> AsyncIterator[bytes]:
    """An opened call's chunks as Anthropic's event stream, with pings while it is quiet:
    translated, or relayed when an Anthropic upstream answered natively."""
    stream: MessageStream | NativeStream | None = None
    async with contextlib.aclosing(with_pings(call.chunks(), PING_SECONDS)) as chunks:
        async for chunk in chunks:
            if stream is None and chunk is not None and "error" not in chunk:
                # The opened route's first chunk says which: the rest come from it too.
                if "native" in chunk:
                    stream = NativeStream(request_id=call.request_id, model=call.model.id)
                else:
                    stream = MessageStream(
                        request_id=call.request_id,
                        model=call.model.id,
                        prompt_estimate=await call.prompt.count_async(),
                    )
                for event in stream.start():
                    yield event
            if chunk is None:
                yield PING
            elif "error" in chunk:
                yield sse_event("error", _stream_error(chunk["error"]))
            elif stream is None:
                continue
            elif chunk.get("usage") and not chunk.get("choices"):
                for event in stream.finish(chunk["usage"]):
                    yield event
            else:
                for event in stream.on_chunk(chunk):
                    yield event


# --- the views --------------------------------------------------------------------------


@api_view(("POST",), render_error=anthropic_error, credentials=anthropic_credentials)
@idempotent
async def messages(request: HttpRequest) -> HttpResponseBase:
    """POST /v1/messages: the Anthropic Messages API, streamed or not, billed once."""
    request_id: str = request.request_id  # type: ignore[attr-defined]
    body = read_json(request)
    chat = to_chat(body)
    call = await open_request_call(
        request, chat, source=UsageRecord.Source.MESSAGES, native=native_request(body, request)
    )
    try:
        if not call.stream:
            result = await call.answer()
            return json_response(
                to_message(result, request_id=request_id, model=call.model.id),
                headers={**call.headers, "X-Request-Cost-Micro-Usd": str(call.charge)},
            )
        await call.open_stream()
    except GatewayError as exc:
        exc.headers = {**call.headers, **exc.headers}
        raise
    response = StreamingHttpResponse(relay(call), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    for name, value in call.headers.items():
        response[name] = value
    return response


@api_view(("POST",), render_error=anthropic_error, credentials=anthropic_credentials)
async def count_tokens(request: HttpRequest) -> HttpResponse:
    """POST /v1/messages/count_tokens: the prompt's tokens by the gateway's tokenizer (the
    count the credit hold uses); free, and not counted against the rate limits."""
    chat = to_chat(read_json(request), counting=True)
    key = request.api_key  # type: ignore[attr-defined]
    model = calls.priced_model(await calls.current_catalog(), chat["model"], key)
    calls.check_policy(key, model)
    tokens = await asyncio.to_thread(count_prompt, chat["messages"], chat.get("tools"))
    return json_response({"input_tokens": tokens})
