"""The fake upstream's wire formats: how one deterministic Answer is said in OpenAI
(chat completions and Responses), Anthropic and Gemini terms (JSON bodies, stream
events, error objects).

See tests/fakes/upstream.py for the server and how to script it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import orjson


def pieces(text: str) -> list[str]:
    """The streamed pieces ("tokens") of a text: words with their trailing spaces."""
    return re.findall(r"\S+\s*|\s+", text)


def fragments(arguments: str) -> list[str]:
    """How a tool call's arguments JSON is streamed: 8-character fragments."""
    return [arguments[i : i + 8] for i in range(0, len(arguments), 8)]


def _text_chars(value: Any) -> int:
    if isinstance(value, dict):
        return sum(
            len(v) if isinstance(v, str) and k in ("text", "content") else _text_chars(v)
            for k, v in value.items()
        )
    if isinstance(value, list):
        return sum(_text_chars(v) for v in value)
    return 0


def prompt_tokens_for(*parts: Any) -> int:
    """Prompt tokens for messages (and a system prompt): text characters // 4 + 1."""
    chars = sum(len(p) if isinstance(p, str) else _text_chars(p) for p in parts)
    return chars // 4 + 1


@dataclass
class Answer:
    model: str
    text: str
    tool_calls: list[tuple[str, str]]
    finish: str
    usage: bool
    prompt: int
    completion: int
    cached: int
    cache_creation: int
    cache_creation_1h: int
    reasoning: int
    delay: float
    serial: int
    stop_sequence: str | None = None
    reasoning_text: str = ""

    @property
    def pieces(self) -> list[str]:
        return pieces(self.text)


@dataclass
class Call:
    model: str
    stream: bool
    prompt: int
    json_mode: bool = False
    include_usage: bool = False


class Reject(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --- protocols ---------------------------------------------------------------------


class OpenAIProtocol:
    name = "openai"

    def parse(self, path: str, query: str, headers: dict[str, str], body: Any) -> Call:
        auth = headers.get("authorization")
        if auth is not None and not auth.removeprefix("Bearer ").strip():
            raise Reject(401, "Incorrect API key provided")
        if not isinstance(body, dict) or not body.get("model") or "messages" not in body:
            raise Reject(400, "model and messages are required")
        fmt = (body.get("response_format") or {}).get("type")
        return Call(
            model=body["model"],
            stream=bool(body.get("stream")),
            prompt=prompt_tokens_for(body["messages"]),
            json_mode=fmt in ("json_object", "json_schema"),
            include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
        )

    def error(self, status: int, message: str) -> dict[str, Any]:
        kind = "server_error" if status >= 500 else "invalid_request_error"
        return {"error": {"message": message, "type": kind, "param": None, "code": None}}

    def error_event(self, message: str) -> bytes:
        return b"data: " + orjson.dumps(self.error(500, message)) + b"\n\n"

    def _usage(self, a: Answer) -> dict[str, Any]:
        return {
            "prompt_tokens": a.prompt,
            "completion_tokens": a.completion,
            "total_tokens": a.prompt + a.completion,
            "prompt_tokens_details": {"cached_tokens": a.cached},
            "completion_tokens_details": {"reasoning_tokens": a.reasoning},
        }

    def _call_id(self, index: int) -> str:
        return f"call_fake_{index}"

    def completion(self, a: Answer) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": a.text or None}
        if a.tool_calls:
            message["tool_calls"] = [
                {
                    "id": self._call_id(i),
                    "type": "function",
                    "function": {"name": name, "arguments": args},
                }
                for i, (name, args) in enumerate(a.tool_calls)
            ]
        result: dict[str, Any] = {
            "id": f"chatcmpl-fake-{a.serial}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": a.model,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": a.finish}
            ],
        }
        if a.stop_sequence:
            result["choices"][0]["stop_reason"] = a.stop_sequence
        if a.reasoning_text:
            message["reasoning_content"] = a.reasoning_text
        if a.usage:
            result["usage"] = self._usage(a)
        return result

    def events(self, a: Answer, call: Call) -> list[bytes]:
        base = {
            "id": f"chatcmpl-fake-{a.serial}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": a.model,
            "system_fingerprint": None,
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            result = {**base, "choices": [choice]}
            if call.include_usage:
                result["usage"] = None
            return result

        chunks = [chunk({"role": "assistant", "content": ""})]
        chunks += [chunk({"reasoning_content": piece}) for piece in pieces(a.reasoning_text)]
        chunks += [chunk({"content": piece}) for piece in a.pieces]
        for i, (name, args) in enumerate(a.tool_calls):
            function = {"name": name, "arguments": ""}
            chunks.append(
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": i,
                                "id": self._call_id(i),
                                "type": "function",
                                "function": function,
                            }
                        ]
                    }
                )
            )
            chunks += [
                chunk({"tool_calls": [{"index": i, "function": {"arguments": part}}]})
                for part in fragments(args)
            ]
        closing = chunk({}, a.finish)
        if a.stop_sequence:
            closing["choices"][0]["stop_reason"] = a.stop_sequence
        chunks.append(closing)
        if call.include_usage and a.usage:
            chunks.append({**base, "choices": [], "usage": self._usage(a)})
        return [b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks] + [b"data: [DONE]\n\n"]


