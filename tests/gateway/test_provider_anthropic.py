"""The Anthropic adapter against the fake Messages API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from gateway.providers.anthropic import (
    DEFAULT_MAX_TOKENS,
    AnthropicAdapter,
    messages_request,
)
from gateway.providers.base import ProviderError
from tests.fakes.adapters import (
    collect,
    finish_reasons,
    provider_for,
    streamed_text,
    streamed_tool_calls,
)
from tests.fakes.upstream import Cut, ErrorEvent, Fail, FakeUpstream, Ok, Stall

MODEL = "claude-test"
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": WEATHER_SCHEMA,
    },
}


def chat(**extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "Hello there"}], **extra}


@pytest.fixture
async def adapter(fake_upstream: FakeUpstream) -> AsyncIterator[AnthropicAdapter]:
    async with httpx.AsyncClient() as client:
        yield AnthropicAdapter(provider_for(fake_upstream, "anthropic"), client)


def test_system_and_developer_messages_become_the_system_prompt() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Be kind."}]},
            {"role": "user", "content": "Hi"},
        ]
    }

    payload = messages_request(body, MODEL)

    assert payload["system"] == "Be brief.\n\nBe kind."
    assert payload["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]


def test_tool_calls_and_results_become_tool_use_and_tool_result_blocks() -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    body = {
        "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "user", "content": "Thanks"},
        ]
    }

    payload = messages_request(body, MODEL)

    assert payload["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "call_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                }
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
                {"type": "text", "text": "Thanks"},
            ],
        },
    ]


def test_image_parts_become_base64_or_url_image_blocks() -> None:
    parts = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]

    payload = messages_request({"messages": [{"role": "user", "content": parts}]}, MODEL)

    assert payload["messages"][0]["content"][1:] == [
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"type": "tool", "name": "get_weather"},
        ),
    ],
)
def test_tool_choice_is_mapped(tool_choice: Any, expected: dict[str, Any]) -> None:
    payload = messages_request(chat(tools=[WEATHER_TOOL], tool_choice=tool_choice), MODEL)

    assert payload["tool_choice"] == expected
    assert payload["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": WEATHER_SCHEMA,
        }
    ]


def test_sampling_stop_and_max_tokens_are_mapped() -> None:
    payload = messages_request(
        chat(temperature=1.5, top_p=0.9, stop="END", max_completion_tokens=50), MODEL
    )

    assert payload["temperature"] == 1.0
    assert payload["top_p"] == 0.9
    assert payload["stop_sequences"] == ["END"]
    assert payload["max_tokens"] == 50
    assert messages_request(chat(max_tokens=70), MODEL)["max_tokens"] == 70
    assert messages_request(chat(), MODEL)["max_tokens"] == DEFAULT_MAX_TOKENS


def test_json_response_formats_become_a_system_instruction() -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    response_format = {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}

    payload = messages_request(chat(response_format=response_format), MODEL)

    assert "JSON schema" in payload["system"]
    assert orjson.dumps(schema).decode() in payload["system"]


async def test_it_answers_text_with_the_required_headers(
    fake_upstream: FakeUpstream, adapter: AnthropicAdapter
) -> None:
    fake_upstream.script(MODEL, Ok(text="Hi there, friend."))

    result = await adapter.complete(chat(), MODEL)

    assert result["object"] == "chat.completion"
    assert result["choices"][0]["message"] == {"role": "assistant", "content": "Hi there, friend."}
    assert result["choices"][0]["finish_reason"] == "stop"
    [request] = fake_upstream.requests
    assert request.path == "/v1/messages"
    assert request.headers["x-api-key"] == "k"
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.json["model"] == MODEL


async def test_usage_counts_cache_reads_and_writes_once(
    fake_upstream: FakeUpstream, adapter: AnthropicAdapter
) -> None:
    fake_upstream.script(
        MODEL,
        Ok(prompt_tokens=100, cached_tokens=60, cache_creation_tokens=10, completion_tokens=7),
    )

    result = await adapter.complete(chat(), MODEL)

    assert result["usage"] == {
        "prompt_tokens": 100,
        "completion_tokens": 7,
        "total_tokens": 107,
        "prompt_tokens_details": {"cached_tokens": 60, "cache_write_tokens": 10},
    }


async def test_it_answers_tool_calls(
    fake_upstream: FakeUpstream, adapter: AnthropicAdapter
) -> None:
    fake_upstream.script(MODEL, Ok(tool_calls=[("get_weather", '{"city": "Paris"}')]))

    result = await adapter.complete(chat(tools=[WEATHER_TOOL]), MODEL)

    choice = result["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["id"] == "toolu_fake_0"
    assert call["function"]["name"] == "get_weather"
    assert orjson.loads(call["function"]["arguments"]) == {"city": "Paris"}


@pytest.mark.parametrize(
    ("finish", "expected"),
    [("length", "length"), ("stop_sequence", "stop"), ("content_filter", "content_filter")],
)
async def test_stop_reasons_become_finish_reasons(
    fake_upstream: FakeUpstream, adapter: AnthropicAdapter, finish: str, expected: str
) -> None:
    fake_upstream.script(MODEL, Ok(finish_reason=finish), Ok(finish_reason=finish))

    result = await adapter.complete(chat(), MODEL)
    chunks = await collect(adapter.stream(chat(), MODEL))

    assert result["choices"][0]["finish_reason"] == expected
    assert finish_reasons(chunks) == [expected]


async def test_it_streams_text_then_usage(
    fake_upstream: FakeUpstream, adapter: AnthropicAdapter
) -> None:
    fake_upstream.script(MODEL, Ok(text="one two three", prompt_tokens=50, cached_tokens=20))

    chunks = await collect(adapter.stream(chat(), MODEL))

    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
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
    assert fake_upstream.requests[0].json["stream"] is True


async def test_it_streams_tool_calls_as_openai_deltas(
    fake_upstream: FakeUpstream, adapter: AnthropicAdapter
) -> None:
    fake_upstream.script(
        MODEL,
        Ok(text="Checking.", tool_calls=[("get_weather", '{"city": "Paris"}'), ("f", "{}")]),
    )

    chunks = await collect(adapter.stream(chat(tools=[WEATHER_TOOL]), MODEL))

    headers = [
        d["tool_calls"][0]
        for c in chunks
        if c["choices"]
        and "tool_calls" in (d := c["choices"][0]["delta"])
        and "id" in d["tool_calls"][0]
    ]
    assert headers[0] == {
        "index": 0,
        "id": "toolu_fake_0",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert streamed_tool_calls(chunks) == [
        {"id": "toolu_fake_0", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"id": "toolu_fake_1", "name": "f", "arguments": "{}"},
    ]
    assert streamed_text(chunks) == "Checking."
    assert finish_reasons(chunks) == ["tool_calls"]


async def test_a_stream_without_usage_ends_without_a_usage_chunk(
    fake_upstream: FakeUpstream, adapter: AnthropicAdapter
) -> None:
    fake_upstream.script(MODEL, Ok(usage=False))

    chunks = await collect(adapter.stream(chat(), MODEL))

    assert all(c["choices"] for c in chunks)
    assert finish_reasons(chunks) == ["stop"]


@pytest.mark.parametrize("status", [500, 529, 429])
async def test_server_errors_and_rate_limits_are_retryable_before_any_chunk(
    fake_upstream: FakeUpstream, adapter: AnthropicAdapter, status: int
) -> None:
    fake_upstream.script(MODEL, Fail(status, retry_after=3), Fail(status, retry_after=3))

    with pytest.raises(ProviderError) as non_stream:
        await adapter.complete(chat(), MODEL)
    stream = adapter.stream(chat(), MODEL)
    with pytest.raises(ProviderError) as streamed:
        await anext(stream)

    for error in (non_stream.value, streamed.value):
        assert error.retryable
        assert error.retry_after == 3


async def test_a_bad_request_is_not_retryable_and_keeps_the_upstream_message(
    fake_upstream: FakeUpstream, adapter: AnthropicAdapter
) -> None:
    fake_upstream.script(
        MODEL, Fail(400, message="messages: text content blocks must be non-empty")
    )

    with pytest.raises(ProviderError) as caught:
        await adapter.complete(chat(), MODEL)

    assert not caught.value.retryable
    assert caught.value.status == 400
    assert "text content blocks must be non-empty" in caught.value.message


async def test_a_cut_stream_raises(fake_upstream: FakeUpstream, adapter: AnthropicAdapter) -> None:
    fake_upstream.script(MODEL, Cut(after_chunks=4))
    received: list[dict[str, Any]] = []

    with pytest.raises(ProviderError) as caught:
        async for chunk in adapter.stream(chat(), MODEL):
            received.append(chunk)

    assert caught.value.retryable
    assert received
    assert not finish_reasons(received)


async def test_a_stall_times_out_as_a_retryable_error(
    fake_upstream: FakeUpstream, adapter: AnthropicAdapter
) -> None:
    fake_upstream.script(MODEL, Stall(5), Stall(5))

    with pytest.raises(ProviderError) as non_stream:
        await adapter.complete(chat(), MODEL)
    with pytest.raises(ProviderError) as streamed:
        await anext(adapter.stream(chat(), MODEL))

    assert non_stream.value.retryable
    assert streamed.value.retryable
    assert "timed out" in streamed.value.message


async def test_an_error_event_mid_stream_raises(
    fake_upstream: FakeUpstream, adapter: AnthropicAdapter
) -> None:
    fake_upstream.script(MODEL, ErrorEvent(after_chunks=5, message="Overloaded"))

    with pytest.raises(ProviderError) as caught:
        await collect(adapter.stream(chat(), MODEL))

    assert caught.value.retryable
    assert "Overloaded" in caught.value.message


async def test_an_error_event_before_any_content_comes_before_the_first_chunk(
    fake_upstream: FakeUpstream, adapter: AnthropicAdapter
) -> None:
    fake_upstream.script(MODEL, ErrorEvent(after_chunks=2, message="Overloaded"))

    with pytest.raises(ProviderError) as caught:
        await anext(adapter.stream(chat(), MODEL))

    assert caught.value.retryable


async def test_closing_the_stream_early_disconnects_from_the_upstream(
    fake_upstream: FakeUpstream, adapter: AnthropicAdapter
) -> None:
    fake_upstream.script(MODEL, Ok(text="word " * 40, delay=0.05))

    chunks = adapter.stream(chat(), MODEL)
    await anext(chunks)
    await chunks.aclose()  # type: ignore[attr-defined]

    assert fake_upstream.wait_for_disconnects(1)
