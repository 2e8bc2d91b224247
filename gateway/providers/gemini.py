"""Google's Gemini API (`{base_url}/models/{model}:generateContent`, base_url like
https://generativelanguage.googleapis.com/v1beta), key in the x-goog-api-key header.

Request mapping: system and developer messages become `systemInstruction`; turns
become `contents` with roles user/model (consecutive turns of one role merged);
assistant tool calls become functionCall parts and tool results functionResponse
parts (named after the call they answer); images become inlineData (data URLs) or
fileData parts. Tools become functionDeclarations, their parameters translated to
Gemini's OpenAPI subset (`parametersJsonSchema` when a schema uses $ref). JSON modes
set responseMimeType application/json, plus responseSchema for a json_schema that
translates safely. Gemini has no tool-call ids: answers get fresh `call_…` ids.

Usage: prompt = promptTokenCount, completion = candidatesTokenCount +
thoughtsTokenCount, cached = cachedContentTokenCount.
"""

from __future__ import annotations

import mimetypes
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import orjson

from gateway.catalog import ProviderInfo
from gateway.providers import envelopes
from gateway.providers.base import (
    Adapter,
    ProviderError,
    content_text,
    masked,
    usage_dict,
)

FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}
SCHEMA_KEYS = {
    "type",
    "title",
    "description",
    "nullable",
    "enum",
    "items",
    "minItems",
    "maxItems",
    "properties",
    "required",
    "propertyOrdering",
    "anyOf",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minProperties",
    "maxProperties",
    "default",
    "example",
}
SAFE_FORMATS = {"enum", "date-time", "int32", "int64", "float", "double"}


def _invalid(message: str) -> ProviderError:
    return ProviderError(message, status=400)


def gemini_schema(schema: Any) -> dict[str, Any] | None:
    """A JSON schema in Gemini's OpenAPI subset, or None when it cannot be said safely."""
    if not isinstance(schema, dict) or {"$ref", "$defs", "definitions"} & schema.keys():
        return None
    result: dict[str, Any] = {}
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        if len(kinds) != 1:
            return None
        result["nullable"] = "null" in kind
        kind = kinds[0]
    if kind is not None:
        result["type"] = kind
    if schema.get("format") in SAFE_FORMATS:
        result["format"] = schema["format"]
    if "const" in schema:
        result["enum"] = [schema["const"]]
    for key, value in schema.items():
        if key not in SCHEMA_KEYS or key == "type":
            continue
        if key == "properties":
            properties = {name: gemini_schema(sub) for name, sub in value.items()}
            if any(sub is None for sub in properties.values()):
                return None
            result[key] = properties
        elif key == "items":
            items = gemini_schema(value)
            if items is None:
                return None
            result[key] = items
        elif key == "anyOf":
            options = [gemini_schema(sub) for sub in value]
            if any(sub is None for sub in options):
                return None
            result[key] = options
        else:
            result.setdefault(key, value)
    return result


def _image_part(url: str) -> dict[str, Any]:
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        return {"inlineData": {"mimeType": header[5:].split(";")[0], "data": data}}
    mime_type = mimetypes.guess_type(url.split("?")[0])[0] or "image/jpeg"
    return {"fileData": {"mimeType": mime_type, "fileUri": url}}


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for part in content or []:
        kind = part.get("type")
        if kind in ("text", "refusal"):
            text = part.get("text") or part.get("refusal") or ""
            if text:
                parts.append({"text": text})
        elif kind == "image_url":
            parts.append(_image_part(part["image_url"]["url"]))
        else:
            raise _invalid(f"Gemini models do not accept '{kind}' content parts here.")
    return parts


def _function_call(call: dict[str, Any]) -> dict[str, Any]:
    try:
        args = orjson.loads(call["function"].get("arguments") or "{}")
    except orjson.JSONDecodeError as exc:
        raise _invalid("A tool call's arguments are not valid JSON.") from exc
    return {"functionCall": {"name": call["function"]["name"], "args": args}}