class AnthropicProtocol:
    name = "anthropic"
    SIGNATURE = "c2lnbmF0dXJlLWZha2U="
    stop_reasons = {
        "stop": "end_turn",
        "length": "max_tokens",
        "tool_calls": "tool_use",
        "content_filter": "refusal",
    }
    error_types = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        529: "overloaded_error",
    }

    def parse(self, path: str, query: str, headers: dict[str, str], body: Any) -> Call:
        if not headers.get("x-api-key"):
            raise Reject(401, "x-api-key header is required")
        if not headers.get("anthropic-version"):
            raise Reject(400, "anthropic-version: header is required")
        if not isinstance(body, dict) or not body.get("model"):
            raise Reject(400, "model: Field required")
        if not isinstance(body.get("max_tokens"), int):
            raise Reject(400, "max_tokens: Field required")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise Reject(400, "messages: Field required")
        # A system turn mid-conversation is allowed, as by the Messages API today.
        if any(m.get("role") not in ("user", "assistant", "system") for m in messages):
            raise Reject(400, "messages: roles must be user, assistant or system")
        return Call(
            model=body["model"],
            stream=bool(body.get("stream")),
            prompt=prompt_tokens_for(messages, body.get("system") or ""),
        )

    def error(self, status: int, message: str) -> dict[str, Any]:
        kind = self.error_types.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}

    def _event(self, data: dict[str, Any]) -> bytes:
        return f"event: {data['type']}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"

    def error_event(self, message: str) -> bytes:
        return self._event(self.error(529, message))

    def _usage(self, a: Answer) -> dict[str, Any]:
        return {
            "input_tokens": a.prompt - a.cached - a.cache_creation,
            "cache_creation_input_tokens": a.cache_creation,
            "cache_creation": {
                "ephemeral_5m_input_tokens": a.cache_creation - a.cache_creation_1h,
                "ephemeral_1h_input_tokens": a.cache_creation_1h,
            },
            "cache_read_input_tokens": a.cached,
            "output_tokens": a.completion,
        }

    def _stop_reason(self, a: Answer) -> str:
        if a.stop_sequence:
            return "stop_sequence"
        return self.stop_reasons.get(a.finish, a.finish)

    def _message(self, a: Answer, content: list[dict[str, Any]], done: bool) -> dict[str, Any]:
        message: dict[str, Any] = {
            "id": f"msg_fake_{a.serial}",
            "type": "message",
            "role": "assistant",
            "model": a.model,
            "content": content,
            "stop_reason": self._stop_reason(a) if done else None,
            "stop_sequence": a.stop_sequence if done else None,
        }
        if a.usage:
            message["usage"] = self._usage(a) if done else {**self._usage(a), "output_tokens": 1}
        return message

    def completion(self, a: Answer) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if a.reasoning_text:
            content.append(
                {"type": "thinking", "thinking": a.reasoning_text, "signature": self.SIGNATURE}
            )
        content += [{"type": "text", "text": a.text}] if a.text else []
        content += [
            {"type": "tool_use", "id": f"toolu_fake_{i}", "name": name, "input": orjson.loads(args)}
            for i, (name, args) in enumerate(a.tool_calls)
        ]
        return self._message(a, content, done=True)

    def events(self, a: Answer, call: Call) -> list[bytes]:
        events: list[dict[str, Any]] = [
            {"type": "message_start", "message": self._message(a, [], done=False)},
            {"type": "ping"},
        ]
        index = 0
        if a.reasoning_text:
            block = {"type": "thinking", "thinking": "", "signature": ""}
            events.append({"type": "content_block_start", "index": 0, "content_block": block})
            events += [
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "thinking_delta", "thinking": p},
                }
                for p in pieces(a.reasoning_text)
            ]
            signature = {"type": "signature_delta", "signature": self.SIGNATURE}
            events.append({"type": "content_block_delta", "index": 0, "delta": signature})
            events.append({"type": "content_block_stop", "index": 0})
            index = 1
        if a.text:
            events.append(
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                }
            )
            events += [
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "text_delta", "text": p},
                }
                for p in a.pieces
            ]
            events.append({"type": "content_block_stop", "index": index})
            index += 1
        for i, (name, args) in enumerate(a.tool_calls, start=index):
            block = {"type": "tool_use", "id": f"toolu_fake_{i - index}", "name": name, "input": {}}
            events.append({"type": "content_block_start", "index": i, "content_block": block})
            events += [
                {
                    "type": "content_block_delta",
                    "index": i,
                    "delta": {"type": "input_json_delta", "partial_json": part},
                }
                for part in fragments(args)
            ]
            events.append({"type": "content_block_stop", "index": i})
        delta: dict[str, Any] = {
            "type": "message_delta",
            "delta": {"stop_reason": self._stop_reason(a), "stop_sequence": a.stop_sequence},
        }
        if a.usage:
            delta["usage"] = {"output_tokens": a.completion}
        events += [delta, {"type": "message_stop"}]
        return [self._event(e) for e in events]


