"""POST /v1/responses: OpenAI's Responses API, a translator in front of the one call.

A Responses request is checked and turned into a chat-completions body (`chat_body()`),
which goes through `gateway.calls` exactly like /v1/chat/completions (limits, hold,
routes, fallback, relay, one settlement, `UsageRecord.source = "responses"`), for every
kind of route. The answer is translated back: a Response object (`response_from()`), or
the Responses stream (`ResponseStream`), whose every event carries a `sequence_number`
and which always ends with `response.completed` or `response.failed`. A route whose
upstream serves the Responses API itself gets the request as it came instead
(`native_request()`), and its answer or events are relayed (`NativeResponseStream`).

Nothing is stored: `store: true`, `previous_response_id`, `background`, `conversation`
and `prompt` are refused with a 400 `unsupported_parameter`, as are tools other than
`function` (web_search, file_search, …: Switchboard cannot run or price them). `reasoning`
input items are dropped (chat routes cannot take them back), as are `include`,
`truncation`, `max_tool_calls`, `top_logprobs`, `prompt_cache_retention`,
`stream_options` and `client_metadata`. README, "The Responses API", lists it all.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

from billing.models import UsageRecord
from gateway import calls
from gateway.doors import read_json, sse_event
from gateway.errors import GatewayError, invalid, openai_error
from gateway.idempotency import idempotent
from gateway.providers.base import NativeRequest
from gateway.views import api_view, json_response, open_request_call

log = logging.getLogger(__name__)

KNOWN_FIELDS = {
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_output_tokens",
    "temperature",
    "top_p",
    "reasoning",
    "text",
    "store",
    "include",
    "prompt_cache_key",
    "prompt_cache_retention",
    "stream",
    "stream_options",
    "metadata",
    "user",
    "safety_identifier",
    "service_tier",
    "truncation",
    "top_logprobs",
    "max_tool_calls",
    "previous_response_id",
    "background",
    "conversation",
    "prompt",
    "client_metadata",
}
# Fields passed to the call under the same name (checked there, as for chat completions).
SAME_NAME = (
    "model",
    "temperature",
    "top_p",
    "prompt_cache_key",
    "user",
    "safety_identifier",
    "service_tier",
)
NOT_STORED = (
    "Switchboard does not store responses: send the whole conversation in 'input' "
    "(with 'store': false, as Codex CLI does)"
)
MESSAGE_ROLES = {"user", "assistant", "system", "developer"}
REASONING_EFFORTS = {"none", "minimal", "low", "medium", "high", "xhigh"}
REASONING_SUMMARIES = {"auto", "concise", "detailed"}
VERBOSITIES = {"low", "medium", "high"}
IMAGE_DETAILS = {"low", "high", "auto", "original"}
# The chat call's parameter names, as a Responses client knows them (for its errors).
PARAMS = {
    "messages": "input",
    "max_completion_tokens": "max_output_tokens",
    "max_tokens": "max_output_tokens",
    "response_format": "text.format",
    "response_format.json_schema": "text.format",
    "reasoning_effort": "reasoning.effort",
    "verbosity": "text.verbosity",
}
# A stream that fails says so with the codes Responses clients act on (Codex CLI: a
# context window to compact, a quota to report, a rate limit to wait for); anything
# else is a `server_error`, which they retry.
FAILED_CODES = {
    "context_length_exceeded": "context_length_exceeded",
    "insufficient_credits": "insufficient_quota",
    "spend_cap_exceeded": "insufficient_quota",
    "max_cost_exceeded": "insufficient_quota",
    "rate_limit_exceeded": "rate_limit_exceeded",
}
IMAGES_FOLLOW = "The function returned the images that follow."
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _unsupported(param: str, why: str) -> GatewayError:
    return invalid(f"'{param}' is not supported: {why}.", param, "unsupported_parameter")


def _string(value: Any, param: str, *, required: bool = False) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str):
        raise invalid(f"'{param}' must be a string.", param)


def _choice(value: Any, param: str, allowed: set[str]) -> None:
    if value is not None and (not isinstance(value, str) or value not in allowed):
        raise invalid(
            f"'{param}' must be one of {', '.join(sorted(allowed))}; got {value!r}.", param
        )


def _object(value: Any, param: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(f"'{param}' must be an object.", param)
    return value


# --- the request ---------------------------------------------------------------------


def _image_part(part: dict[str, Any], param: str) -> dict[str, Any]:
    if part.get("file_id") is not None:
        raise _unsupported(f"{param}.file_id", "files are not stored here; send 'image_url'")
    url = part.get("image_url")
    if not isinstance(url, str) or not url:
        raise invalid(f"'{param}.image_url' must be a URL or a data: URL.", f"{param}.image_url")
    _choice(part.get("detail"), f"{param}.detail", IMAGE_DETAILS)
    image: dict[str, Any] = {"url": url}
    if part.get("detail") in {"low", "high", "auto"}:
        image["detail"] = part["detail"]
    return {"type": "image_url", "image_url": image}


def _parts(content: Any, param: str) -> list[dict[str, Any]]:
    """A message's content as chat content parts (text and images)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not content:
        raise invalid(f"'{param}' must be a string or a non-empty array of content parts.", param)
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        where = f"{param}[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if not isinstance(kind, str):
            raise invalid(f"'{where}' must be an object with a 'type'.", where)
        if kind in {"input_text", "output_text"}:
            _string(part.get("text"), f"{where}.text", required=True)
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "refusal":
            _string(part.get("refusal"), f"{where}.refusal", required=True)
            parts.append({"type": "text", "text": part["refusal"]})
        elif kind == "input_image":
            parts.append(_image_part(part, where))
        elif kind == "input_file":
            raise _unsupported(where, "input_file parts are not served; send the text instead")
        elif kind == "input_audio":
            raise _unsupported(where, "audio is billed at its own prices, not the text price")
        else:
            raise invalid(
                f"'{where}.type' must be input_text, input_image or output_text; got {kind!r}.",
                f"{where}.type",
            )
    return parts


