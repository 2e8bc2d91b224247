"""The Gemini adapter against the fake generateContent API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from gateway.providers.base import ProviderError
from gateway.providers.gemini import GeminiAdapter, gemini_schema, generate_request
from tests.fakes.adapters import (
    collect,
    finish_reasons,
    provider_for,
    streamed_text,
    streamed_tool_calls,
)
from tests.fakes.upstream import Cut, ErrorEvent, Fail, FakeUpstream, Ok, Stall

MODEL = "gemini-test"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


def chat(**extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "Hello there"}], **extra}


@pytest.fixture
async def adapter(fake_upstream: FakeUpstream) -> AsyncIterator[GeminiAdapter]:
    async with httpx.AsyncClient() as client:
        yield GeminiAdapter(provider_for(fake_upstream, "gemini"), client)


def test_messages_become_contents_with_a_system_instruction() -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    body = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": "Let me check.", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": '{"sky": "clear"}'},
            {"role": "tool", "tool_call_id": "call_1", "content": "plain text"},
            {"role": "user", "content": "Thanks"},
        ]
    }

    payload = generate_request(body)

    assert payload["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert payload["contents"] == [
        {"role": "user", "parts": [{"text": "Weather?"}]},
        {
            "role": "model",
            "parts": [
                {"text": "Let me check."},
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"sky": "clear"}}},
                {"functionResponse": {"name": "get_weather", "response": {"result": "plain text"}}},
                {"text": "Thanks"},
            ],
        },
    ]


def test_image_parts_become_inline_or_file_data() -> None:
    parts = [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    ]

    payload = generate_request({"messages": [{"role": "user", "content": parts}]})

    assert payload["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/cat.png"}},
    ]


def test_generation_config_and_tools_are_mapped() -> None:
    body = chat(
        max_tokens=64,
        temperature=0.5,
        top_p=0.8,
        stop=["END"],
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )

    payload = generate_request(body)

    assert payload["generationConfig"] == {
        "maxOutputTokens": 64,
        "temperature": 0.5,
        "topP": 0.8,
        "stopSequences": ["END"],
    }
    assert payload["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    },
                }
            ]
        }
    ]
    assert payload["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }


def test_json_schema_response_formats_set_a_mime_type_and_a_safe_schema() -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": ["string", "null"]}},
        "additionalProperties": False,
    }
    response_format = {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}

    config = generate_request(chat(response_format=response_format))["generationConfig"]

    assert config["responseMimeType"] == "application/json"
    assert config["responseSchema"] == {
        "type": "object",
        "properties": {"answer": {"type": "string", "nullable": True}},
    }


def test_schemas_with_references_are_not_translated() -> None:
    assert gemini_schema({"$ref": "#/$defs/x", "$defs": {"x": {"type": "string"}}}) is None


async def test_it_answers_text_with_the_key_header(
    fake_upstream: FakeUpstream, adapter: GeminiAdapter
) -> None:
    fake_upstream.script(MODEL, Ok(text="Hi there, friend."))

    result = await adapter.complete(chat(), MODEL)

    assert result["object"] == "chat.completion"
    assert result["choices"][0]["message"] == {"role": "assistant", "content": "Hi there, friend."}
    assert result["choices"][0]["finish_reason"] == "stop"
    [request] = fake_upstream.requests
    assert request.path == f"/v1beta/models/{MODEL}:generateContent"
    assert request.headers["x-goog-api-key"] == "k"


async def test_usage_comes_from_usage_metadata_with_thoughts_as_completion(
    fake_upstream: FakeUpstream, adapter: GeminiAdapter
) -> None:
    fake_upstream.script(
        MODEL, Ok(prompt_tokens=100, cached_tokens=40, completion_tokens=9, reasoning_tokens=4)
    )

    result = await adapter.complete(chat(), MODEL)

    assert result["usage"] == {
        "prompt_tokens": 100,
        "completion_tokens": 9,
        "total_tokens": 109,
        "prompt_tokens_details": {"cached_tokens": 40},
    }


async def test_it_answers_function_calls_as_tool_calls(
    fake_upstream: FakeUpstream, adapter: GeminiAdapter
) -> None:
    fake_upstream.script(MODEL, Ok(tool_calls=[("get_weather", '{"city": "Paris"}')]))

    result = await adapter.complete(chat(tools=[WEATHER_TOOL]), MODEL)

    choice = result["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather"
    assert orjson.loads(call["function"]["arguments"]) == {"city": "Paris"}


@pytest.mark.parametrize(
    ("finish", "expected"), [("length", "length"), ("content_filter", "content_filter")]
)
async def test_finish_reasons_are_mapped(
    fake_upstream: FakeUpstream, adapter: GeminiAdapter, finish: str, expected: str
) -> None:
    fake_upstream.script(MODEL, Ok(finish_reason=finish), Ok(finish_reason=finish))

    result = await adapter.complete(chat(), MODEL)
    chunks = await collect(adapter.stream(chat(), MODEL))

    assert result["choices"][0]["finish_reason"] == expected
    assert finish_reasons(chunks) == [expected]


async def test_it_streams_text_then_usage(
    fake_upstream: FakeUpstream, adapter: GeminiAdapter
) -> None:
    fake_upstream.script(MODEL, Ok(text="one two three", prompt_tokens=50, cached_tokens=20))

    chunks = await collect(adapter.stream(chat(), MODEL))

    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert streamed_text(chunks) == "one two three"
    assert finish_reasons(chunks) == ["stop"]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 50,
        "completion_tokens": 3,
        "total_tokens": 53,
        "prompt_tokens_details": {"cached_tokens": 20},
    }
    [request] = fake_upstream.requests
    assert request.path == f"/v1beta/models/{MODEL}:streamGenerateContent"
    assert request.query == "alt=sse"


async def test_it_streams_function_calls_as_tool_call_deltas(
    fake_upstream: FakeUpstream, adapter: GeminiAdapter
) -> None:
    fake_upstream.script(
        MODEL, Ok(tool_calls=[("get_weather", '{"city": "Paris"}'), ("f", '{"a": 1}')])
    )

    chunks = await collect(adapter.stream(chat(tools=[WEATHER_TOOL]), MODEL))

    calls = streamed_tool_calls(chunks)
    assert [(c["name"], orjson.loads(c["arguments"])) for c in calls] == [
        ("get_weather", {"city": "Paris"}),
        ("f", {"a": 1}),
    ]
    assert all(c["id"].startswith("call_") for c in calls)
    assert calls[0]["id"] != calls[1]["id"]
    assert finish_reasons(chunks) == ["tool_calls"]


async def test_a_stream_without_usage_ends_without_a_usage_chunk(
    fake_upstream: FakeUpstream, adapter: GeminiAdapter
) -> None:
    fake_upstream.script(MODEL, Ok(usage=False))

    chunks = await collect(adapter.stream(chat(), MODEL))

    assert all(c["choices"] for c in chunks)
    assert finish_reasons(chunks) == ["stop"]


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_server_errors_and_rate_limits_are_retryable_before_any_chunk(
    fake_upstream: FakeUpstream, adapter: GeminiAdapter, status: int
) -> None:
    fake_upstream.script(MODEL, Fail(status, retry_after=2), Fail(status, retry_after=2))

    with pytest.raises(ProviderError) as non_stream:
        await adapter.complete(chat(), MODEL)
    with pytest.raises(ProviderError) as streamed:
        await anext(adapter.stream(chat(), MODEL))

    for error in (non_stream.value, streamed.value):
        assert error.retryable
        assert error.retry_after == 2


async def test_a_bad_request_is_not_retryable_and_keeps_the_upstream_message(
    fake_upstream: FakeUpstream, adapter: GeminiAdapter
) -> None:
    fake_upstream.script(MODEL, Fail(400, message="Invalid JSON payload received."))

    with pytest.raises(ProviderError) as caught:
        await anext(adapter.stream(chat(), MODEL))

    assert not caught.value.retryable
    assert caught.value.status == 400
    assert "Invalid JSON payload received." in caught.value.message


async def test_a_cut_stream_raises(fake_upstream: FakeUpstream, adapter: GeminiAdapter) -> None:
    fake_upstream.script(MODEL, Cut(after_chunks=2))
    received: list[dict[str, Any]] = []

    with pytest.raises(ProviderError) as caught:
        async for chunk in adapter.stream(chat(), MODEL):
            received.append(chunk)

    assert caught.value.retryable
    assert streamed_text(received)
    assert not finish_reasons(received)


async def test_a_stall_times_out_as_a_retryable_error(
    fake_upstream: FakeUpstream, adapter: GeminiAdapter
) -> None:
    fake_upstream.script(MODEL, Stall(5), Stall(5))

    with pytest.raises(ProviderError) as non_stream:
        await adapter.complete(chat(), MODEL)
    with pytest.raises(ProviderError) as streamed:
        await anext(adapter.stream(chat(), MODEL))

    assert non_stream.value.retryable
    assert streamed.value.retryable
    assert "timed out" in streamed.value.message


async def test_an_error_in_the_stream_raises(
    fake_upstream: FakeUpstream, adapter: GeminiAdapter
) -> None:
    fake_upstream.script(MODEL, ErrorEvent(after_chunks=2, message="Internal error"))

    with pytest.raises(ProviderError) as caught:
        await collect(adapter.stream(chat(), MODEL))

    assert caught.value.retryable
    assert "Internal error" in caught.value.message


async def test_closing_the_stream_early_disconnects_from_the_upstream(
    fake_upstream: FakeUpstream, adapter: GeminiAdapter
) -> None:
    fake_upstream.script(MODEL, Ok(text="word " * 40, delay=0.05))

    chunks = adapter.stream(chat(), MODEL)
    await anext(chunks)
    await chunks.aclose()  # type: ignore[attr-defined]

    assert fake_upstream.wait_for_disconnects(1)