class GeminiProtocol:
    name = "gemini"
    finish_reasons = {
        "stop": "STOP",
        "length": "MAX_TOKENS",
        "tool_calls": "STOP",
        "content_filter": "SAFETY",
    }
    statuses = {
        400: "INVALID_ARGUMENT",
        401: "UNAUTHENTICATED",
        403: "PERMISSION_DENIED",
        404: "NOT_FOUND",
        429: "RESOURCE_EXHAUSTED",
        500: "INTERNAL",
        503: "UNAVAILABLE",
        504: "DEADLINE_EXCEEDED",
    }
    path = re.compile(
        r"^/v1beta/models/(?P<model>[^:]+):(?P<method>generateContent|streamGenerateContent)$"
    )

    def parse(self, path: str, query: str, headers: dict[str, str], body: Any) -> Call:
        match = self.path.match(path)
        assert match is not None
        if not headers.get("x-goog-api-key"):
            raise Reject(403, "Method doesn't allow unregistered callers. Please use an API key.")
        contents = body.get("contents") if isinstance(body, dict) else None
        if not isinstance(contents, list) or not contents:
            raise Reject(400, "* GenerateContentRequest.contents: contents is not specified")
        if any(c.get("role", "user") not in ("user", "model") for c in contents):
            raise Reject(400, "Please use a valid role: user, model.")
        config = body.get("generationConfig") or {}
        return Call(
            model=match["model"],
            stream=match["method"] == "streamGenerateContent",
            prompt=prompt_tokens_for(contents, body.get("systemInstruction") or {}),
            json_mode=config.get("responseMimeType") == "application/json",
        )

    def error(self, status: int, message: str) -> dict[str, Any]:
        return {
            "error": {
                "code": status,
                "message": message,
                "status": self.statuses.get(status, "UNKNOWN"),
            }
        }

    def error_event(self, message: str) -> bytes:
        return b"data: " + orjson.dumps(self.error(500, message)) + b"\r\n\r\n"

    def _usage(self, a: Answer) -> dict[str, Any]:
        usage = {
            "promptTokenCount": a.prompt,
            "candidatesTokenCount": a.completion - a.reasoning,
            "totalTokenCount": a.prompt + a.completion,
        }
        if a.cached:
            usage["cachedContentTokenCount"] = a.cached
        if a.reasoning:
            usage["thoughtsTokenCount"] = a.reasoning
        return usage

    def _response(self, a: Answer, parts: list[dict[str, Any]], done: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if done:
            candidate["finishReason"] = self.finish_reasons.get(a.finish, a.finish)
        response: dict[str, Any] = {"candidates": [candidate]}
        if a.usage:
            partial = {"promptTokenCount": a.prompt, "totalTokenCount": a.prompt}
            response["usageMetadata"] = self._usage(a) if done else partial
        response |= {"modelVersion": a.model, "responseId": f"fake-{a.serial}"}
        return response

    def _parts(self, a: Answer) -> list[dict[str, Any]]:
        return [
            {"functionCall": {"name": name, "args": orjson.loads(args)}}
            for name, args in a.tool_calls
        ]

    def completion(self, a: Answer) -> dict[str, Any]:
        parts = ([{"text": a.text}] if a.text else []) + self._parts(a)
        return self._response(a, parts, done=True)

    def events(self, a: Answer, call: Call) -> list[bytes]:
        steps = [[{"text": p}] for p in a.pieces] + [[part] for part in self._parts(a)]
        steps = steps or [[{"text": ""}]]
        responses = [
            self._response(a, parts, done=i == len(steps) - 1) for i, parts in enumerate(steps)
        ]
        return [b"data: " + orjson.dumps(r) + b"\r\n\r\n" for r in responses]


class ResponsesProtocol:
    """OpenAI's Responses API (`POST /v1/responses`), stateless: `store: true` and
    `previous_response_id` are refused, as a gateway must never rely on them."""

    name = "responses"

    def parse(self, path: str, query: str, headers: dict[str, str], body: Any) -> Call:
        auth = headers.get("authorization")
        if auth is not None and not auth.removeprefix("Bearer ").strip():
            raise Reject(401, "Incorrect API key provided")
        if not isinstance(body, dict) or not body.get("model") or "input" not in body:
            raise Reject(400, "model and input are required")
        if body.get("store") is not False or body.get("previous_response_id"):
            raise Reject(400, "this fake keeps nothing: send store: false")
        fmt = ((body.get("text") or {}).get("format") or {}).get("type")
        return Call(
            model=body["model"],
            stream=bool(body.get("stream")),
            prompt=prompt_tokens_for(body["input"], body.get("instructions") or ""),
            json_mode=fmt == "json_schema",
        )

    def error(self, status: int, message: str) -> dict[str, Any]:
        return OpenAIProtocol().error(status, message)

    def _event(self, data: dict[str, Any]) -> bytes:
        return f"event: {data['type']}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"

    def error_event(self, message: str) -> bytes:
        error = {"code": "server_error", "message": message}
        response = {"id": "resp_fake_failed", "object": "response", "status": "failed"}
        failed = {"type": "response.failed", "response": {**response, "error": error}}
        return self._event({**failed, "sequence_number": 999})

    def _usage(self, a: Answer) -> dict[str, Any]:
        return {
            "input_tokens": a.prompt,
            "input_tokens_details": {"cached_tokens": a.cached},
            "output_tokens": a.completion,
            "output_tokens_details": {"reasoning_tokens": a.reasoning},
            "total_tokens": a.prompt + a.completion,
        }

    def _items(self, a: Answer) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        if a.reasoning_text:
            summary = [{"type": "summary_text", "text": a.reasoning_text}]
            items.append(
                {
                    "id": f"rs_fake_{a.serial}",
                    "type": "reasoning",
                    "summary": summary,
                    "encrypted_content": "ZW5jcnlwdGVkLWZha2U=",
                }
            )
        if a.text:
            part = {"type": "output_text", "text": a.text, "annotations": [], "logprobs": []}
            items.append(
                {
                    "id": f"msg_fake_{a.serial}",
                    "type": "message",
                    "status": "completed",
                    "role": "assistant",
                    "content": [part],
                }
            )
        items += [
            {
                "id": f"fc_fake_{i}",
                "type": "function_call",
                "status": "completed",
                "call_id": f"call_fake_{i}",
                "name": name,
                "arguments": args,
            }
            for i, (name, args) in enumerate(a.tool_calls)
        ]
        return items

    def _response(self, a: Answer, output: list[dict[str, Any]], status: str) -> dict[str, Any]:
        incomplete = status == "incomplete"
        return {
            "id": f"resp_fake_{a.serial}",
            "object": "response",
            "created_at": int(time.time()),
            "status": status,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "model": a.model,
            "output": output,
            "store": False,
            "usage": self._usage(a) if a.usage and status != "in_progress" else None,
        }

    def _final_status(self, a: Answer) -> str:
        return "incomplete" if a.finish == "length" else "completed"

    def completion(self, a: Answer) -> dict[str, Any]:
        return self._response(a, self._items(a), self._final_status(a))

    def events(self, a: Answer, call: Call) -> list[bytes]:
        events: list[dict[str, Any]] = []
        started = self._response(a, [], "in_progress")
        events += [
            {"type": "response.created", "response": started},
            {"type": "response.in_progress", "response": started},
        ]
        for index, item in enumerate(self._items(a)):
            where = {"item_id": item["id"], "output_index": index}
            opened = {**item, "status": "in_progress"}
            if item["type"] == "message":
                opened["content"] = []
            elif item["type"] == "function_call":
                opened["arguments"] = ""
            events.append(
                {"type": "response.output_item.added", "output_index": index, "item": opened}
            )
            if item["type"] == "reasoning":
                events += [
                    {
                        "type": "response.reasoning_summary_text.delta",
                        **where,
                        "summary_index": 0,
                        "delta": piece,
                    }
                    for piece in pieces(a.reasoning_text)
                ]
            elif item["type"] == "message":
                empty = {"type": "output_text", "text": "", "annotations": []}
                events.append(
                    {
                        "type": "response.content_part.added",
                        **where,
                        "content_index": 0,
                        "part": empty,
                    }
                )
                events += [
                    {
                        "type": "response.output_text.delta",
                        **where,
                        "content_index": 0,
                        "delta": piece,
                        "logprobs": [],
                    }
                    for piece in a.pieces
                ]
                events += [
                    {
                        "type": "response.output_text.done",
                        **where,
                        "content_index": 0,
                        "text": a.text,
                        "logprobs": [],
                    },
                    {
                        "type": "response.content_part.done",
                        **where,
                        "content_index": 0,
                        "part": item["content"][0],
                    },
                ]
            else:
                events += [
                    {"type": "response.function_call_arguments.delta", **where, "delta": part}
                    for part in fragments(item["arguments"])
                ]
                events.append(
                    {
                        "type": "response.function_call_arguments.done",
                        **where,
                        "arguments": item["arguments"],
                    }
                )
            events.append(
                {"type": "response.output_item.done", "output_index": index, "item": item}
            )
        final = self._final_status(a)
        events.append({"type": f"response.{final}", "response": self.completion(a)})
        return [self._event({**e, "sequence_number": i}) for i, e in enumerate(events)]


Protocol = OpenAIProtocol | AnthropicProtocol | GeminiProtocol | ResponsesProtocol
PROTOCOLS: dict[str, Protocol] = {
    "openai": OpenAIProtocol(),
    "anthropic": AnthropicProtocol(),
    "gemini": GeminiProtocol(),
    "responses": ResponsesProtocol(),
}


def protocol_for(method: str, path: str) -> Protocol | None:
    if method != "POST":
        return None
    if path == "/v1/chat/completions":
        return PROTOCOLS["openai"]
    if path == "/v1/messages":
        return PROTOCOLS["anthropic"]
    if path == "/v1/responses":
        return PROTOCOLS["responses"]
    if GeminiProtocol.path.match(path):
        return PROTOCOLS["gemini"]
    return None