def _text_only(parts: list[dict[str, Any]], param: str) -> str:
    if any(part["type"] != "text" for part in parts):
        raise _unsupported(param, "only text is served here (images go in user messages)")
    return "".join(part["text"] for part in parts)


def _message(item: dict[str, Any], param: str) -> dict[str, Any]:
    role = item.get("role")
    if not isinstance(role, str) or role not in MESSAGE_ROLES:
        raise invalid(
            f"'{param}.role' must be one of {', '.join(sorted(MESSAGE_ROLES))}; got {role!r}.",
            f"{param}.role",
        )
    parts = _parts(item.get("content"), f"{param}.content")
    if role == "user":
        return {"role": "user", "content": parts}
    return {"role": role, "content": _text_only(parts, f"{param}.content")}


def _function_call(item: dict[str, Any], param: str) -> dict[str, Any]:
    for name in ("call_id", "name"):
        value = item.get(name)
        if not isinstance(value, str) or not value:
            raise invalid(f"'{param}.{name}' must be a non-empty string.", f"{param}.{name}")
    _string(item.get("arguments"), f"{param}.arguments", required=True)
    return {
        "id": item["call_id"],
        "type": "function",
        "function": {"name": item["name"], "arguments": item["arguments"]},
    }


def _function_output(item: dict[str, Any], param: str) -> tuple[dict[str, Any], list[Any]]:
    """The tool message for a function's output, and the images it returned (a chat
    tool message holds text only: they follow in a user message)."""
    call_id = item.get("call_id")
    if not isinstance(call_id, str) or not call_id:
        raise invalid(f"'{param}.call_id' must be a non-empty string.", f"{param}.call_id")
    output = item.get("output")
    if isinstance(output, str):
        return {"role": "tool", "tool_call_id": call_id, "content": output}, []
    if not isinstance(output, list) or not output:
        raise invalid(f"'{param}.output' must be a string or an array of parts.", f"{param}.output")
    parts = _parts(output, f"{param}.output")
    text = "".join(part["text"] for part in parts if part["type"] == "text")
    images = [part for part in parts if part["type"] != "text"]
    if images and not text:
        text = IMAGES_FOLLOW
    return {"role": "tool", "tool_call_id": call_id, "content": text}, images


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """`instructions` and `input` as chat messages; a function call joins the assistant
    message before it, as chat completions carry them."""
    instructions = body.get("instructions")
    _string(instructions, "instructions")
    messages: list[dict[str, Any]] = []
    if instructions:
        messages.append({"role": "system", "content": instructions})
    items = body.get("input")
    if items is None:
        raise invalid("'input' is required.", "input")
    if isinstance(items, str):
        return [*messages, {"role": "user", "content": items}]
    if not isinstance(items, list) or not items:
        raise invalid("'input' must be a string or a non-empty array of items.", "input")
    images: list[Any] = []  # returned by functions, shown after their run of outputs
    for index, item in enumerate(items):
        param = f"input[{index}]"
        if not isinstance(item, dict):
            raise invalid(f"'{param}' must be an object.", param)
        kind = item.get("type", "message" if "role" in item else None)
        if images and kind in {"message", "function_call"}:
            messages.append({"role": "user", "content": images})
            images = []
        if kind == "message":
            messages.append(_message(item, param))
        elif kind == "function_call":
            call = _function_call(item, param)
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
                if not last["content"]:
                    last["content"] = None
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            message, returned = _function_output(item, param)
            messages.append(message)
            images += returned
        elif kind == "reasoning":
            # Reasoning from an OpenAI Responses model cannot be given back to a chat
            # route; the next turn is answered without it (README says so).
            continue
        elif kind == "item_reference":
            raise _unsupported(param, NOT_STORED)
        else:
            raise _unsupported(
                f"{param}.type",
                f"input items of type {kind!r} are not served (only message, function_call, "
                "function_call_output and reasoning)",
            )
    if images:
        messages.append({"role": "user", "content": images})
    if not any(m["role"] != "system" for m in messages):
        raise invalid("'input' must hold at least one message or function call.", "input")
    return messages


