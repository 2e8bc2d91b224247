"""The OpenAI-compatible adapter against the fake chat-completions API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from gateway.providers.base import ProviderError
from gateway.providers.openai import OpenAIAdapter
from tests.fakes.adapters import (
    collect,
    finish_reasons,
    provider_for,
    streamed_text,
    streamed_tool_calls,
)
from tests.fakes.upstream import Cut, ErrorEvent, Fail, FakeUpstream, Ok, Stall

MODEL = "gpt-test"


def chat(**extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "Hello there"}], **extra}


@pytest.fixture
async def adapter(fake_upstream: FakeUpstream) -> AsyncIterator[OpenAIAdapter]:
    async with httpx.AsyncClient() as client:
        yield OpenAIAdapter(provider_for(fake_upstream, "openai"), client)


async def test_it_answers_text_and_sends_the_key_and_upstream_model(
    fake_upstream: FakeUpstream, adapter: OpenAIAdapter
) -> None:
    fake_upstream.script(MODEL, Ok(text="Hi there, friend.", prompt_tokens=12, cached_tokens=4))

    result = await adapter.complete(chat(temperature=0.2), MODEL)

    assert result["choices"][0]["message"]["content"] == "Hi there, friend."
    assert result["choices"][0]["finish_reason"] == "stop"
    assert result["usage"]["prompt_tokens"] == 12
    assert result["usage"]["completion_tokens"] == 3
    assert result["usage"]["prompt_tokens_details"]["cached_tokens"] == 4
    [request] = fake_upstream.requests
    assert request.headers["authorization"] == "Bearer k"
    assert request.json["model"] == MODEL
    assert request.json["stream"] is False
    assert request.json["temperature"] == 0.2


async def test_it_answers_tool_calls(fake_upstream: FakeUpstream, adapter: OpenAIAdapter) -> None:
    fake_upstream.script(MODEL, Ok(tool_calls=[("get_weather", '{"city": "Paris"}')]))

    result = await adapter.complete(chat(), MODEL)

    choice = result["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
    }


async def test_it_streams_text_and_always_asks_for_usage(
    fake_upstream: FakeUpstream, adapter: OpenAIAdapter
) -> None:
    fake_upstream.script(MODEL, Ok(text="one two three", prompt_tokens=20))

    chunks = await collect(adapter.stream(chat(), MODEL))

    assert streamed_text(chunks) == "one two three"
    assert finish_reasons(chunks) == ["stop"]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == 20
    assert chunks[-1]["usage"]["completion_tokens"] == 3
    assert fake_upstream.requests[0].json["stream_options"] == {"include_usage": True}


async def test_it_streams_tool_call_deltas(
    fake_upstream: FakeUpstream, adapter: OpenAIAdapter
) -> None:
    fake_upstream.script(MODEL, Ok(tool_calls=[("get_weather", '{"city": "Paris"}')]))

    chunks = await collect(adapter.stream(chat(), MODEL))

    assert streamed_tool_calls(chunks) == [
        {"id": "call_fake_0", "name": "get_weather", "arguments": '{"city": "Paris"}'}
    ]
    assert finish_reasons(chunks) == ["tool_calls"]


async def test_json_response_formats_are_passed_through(
    fake_upstream: FakeUpstream, adapter: OpenAIAdapter
) -> None:
    result = await adapter.complete(chat(response_format={"type": "json_object"}), MODEL)

    assert "answer" in orjson.loads(result["choices"][0]["message"]["content"])


@pytest.mark.parametrize("status", [500, 502, 429])
async def test_server_errors_and_rate_limits_are_retryable_before_any_chunk(
    fake_upstream: FakeUpstream, adapter: OpenAIAdapter, status: int
) -> None:
    fake_upstream.script(MODEL, Fail(status, retry_after=5), Fail(status, retry_after=5))

    with pytest.raises(ProviderError) as non_stream:
        await adapter.complete(chat(), MODEL)
    with pytest.raises(ProviderError) as streamed:
        await anext(adapter.stream(chat(), MODEL))

    for error in (non_stream.value, streamed.value):
        assert error.retryable
        assert error.retry_after == 5


async def test_a_bad_request_is_not_retryable_and_keeps_the_upstream_message(
    fake_upstream: FakeUpstream, adapter: OpenAIAdapter
) -> None:
    fake_upstream.script(MODEL, Fail(400, message="Invalid 'messages[0].role'."))

    with pytest.raises(ProviderError) as caught:
        await adapter.complete(chat(), MODEL)

    assert not caught.value.retryable
    assert caught.value.status == 400
    assert "Invalid 'messages[0].role'." in caught.value.message


async def test_a_cut_stream_raises(fake_upstream: FakeUpstream, adapter: OpenAIAdapter) -> None:
    fake_upstream.script(MODEL, Cut(after_chunks=3))
    received: list[dict[str, Any]] = []

    with pytest.raises(ProviderError) as caught:
        async for chunk in adapter.stream(chat(), MODEL):
            received.append(chunk)

    assert caught.value.retryable
    assert len(received) == 3


async def test_a_stall_times_out_as_a_retryable_error(
    fake_upstream: FakeUpstream, adapter: OpenAIAdapter
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
    fake_upstream: FakeUpstream, adapter: OpenAIAdapter
) -> None:
    fake_upstream.script(MODEL, ErrorEvent(after_chunks=2, message="overloaded"))

    with pytest.raises(ProviderError) as caught:
        await collect(adapter.stream(chat(), MODEL))

    assert "overloaded" in caught.value.message


async def test_closing_the_stream_early_disconnects_from_the_upstream(
    fake_upstream: FakeUpstream, adapter: OpenAIAdapter
) -> None:
    fake_upstream.script(MODEL, Ok(text="word " * 40, delay=0.05))

    chunks = adapter.stream(chat(), MODEL)
    await anext(chunks)
    await chunks.aclose()  # type: ignore[attr-defined]

    assert fake_upstream.wait_for_disconnects(1)