def _function_response(message: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    text = content_text(message.get("content"))
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        parsed = text
    response = parsed if isinstance(parsed, dict) else {"result": parsed}
    name = names.get(message.get("tool_call_id", ""), "tool")
    return {"functionResponse": {"name": name, "response": response}}


def convert_messages(messages: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """OpenAI messages → (system texts, Gemini contents with merged roles)."""
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for message in messages:
        role = message["role"]
        if role in ("system", "developer"):
            system.append(content_text(message.get("content")))
            continue
        if role == "user":
            parts = _parts(message.get("content"))
        elif role == "assistant":
            role = "model"
            parts = _parts(message.get("content"))
            for call in message.get("tool_calls") or []:
                names[call["id"]] = call["function"]["name"]
                parts.append(_function_call(call))
        elif role == "tool":
            role = "user"
            parts = [_function_response(message, names)]
        else:
            raise _invalid(f"Gemini models do not accept '{role}' messages; use tools.")
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return system, contents


def _generation_config(body: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if limit:
        config["maxOutputTokens"] = limit
    for name, upstream_name in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("seed", "seed"),
    ):
        if body.get(name) is not None:
            config[upstream_name] = body[name]
    # Several Gemini models answer 400 to any penalty, so only non-zero ones are sent.
    for name, upstream_name in (
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        if body.get(name):
            config[upstream_name] = body[name]
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    response_format = body.get("response_format") or {}
    if response_format.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
    if response_format.get("type") == "json_schema":
        schema = gemini_schema(response_format.get("json_schema", {}).get("schema"))
        if schema:
            config["responseSchema"] = schema
    return config


def _declaration(function: dict[str, Any]) -> dict[str, Any]:
    declaration: dict[str, Any] = {"name": function["name"]}
    if function.get("description"):
        declaration["description"] = function["description"]
    parameters = function.get("parameters")
    if parameters and parameters.get("properties"):
        schema = gemini_schema(parameters)
        if schema is None:
            declaration["parametersJsonSchema"] = parameters
        else:
            declaration["parameters"] = schema
    return declaration


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if isinstance(choice, dict):
        names = [choice["function"]["name"]]
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": names}}
    modes = {"auto": "AUTO", "required": "ANY", "none": "NONE"}
    if choice in modes:
        return {"functionCallingConfig": {"mode": modes[choice]}}
    return None


def generate_request(body: dict[str, Any]) -> dict[str, Any]:
    """The generateContent request for an OpenAI chat-completions body."""
    system, contents = convert_messages(body["messages"])
    if not contents:
        raise _invalid("Gemini models need at least one user or assistant message.")
    payload: dict[str, Any] = {"contents": contents}
    if any(system):
        text = "\n\n".join(t for t in system if t)
        payload["systemInstruction"] = {"parts": [{"text": text}]}
    config = _generation_config(body)
    if config:
        payload["generationConfig"] = config
    if body.get("tools"):
        declarations = [_declaration(tool["function"]) for tool in body["tools"]]
        payload["tools"] = [{"functionDeclarations": declarations}]
        tool_config = _tool_config(body.get("tool_choice"))
        if tool_config:
            payload["toolConfig"] = tool_config
    return payload


def gemini_usage(metadata: dict[str, Any]) -> dict[str, Any]:
    """OpenAI usage from usageMetadata; thinking tokens are billed as completion."""
    completion = (metadata.get("candidatesTokenCount") or 0) + (
        metadata.get("thoughtsTokenCount") or 0
    )
    return usage_dict(
        metadata.get("promptTokenCount") or 0,
        completion,
        metadata.get("cachedContentTokenCount") or 0,
    )


def _call_id(function_call: dict[str, Any]) -> str:
    return function_call.get("id") or f"call_{secrets.token_hex(12)}"


def _finish(reason: str | None, has_tool_calls: bool) -> str:
    if has_tool_calls and reason in (None, "STOP"):
        return "tool_calls"
    return FINISH_REASONS.get(reason or "STOP", "stop")


def _candidate_parts(result: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    candidates = result.get("candidates") or [{}]
    candidate = candidates[0]
    parts = [p for p in (candidate.get("content") or {}).get("parts") or [] if not p.get("thought")]
    return candidate, parts


def chat_completion(result: dict[str, Any], upstream_model: str) -> dict[str, Any]:
    """A chat.completion from a generateContent answer."""
    candidate, parts = _candidate_parts(result)
    text = "".join(p.get("text", "") for p in parts)
    tool_calls = [
        envelopes.tool_call(
            _call_id(p["functionCall"]),
            p["functionCall"]["name"],
            orjson.dumps(p["functionCall"].get("args") or {}).decode(),
        )
        for p in parts
        if "functionCall" in p
    ]
    reason = candidate.get("finishReason")
    if not result.get("candidates") and (result.get("promptFeedback") or {}).get("blockReason"):
        reason = "SAFETY"
    metadata = result.get("usageMetadata")
    return envelopes.completion(
        id=result.get("responseId", ""),
        created=int(time.time()),
        model=upstream_model,
        message=envelopes.assistant_message(text, tool_calls),
        finish_reason=_finish(reason, bool(tool_calls)),
        usage=gemini_usage(metadata) if isinstance(metadata, dict) else None,
    )


class _StreamState(envelopes.ChunkStream):
    """Turns streamed GenerateContentResponse objects into chat.completion.chunk dicts."""

    def __init__(self, provider: ProviderInfo, upstream_model: str) -> None:
        super().__init__(upstream_model)
        self.provider = provider
        self.usage: dict[str, Any] | None = None
        self.reason: str | None = None
        self.finished = False
        self.tool_calls = 0

    def on_response(self, result: dict[str, Any]) -> list[dict[str, Any]]:
        if "error" in result:
            error = result["error"] if isinstance(result["error"], dict) else {}
            raise ProviderError(
                f"{self.provider.name} failed mid-stream: "
                f"{masked(str(error.get('message', result['error'])), self.provider)}",
                retryable=error.get("code", 500) in (429, 500, 503, 504),
                body=result,
            )
        self.id = result.get("responseId") or self.id
        if isinstance(result.get("usageMetadata"), dict):
            self.usage = result["usageMetadata"]
        candidate, parts = _candidate_parts(result)
        chunks = []
        for part in parts:
            if part.get("text"):
                chunks.append(self.chunk({"content": part["text"]}))
            elif "functionCall" in part:
                chunks += self._tool_call(part["functionCall"])
        if candidate.get("finishReason"):
            self.reason = candidate["finishReason"]
            self.finished = True
        elif not result.get("candidates") and (result.get("promptFeedback") or {}).get(
            "blockReason"
        ):
            self.reason, self.finished = "SAFETY", True
        return chunks

    def _tool_call(self, function_call: dict[str, Any]) -> list[dict[str, Any]]:
        index = self.tool_calls
        self.tool_calls += 1
        header = envelopes.tool_call_start(index, _call_id(function_call), function_call["name"])
        arguments = orjson.dumps(function_call.get("args") or {}).decode()
        return [
            self.chunk({"tool_calls": [header]}),
            self.chunk({"tool_calls": [envelopes.tool_call_arguments(index, arguments)]}),
        ]

    def closing(self) -> list[dict[str, Any]]:
        chunks = [self.finish_chunk(_finish(self.reason, self.tool_calls > 0))]
        if self.usage is not None:
            chunks.append(self.usage_chunk(gemini_usage(self.usage)))
        return chunks


class GeminiAdapter(Adapter):
    def headers(self) -> dict[str, str]:
        return {"content-type": "application/json", "x-goog-api-key": self.provider.api_key}

    def _url(self, upstream_model: str, method: str) -> str:
        return f"{self.provider.base_url}/models/{upstream_model}:{method}"

    async def complete(self, body: dict[str, Any], upstream_model: str) -> dict[str, Any]:
        url = self._url(upstream_model, "generateContent")
        result = await self.post_json(url, generate_request(body))
        if not isinstance(result, dict) or not (
            isinstance(result.get("candidates"), list) or result.get("promptFeedback")
        ):
            raise ProviderError(f"{self.provider.name} sent no candidates", retryable=True)
        return chat_completion(result, upstream_model)

    async def stream(
        self, body: dict[str, Any], upstream_model: str
    ) -> AsyncIterator[dict[str, Any]]:
        url = self._url(upstream_model, "streamGenerateContent")
        state = _StreamState(self.provider, upstream_model)
        events = self.stream_events(url, generate_request(body), {"alt": "sse"})
        async with aclosing(events):
            async for result in events:
                if isinstance(result, dict):
                    for chunk in state.on_response(result):
                        yield chunk
        if not state.finished:
            raise self.ended_early()
        for chunk in state.closing():
            yield chunk