def _tools(body: dict[str, Any]) -> list[dict[str, Any]] | None:
    tools = body.get("tools")
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise invalid("'tools' must be an array.", "tools")
    converted = []
    for index, tool in enumerate(tools):
        param = f"tools[{index}]"
        kind = tool.get("type") if isinstance(tool, dict) else None
        if not isinstance(kind, str):
            raise invalid(f"'{param}' must be an object with a 'type'.", param)
        if kind != "function":
            raise _unsupported(
                f"{param}.type",
                f"tools of type {kind!r} are not served by Switchboard, which cannot run or "
                "price them; only 'function' tools are",
            )
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise invalid(f"'{param}.name' must be a non-empty string.", f"{param}.name")
        if tool.get("parameters") is not None and not isinstance(tool["parameters"], dict):
            raise invalid(
                f"'{param}.parameters' must be a JSON schema object.", f"{param}.parameters"
            )
        _string(tool.get("description"), f"{param}.description")
        if tool.get("strict") is not None and not isinstance(tool["strict"], bool):
            raise invalid(f"'{param}.strict' must be a boolean.", f"{param}.strict")
        function = {
            name: tool[name]
            for name in ("name", "description", "parameters", "strict")
            if tool.get(name) is not None
        }
        converted.append({"type": "function", "function": function})
    return converted


def _tool_choice(choice: Any) -> Any:
    if choice is None or choice in ("none", "auto", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        if not isinstance(choice.get("name"), str) or not choice["name"]:
            raise invalid("'tool_choice.name' must name a function.", "tool_choice.name")
        return {"type": "function", "function": {"name": choice["name"]}}
    if isinstance(choice, dict) and isinstance(choice.get("type"), str):
        raise _unsupported(
            "tool_choice",
            f"a tool_choice of type {choice['type']!r} is not served (only function tools are)",
        )
    raise invalid(
        "'tool_choice' must be 'none', 'auto', 'required' or {'type': 'function', 'name': …}.",
        "tool_choice",
    )


def _tooling(body: dict[str, Any]) -> dict[str, Any]:
    """`tools`, `tool_choice` and `parallel_tool_calls` for the chat call: without tools,
    neither of the others (OpenAI refuses them alone, and they mean nothing then)."""
    tools = _tools(body)
    choice = _tool_choice(body.get("tool_choice"))
    if isinstance(choice, dict) and not tools:
        raise invalid("'tool_choice' names a function but no 'tools' were given.", "tool_choice")
    if not tools:
        return {}
    fields: dict[str, Any] = {"tools": tools}
    if choice is not None:
        fields["tool_choice"] = choice
    if body.get("parallel_tool_calls") is not None:
        fields["parallel_tool_calls"] = body["parallel_tool_calls"]
    return fields


def _response_format(text: dict[str, Any]) -> dict[str, Any] | None:
    fmt = _object(text.get("format"), "text.format")
    kind = fmt.get("type")
    if not fmt or kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind != "json_schema":
        raise invalid(
            "'text.format.type' must be 'text', 'json_object' or 'json_schema'.", "text.format.type"
        )
    if not isinstance(fmt.get("name"), str) or not fmt["name"]:
        raise invalid("'text.format.name' is required for a JSON schema.", "text.format.name")
    if not isinstance(fmt.get("schema"), dict):
        raise invalid("'text.format.schema' must be a JSON schema object.", "text.format.schema")
    if fmt.get("strict") is not None and not isinstance(fmt["strict"], bool):
        raise invalid("'text.format.strict' must be a boolean.", "text.format.strict")
    _string(fmt.get("description"), "text.format.description")
    schema = {
        name: fmt[name]
        for name in ("name", "schema", "strict", "description")
        if fmt.get(name) is not None
    }
    return {"type": "json_schema", "json_schema": schema}


def _refuse_what_needs_storage(body: dict[str, Any]) -> None:
    store = body.get("store")
    if store is not None and not isinstance(store, bool):
        raise invalid("'store' must be a boolean.", "store")
    if store:
        raise _unsupported("store", NOT_STORED)
    if body.get("previous_response_id") is not None:
        raise _unsupported("previous_response_id", NOT_STORED)
    if body.get("conversation") is not None:
        raise _unsupported("conversation", NOT_STORED)
    if body.get("prompt") is not None:
        raise _unsupported("prompt", "stored prompt templates are not served; send 'input'")
    if body.get("background"):
        raise _unsupported("background", "background responses need storage; stream instead")


def _dropped_fields(body: dict[str, Any]) -> None:
    """Check the fields that are accepted and then dropped (README lists them)."""
    include = body.get("include")
    if include is not None and (
        not isinstance(include, list) or not all(isinstance(i, str) for i in include)
    ):
        raise invalid("'include' must be an array of strings.", "include")
    _choice(body.get("truncation"), "truncation", {"auto", "disabled"})
    _choice(body.get("prompt_cache_retention"), "prompt_cache_retention", {"in_memory", "24h"})
    for name, high in (("top_logprobs", 20), ("max_tool_calls", 10_000)):
        value = body.get(name)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= high
        ):
            raise invalid(f"'{name}' must be an integer between 0 and {high}.", name)
    _object(body.get("stream_options"), "stream_options")
    _object(body.get("client_metadata"), "client_metadata")
    metadata = _object(body.get("metadata"), "metadata")
    if not all(isinstance(v, str) for v in metadata.values()):
        raise invalid("'metadata' must map keys to strings.", "metadata")


def chat_body(body: dict[str, Any]) -> dict[str, Any]:
    """The chat-completions body for a Responses request; a 400 for what is not served."""
    unknown = sorted(set(body) - KNOWN_FIELDS)
    if unknown:
        raise invalid(f"Unrecognized request argument supplied: {', '.join(unknown)}", unknown[0])
    _refuse_what_needs_storage(body)
    _dropped_fields(body)
    for name in ("prompt_cache_key", "safety_identifier"):
        _string(body.get(name), name)
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise invalid("'parallel_tool_calls' must be a boolean.", "parallel_tool_calls")
    chat: dict[str, Any] = {name: body[name] for name in SAME_NAME if body.get(name) is not None}
    chat["messages"] = _messages(body)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid("'stream' must be a boolean.", "stream")
    chat["stream"] = bool(stream)
    limit = body.get("max_output_tokens")
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise invalid("'max_output_tokens' must be a positive integer.", "max_output_tokens")
        chat["max_completion_tokens"] = limit
    chat.update(_tooling(body))
    reasoning = _object(body.get("reasoning"), "reasoning")
    _choice(reasoning.get("effort"), "reasoning.effort", REASONING_EFFORTS)
    _choice(reasoning.get("summary"), "reasoning.summary", REASONING_SUMMARIES)
    _choice(reasoning.get("generate_summary"), "reasoning.generate_summary", REASONING_SUMMARIES)
    if reasoning.get("effort") is not None:
        chat["reasoning_effort"] = reasoning["effort"]
    text = _object(body.get("text"), "text")
    _choice(text.get("verbosity"), "text.verbosity", VERBOSITIES)
    if text.get("verbosity") is not None:
        chat["verbosity"] = text["verbosity"]
    response_format = _response_format(text)
    if response_format is not None:
        chat["response_format"] = response_format
    return chat


def native_request(body: dict[str, Any]) -> NativeRequest:
    """The request as it came, for a route that serves the Responses API. Reasoning items
    ride along there (a chat route cannot take them), so the hold counts them too, at
    their size in bytes: a token is at least one byte."""
    items = body.get("input")
    reasoning = [
        item
        for item in (items if isinstance(items, list) else ())
        if isinstance(item, dict) and item.get("type") == "reasoning"
    ]
    extra = len(orjson.dumps(reasoning)) if reasoning else 0
    return NativeRequest("responses", body, extra_prompt_tokens=extra)


def door_error(exc: GatewayError) -> GatewayError:
    """The call's error in the Responses client's words: its parameter names."""
    param = exc.param
    if param is not None:
        base = param.split("[", 1)[0]
        if param in PARAMS:
            exc.param = PARAMS[param]
        elif base == "messages":
            exc.param = "input"
        elif param.startswith("tools[") and ".function." in param:
            exc.param = param.replace(".function.", ".")
    for chat_name in ("max_completion_tokens", "max_tokens"):
        if chat_name in exc.message:
            exc.message = exc.message.replace(chat_name, "max_output_tokens")
    if exc.code == "context_length_exceeded":
        for chat_words, words in (
            ("in the messages", "in the input"),
            ("in the completion", "in the output"),
            ("the messages or completion", "the input or max_output_tokens"),
        ):
            exc.message = exc.message.replace(chat_words, words)
    return exc


# --- the answer ----------------------------------------------------------------------


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def response_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """The Responses usage object for the call's metered usage (cost fields kept)."""
    prompt, output = int(usage["prompt_tokens"]), int(usage["completion_tokens"])
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens", 0)
    extra: dict[str, Any] = {n: usage[n] for n in ("cost", "cost_micro_usd") if n in usage}
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": int(usage["prompt_tokens_details"]["cached_tokens"]),
            "cache_write_tokens": int(usage["prompt_tokens_details"].get("cache_write_tokens", 0)),
        },
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": int(reasoning)},
        "total_tokens": prompt + output,
        **extra,
    }


@dataclass(slots=True)
class Envelope:
    """What every Response object of one call says about its request."""

    response_id: str
    model: str
    request: dict[str, Any]
    created_at: int = field(default_factory=lambda: int(time.time()))

    def response(
        self,
        status: str,
        output: list[dict[str, Any]],
        *,
        usage: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        incomplete: str | None = None,
    ) -> dict[str, Any]:
        body = self.request
        reasoning = body.get("reasoning") or {}
        text = body.get("text") or {}
        return {
            "id": self.response_id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": False,
            "error": error,
            "incomplete_details": {"reason": incomplete} if incomplete else None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": body.get("max_tool_calls"),
            "metadata": body.get("metadata") or {},
            "model": self.model,
            "output": output,
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": None,
            "prompt_cache_key": body.get("prompt_cache_key"),
            "reasoning": {
                "effort": reasoning.get("effort"),
                "summary": reasoning.get("summary"),
            },
            "safety_identifier": body.get("safety_identifier"),
            "service_tier": body.get("service_tier") or "default",
            "store": False,
            "temperature": body.get("temperature"),
            "text": {
                "format": text.get("format") or {"type": "text"},
                **({"verbosity": text["verbosity"]} if text.get("verbosity") else {}),
            },
            "tool_choice": body.get("tool_choice") or "auto",
            "tools": body.get("tools") or [],
            "top_logprobs": body.get("top_logprobs"),
            "top_p": body.get("top_p"),
            "truncation": body.get("truncation") or "disabled",
            "usage": usage,
            "user": body.get("user"),
        }


def _message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [_text_part(text)] if status != "in_progress" else [],
    }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _function_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str
) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def response_from(envelope: Envelope, completion: dict[str, Any]) -> dict[str, Any]:
    """The Response object for a non-streamed chat completion, or the upstream's own
    when a Responses upstream answered (under our id and model, with the call's cost)."""
    native = completion.get("native")
    if isinstance(native, dict):
        usage = {**(native.get("usage") or {}), **response_usage(completion["usage"])}
        return {**native, "id": envelope.response_id, "model": envelope.model, "usage": usage}
    choice = (completion.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    output: list[dict[str, Any]] = []
    text = message.get("content") or message.get("refusal")
    if text:
        output.append(_message_item(_id("msg"), text, "completed"))
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        output.append(
            _function_item(
                _id("fc"),
                call.get("id") or _id("call"),
                function.get("name") or "",
                function.get("arguments") or "",
                "completed",
            )
        )
    incomplete = INCOMPLETE.get(choice.get("finish_reason") or "")
    return envelope.response(
        "incomplete" if incomplete else "completed",
        output,
        usage=response_usage(completion["usage"]),
        incomplete=incomplete,
    )


def failed_error(error: dict[str, Any]) -> dict[str, Any]:
    """The `error` of a failed Response, from the call's OpenAI error object."""
    code = FAILED_CODES.get(str(error.get("code")), "server_error")
    return {"code": code, "message": str(error.get("message") or "The response failed.")}


@dataclass(slots=True)
class _OpenItem:
    item: dict[str, Any]
    output_index: int
    tool_index: int | None = None
    parts: list[str] = field(default_factory=list)


class ResponseStream:
    """The Responses stream events for one call's chat chunks, as server-sent events."""

    def __init__(self, envelope: Envelope) -> None:
        self.envelope = envelope
        self.sequence = 0
        self.output: list[dict[str, Any]] = []
        self.open: _OpenItem | None = None
        self.finish_reason: str | None = None
        self.ended = False

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return sse_event(kind, payload)

    def start(self) -> list[bytes]:
        response = self.envelope.response("in_progress", [])
        return [
            self._event("response.created", response=response),
            self._event("response.in_progress", response=response),
        ]

    def translate(self, chunk: dict[str, Any]) -> list[bytes]:
        """The events for one item of `Call.chunks()`: a chat chunk, the final usage
        chunk, or the error that ends a broken stream."""
        if "error" in chunk:
            return self.failed(chunk["error"])
        if chunk.get("usage") is not None and not chunk.get("choices"):
            return self.completed(chunk["usage"])
        return self.chunk(chunk)

    def chunk(self, chunk: dict[str, Any]) -> list[bytes]:
        """The events for a chat chunk's text and tool-call deltas."""
        events: list[bytes] = []
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            text = delta.get("content") or delta.get("refusal")
            if text:
                events += self._text(text)
            for call in delta.get("tool_calls") or ():
                events += self._tool_call(call)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return events

    def _add(self, item: dict[str, Any], tool_index: int | None = None) -> list[bytes]:
        events = self._close()
        self.open = _OpenItem(item, len(self.output), tool_index)
        self.output.append(item)
        events.append(
            self._event(
                "response.output_item.added", output_index=self.open.output_index, item=item
            )
        )
        return events

    def _text(self, text: str) -> list[bytes]:
        events: list[bytes] = []
        if self.open is None or self.open.item["type"] != "message":
            events += self._add(_message_item(_id("msg"), "", "in_progress"))
            assert self.open is not None
            events.append(
                self._event(
                    "response.content_part.added",
                    item_id=self.open.item["id"],
                    output_index=self.open.output_index,
                    content_index=0,
                    part=_text_part(""),
                )
            )
        assert self.open is not None
        self.open.parts.append(text)
        events.append(
            self._event(
                "response.output_text.delta",
                item_id=self.open.item["id"],
                output_index=self.open.output_index,
                content_index=0,
                delta=text,
                logprobs=[],
            )
        )
        return events

    def _tool_call(self, call: dict[str, Any]) -> list[bytes]:
        events: list[bytes] = []
        index = call.get("index", 0)
        function = call.get("function") or {}
        if self.open is None or self.open.tool_index != index:
            item = _function_item(
                _id("fc"),
                call.get("id") or _id("call"),
                function.get("name") or "",
                "",
                "in_progress",
            )
            events += self._add(item, index)
        assert self.open is not None
        arguments = function.get("arguments") or ""
        if arguments:
            self.open.parts.append(arguments)
            events.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=self.open.item["id"],
                    output_index=self.open.output_index,
                    delta=arguments,
                )
            )
        return events

    def _close(self, status: str = "completed") -> list[bytes]:
        """Finish the item being streamed: its done events, its final form in `output`."""
        current, self.open = self.open, None
        if current is None:
            return []
        item, where = current.item, current.output_index
        joined = "".join(current.parts)
        events: list[bytes] = []
        if item["type"] == "message":
            done = _message_item(item["id"], joined, status)
            common = {"item_id": item["id"], "output_index": where, "content_index": 0}
            events.append(
                self._event("response.output_text.done", **common, text=joined, logprobs=[])
            )
            events.append(
                self._event("response.content_part.done", **common, part=_text_part(joined))
            )
        else:
            done = {**item, "arguments": joined, "status": status}
            events.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=where,
                    name=item["name"],
                    arguments=joined,
                )
            )
        self.output[where] = done
        events.append(self._event("response.output_item.done", output_index=where, item=done))
        return events

    def completed(self, usage: dict[str, Any]) -> list[bytes]:
        """The end of an answered call: `response.completed` with its usage and cost (an
        answer cut by max_output_tokens is completed with status `incomplete`)."""
        incomplete = INCOMPLETE.get(self.finish_reason or "")
        events = self._close("incomplete" if incomplete else "completed")
        self.ended = True
        response = self.envelope.response(
            "incomplete" if incomplete else "completed",
            self.output,
            usage=response_usage(usage),
            incomplete=incomplete,
        )
        events.append(self._event("response.completed", response=response))
        return events

    def failed(self, error: dict[str, Any]) -> list[bytes]:
        """The end of a call that broke: `response.failed`, with what was produced."""
        events = self._close("incomplete")
        self.ended = True
        response = self.envelope.response("failed", self.output, error=failed_error(error))
        events.append(self._event("response.failed", response=response))
        return events


class NativeResponseStream:
    """A Responses upstream's own events, relayed as they came but for our response id,
    model and sequence numbers; `response.completed` waits for the call's cost."""

    def __init__(self, envelope: Envelope) -> None:
        self.envelope = envelope
        self.sequence = 0
        self.response: dict[str, Any] = envelope.response("in_progress", [])
        self.output: list[dict[str, Any]] = []
        self.closing: dict[str, Any] | None = None
        self.ended = False

    def _event(self, event: dict[str, Any]) -> bytes:
        payload = {**event, "sequence_number": self.sequence}
        self.sequence += 1
        return sse_event(str(event.get("type")), payload)

    def _ours(self, response: dict[str, Any]) -> dict[str, Any]:
        return {**response, "id": self.envelope.response_id, "model": self.envelope.model}

    def start(self) -> list[bytes]:
        return []  # the upstream's response.created is relayed

    def translate(self, chunk: dict[str, Any]) -> list[bytes]:
        if "error" in chunk:
            return self.failed(chunk["error"])
        if chunk.get("usage") is not None and not chunk.get("choices"):
            return self.completed(chunk["usage"])
        events: list[bytes] = []
        for event in chunk.get("native") or ():
            kind = event.get("type")
            if isinstance(event.get("response"), dict):
                self.response = self._ours(event["response"])
                event = {**event, "response": self.response}
            if kind in ("response.completed", "response.incomplete"):
                self.closing = event
                continue
            if kind == "response.output_item.done" and isinstance(event.get("item"), dict):
                self.output.append(event["item"])
            if isinstance(kind, str):
                events.append(self._event(event))
        return events

    def completed(self, usage: dict[str, Any]) -> list[bytes]:
        """The upstream's closing event, its usage with the call's cost."""
        self.ended = True
        closing = self.closing or {"type": "response.completed", "response": self.response}
        response = closing.get("response") or self.response
        final = {**(response.get("usage") or {}), **response_usage(usage)}
        return [self._event({**closing, "response": {**response, "usage": final}})]

    def failed(self, error: dict[str, Any]) -> list[bytes]:
        self.ended = True
        response = {
            **self.response,
            "status": "failed",
            "output": self.output,
            "error": failed_error(error),
        }
        return [self._event({"type": "response.failed", "response": response})]


async def relay(call: calls.Call, envelope: Envelope) -> AsyncIterator[bytes]:
    """The opened call's chunks as Responses events, translated or, from a Responses
    upstream, relayed; settles once however it ends (a client that leaves closes this
    generator, and the call is billed as `cancelled`)."""
    stream: ResponseStream | NativeResponseStream | None = None
    async with contextlib.aclosing(call.chunks()) as chunks:
        async for chunk in chunks:
            if stream is None:
                # The opened route's first chunk says which: the rest come from it too.
                native = "native" in chunk
                stream = NativeResponseStream(envelope) if native else ResponseStream(envelope)
                for event in stream.start():
                    yield event
            try:
                events = stream.translate(chunk)
            except Exception:
                log.exception("the Responses stream of %s could not be translated", call.request_id)
                await call.end(UsageRecord.Status.ERROR, "the Responses stream failed")
                break
            for event in events:
                yield event
    if stream is None:
        stream = ResponseStream(envelope)
        for event in stream.start():
            yield event
    if not stream.ended:
        # Whatever stopped it, the client is told: Codex retries a stream without an end.
        for event in stream.failed({"message": "The stream stopped before its end."}):
            yield event


class StreamRefused(GatewayError):
    """A streamed request refused for money (402) before anything was held: answered as
    a stream that fails at once, `response.failed` with `insufficient_quota`, the code
    Codex CLI stops on (an HTTP 402 it retries five times, then shows)."""

    def __init__(self, exc: GatewayError, envelope: Envelope) -> None:
        super().__init__(
            exc.status, exc.message, code=exc.code, param=exc.param, headers=exc.headers
        )
        self.envelope = envelope


def responses_error(exc: GatewayError, headers: dict[str, str]) -> HttpResponse:
    """The Responses door's errors: OpenAI's error object, but a refused stream fails as
    a stream (`StreamRefused`)."""
    if not isinstance(exc, StreamRefused):
        return openai_error(exc, headers)
    stream = ResponseStream(exc.envelope)
    events = [*stream.start(), *stream.failed(exc.as_dict()["error"])]  # type: ignore[arg-type]
    response = HttpResponse(b"".join(events), content_type="text/event-stream")
    for name, value in {**headers, **exc.headers, "Cache-Control": "no-cache"}.items():
        response[name] = value
    return response


@api_view(("POST",), render_error=responses_error)
@idempotent
async def create_response(request: HttpRequest) -> HttpResponseBase:
    """POST /v1/responses: the Responses API, streamed or not, billed once."""
    body = read_json(request)
    chat = chat_body(body)
    try:
        call = await open_request_call(
            request, chat, source=UsageRecord.Source.RESPONSES, native=native_request(body)
        )
    except GatewayError as exc:
        if exc.status == 402 and chat["stream"]:
            request_id: str = request.request_id  # type: ignore[attr-defined]
            envelope = Envelope(f"resp_{request_id[4:]}", str(chat["model"]), body)
            raise StreamRefused(exc, envelope) from None
        raise door_error(exc) from None
    envelope = Envelope(
        response_id=f"resp_{call.request_id[4:]}", model=call.model.id, request=body
    )
    try:
        if not call.stream:
            completion = await call.answer()
            return json_response(
                response_from(envelope, completion),
                headers={**call.headers, "X-Request-Cost-Micro-Usd": str(call.charge)},
            )
        await call.open_stream()
    except GatewayError as exc:
        exc.headers = {**call.headers, **exc.headers}
        raise door_error(exc) from None
    response = StreamingHttpResponse(relay(call, envelope), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    for name, value in call.headers.items():
        response[name] = value
    return response


@api_view(("GET", "POST", "DELETE"))
async def stored_response(request: HttpRequest, rest: str) -> HttpResponseBase:
    """/v1/responses/<id> and what hangs from it (input_items, cancel): nothing is stored,
    so there is nothing to read, cancel or delete; a 404 that says so."""
    raise GatewayError(
        404,
        f"{request.method} {request.path} is not served: Switchboard does not store "
        "responses, so none can be read, cancelled or deleted later. Send the whole "
        "conversation in 'input' of POST /v1/responses, with 'store': false.",
        code="response_not_found",
    )
