"""The fake upstream itself, driven with plain httpx: each protocol, each behaviour."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from tests.fakes.upstream import (
    Cut,
    ErrorEvent,
    Fail,
    FakeUpstream,
    Linger,
    Ok,
    Stall,
    default_text,
    pieces,
    prompt_tokens_for,
)

MESSAGES = [{"role": "user", "content": "Say hello to the fake upstream please"}]
ANTHROPIC_HEADERS = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
GEMINI_HEADERS = {"x-goog-api-key": "k"}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


async def sse(response: httpx.Response) -> list[tuple[str, Any]]:
    events: list[tuple[str, Any]] = []
    event = ""
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data = line[5:].strip()
            events.append((event, data if data == "[DONE]" else orjson.loads(data)))
            event = ""
    return events


def openai_body(model: str = "gpt-fake", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": MESSAGES, **extra}


def anthropic_body(model: str = "claude-fake", **extra: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 100, "messages": MESSAGES, **extra}


GEMINI_BODY = {"contents": [{"role": "user", "parts": [{"text": MESSAGES[0]["content"]}]}]}


async def test_openai_answers_deterministically_and_records_the_request(
    fake_upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    response = await client.post(
        f"{fake_upstream.url}/v1/chat/completions",
        json=openai_body(),
        headers={"authorization": "Bearer k"},
    )

    assert response.status_code == 200
    result = response.json()
    text = default_text("gpt-fake")
    assert result["choices"][0]["message"]["content"] == text
    assert result["choices"][0]["finish_reason"] == "stop"
    assert result["usage"]["completion_tokens"] == len(pieces(text))
    assert result["usage"]["prompt_tokens"] == prompt_tokens_for(MESSAGES)
    [recorded] = fake_upstream.requests
    assert recorded.protocol == "openai"
    assert recorded.model == "gpt-fake"
    assert recorded.headers["authorization"] == "Bearer k"
    assert recorded.json == openai_body()


async def test_openai_streams_text_then_usage_then_done(
    fake_upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    fake_upstream.script("gpt-fake", Ok(text="one two three", cached_tokens=2, prompt_tokens=9))
    body = openai_body(stream=True, stream_options={"include_usage": True})

    async with client.stream("POST", f"{fake_upstream.url}/v1/chat/completions", json=body) as r:
        events = await sse(r)

    assert events[-1] == ("", "[DONE]")
    chunks = [data for _, data in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "one two three"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == 9
    assert chunks[-1]["usage"]["completion_tokens"] == 3
    assert chunks[-1]["usage"]["prompt_tokens_details"]["cached_tokens"] == 2


async def test_openai_stream_without_include_usage_has_no_usage_chunk(
    fake_upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    body = openai_body(stream=True)

    async with client.stream("POST", f"{fake_upstream.url}/v1/chat/completions", json=body) as r:
        events = await sse(r)

    assert all("usage" not in data for _, data in events[:-1])


async def test_openai_streams_tool_calls_as_openai_does(
    fake_upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    arguments = '{"city": "Paris", "unit": "celsius"}'
    fake_upstream.script("gpt-fake", Ok(tool_calls=[("get_weather", arguments)]))

    async with client.stream(
        "POST", f"{fake_upstream.url}/v1/chat/completions", json=openai_body(stream=True)
    ) as r:
        events = await sse(r)

    deltas = [data["choices"][0]["delta"] for _, data in events[:-1]]
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert calls[0] == {
        "index": 0,
        "id": "call_fake_0",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert len(calls) > 2
    assert "".join(c["function"]["arguments"] for c in calls) == arguments
    assert events[-2][1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_openai_answers_json_for_json_response_formats(
    fake_upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    body = openai_body(response_format={"type": "json_object"})

    response = await client.post(f"{fake_upstream.url}/v1/chat/completions", json=body)

    content = response.json()["choices"][0]["message"]["content"]
    assert orjson.loads(content) == {"answer": default_text("gpt-fake")}


async def test_usage_can_be_left_out(
    fake_upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    fake_upstream.script("gpt-fake", Ok(usage=False), Ok(usage=False))
    body = openai_body(stream=True, stream_options={"include_usage": True})

    response = await client.post(f"{fake_upstream.url}/v1/chat/completions", json=openai_body())
    async with client.stream("POST", f"{fake_upstream.url}/v1/chat/completions", json=body) as r:
        events = await sse(r)

    assert "usage" not in response.json()
    assert all(data["choices"] for _, data in events[:-1])


async def test_anthropic_answers_with_text_tool_use_and_cache_usage(
    fake_upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    fake_upstream.script(
        "claude-fake",
        Ok(
            text="Let me look.",
            tool_calls=[("lookup", '{"q": "x"}')],
            prompt_tokens=100,
            cached_tokens=60,
            cache_creation_tokens=10,
        ),
    )

    response = await client.post(
        f"{fake_upstream.url}/v1/messages", json=anthropic_body(), headers=ANTHROPIC_HEADERS
    )

    result = response.json()
    assert result["content"] == [
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "toolu_fake_0", "name": "lookup", "input": {"q": "x"}},
    ]
    assert result["stop_reason"] == "tool_use"
    assert result["usage"]["input_tokens"] == 30
    assert result["usage"]["cache_read_input_tokens"] == 60
    assert result["usage"]["cache_creation_input_tokens"] == 10


async def test_anthropic_streams_its_event_sequence(
    fake_upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    fake_upstream.script("claude-fake", Ok(text="Hi there", tool_calls=[("f", '{"a": 1}')]))

    async with client.stream(
        "POST",
        f"{fake_upstream.url}/v1/messages",
        json=anthropic_body(stream=True),
        headers=ANTHROPIC_HEADERS,
    ) as r:
        events = await sse(r)

    names = [name for name, _ in events]
    assert names[:2] == ["message_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    assert all(name == data["type"] for name, data in events)
    assert events[0][1]["message"]["usage"]["input_tokens"] == prompt_tokens_for(MESSAGES)
    text = "".join(
        d["delta"]["text"] for n, d in events if d.get("delta", {}).get("type") == "text_delta"
    )
    assert text == "Hi there"
    starts = [d for n, d in events if n == "content_block_start"]
    assert starts[1] == {
        "type": "content_block_start",
        "index": 1,
        "content_block": {"type": "tool_use", "id": "toolu_fake_0", "name": "f", "input": {}},
    }
    partial = [
        d["delta"]["partial_json"]
        for n, d in events
        if d.get("delta", {}).get("type") == "input_json_delta"
    ]
    assert "".join(partial) == '{"a": 1}'
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert events[-2][1]["usage"]["output_tokens"] == 2 + 1 + 1


@pytest.mark.parametrize(
    ("headers", "status"),
    [({"anthropic-version": "2023-06-01"}, 401), ({"x-api-key": "k"}, 400)],
)
async def test_anthropic_checks_its_headers(
    fake_upstream: FakeUpstream, client: httpx.AsyncClient, headers: dict[str, str], status: int
) -> None:
    response = await client.post(
        f"{fake_upstream.url}/v1/messages", json=anthropic_body(), headers=headers
    )

    assert response.status_code == status
    assert response.json()["type"] == "error"


async def test_anthropic_rejects_a_tool_role_and_a_missing_max_tokens(
    fake_upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    url = f"{fake_upstream.url}/v1/messages"
    tool = [*MESSAGES, {"role": "tool", "content": "42"}]

    with_tool = await client.post(
        url, json=anthropic_body(messages=tool), headers=ANTHROPIC_HEADERS
    )
    no_max = await client.post(
        url, json={"model": "claude-fake", "messages": MESSAGES}, headers=ANTHROPIC_HEADERS
    )

    assert with_tool.status_code == 400
    assert no_max.status_code == 400
    assert "max_tokens" in no_max.json()["error"]["message"]


async def test_anthropic_takes_a_system_turn_inside_messages(
    fake_upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    system = [*MESSAGES, {"role": "system", "content": "be brief"}]

    response = await client.post(
        f"{fake_upstream.url}/v1/messages",
        json=anthropic_body(messages=system),
        headers=ANTHROPIC_HEADERS,
    )

    assert response.status_code == 200


async def test_gemini_answers_with_function_calls_and_usage_metadata(
    fake_upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    fake_upstream.script(
        "gemini-fake",
        Ok(text="Calling.", tool_calls=[("f", '{"a": 1}')], cached_tokens=3, reasoning_tokens=2),
    )

    response = await client.post(
        f"{fake_upstream.url}/v1beta/models/gemini-fake:generateContent",
        json=GEMINI_BODY,
        headers=GEMINI_HEADERS,
    )

    result = response.json()
    candidate = result["candidates"][0]
    assert candidate["content"] == {
        "role": "model",
        "parts": [{"text": "Calling."}, {"functionCall": {"name": "f", "args": {"a": 1}}}],
    }
    assert candidate["finishReason"] == "STOP"
    usage = result["usageMetadata"]
    assert usage["promptTokenCount"] == prompt_tokens_for(GEMINI_BODY["contents"])
    assert usage["cachedContentTokenCount"] == 3
    assert usage["thoughtsTokenCount"] == 2
    assert usage["candidatesTokenCount"] == 1 + 1 + 1 - 2
    assert fake_upstream.requests[0].model == "gemini-fake"


async def test_gemini_streams_server_sent_events(
    fake_upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    fake_upstream.script("gemini-fake", Ok(text="a b c", finish_reason="length"))

    async with client.stream(
        "POST",
        f"{fake_upstream.url}/v1beta/models/gemini-fake:streamGenerateContent?alt=sse",
        json=GEMINI_BODY,
        headers=GEMINI_HEADERS,
    ) as r:
        events = await sse(r)

    parts = [d["candidates"][0]["content"]["parts"][0]["text"] for _, d in events]
    assert parts == ["a ", "b ", "c"]
    assert events[-1][1]["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert events[-1][1]["usageMetadata"]["candidatesTokenCount"] == 3
    assert fake_upstream.requests[0].query == "alt=sse"


async def test_gemini_requires_its_key_header(
    fake_upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    response = await client.post(
        f"{fake_upstream.url}/v1beta/models/gemini-fake:generateContent", json=GEMINI_BODY
    )

    assert response.status_code == 403
    assert response.json()["error"]["status"] == "PERMISSION_DENIED"


async def test_scripts_are_per_model_and_consumed_in_order(
    fake_upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    fake_upstream.script("model-a", Fail(503, retry_after=7, message="busy"), Ok(text="second"))
    url = f"{fake_upstream.url}/v1/chat/completions"

    first = await client.post(url, json=openai_body("model-a"))
    other = await client.post(url, json=openai_body("model-b"))
    second = await client.post(url, json=openai_body("model-a"))
    third = await client.post(url, json=openai_body("model-a"))

    assert first.status_code == 503
    assert first.headers["retry-after"] == "7"
    assert first.json()["error"]["message"] == "busy"
    assert other.json()["choices"][0]["message"]["content"] == default_text("model-b")
    assert second.json()["choices"][0]["message"]["content"] == "second"
    assert third.json()["choices"][0]["message"]["content"] == default_text("model-a")
    assert [r.model for r in fake_upstream.requests_for("model-a")] == ["model-a"] * 3


@pytest.mark.parametrize(
    ("path", "body", "headers", "message_of"),
    [
        ("/v1/chat/completions", openai_body("m"), {}, lambda j: j["error"]["message"]),
        ("/v1/messages", anthropic_body("m"), ANTHROPIC_HEADERS, lambda j: j["error"]["message"]),
        (
            "/v1beta/models/m:generateContent",
            GEMINI_BODY,
            GEMINI_HEADERS,
            lambda j: j["error"]["message"],
        ),
    ],
)
async def test_fail_answers_each_protocols_error_object(
    fake_upstream: FakeUpstream,
    client: httpx.AsyncClient,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str],
    message_of: Any,
) -> None:
    fake_upstream.script("m", Fail(400, message="bad thing"))

    response = await client.post(f"{fake_upstream.url}{path}", json=body, headers=headers)

    assert response.status_code == 400
    assert message_of(response.json()) == "bad thing"


async def test_cut_drops_the_connection_mid_stream(
    fake_upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    fake_upstream.script("gpt-fake", Cut(after_chunks=2))
    received: list[str] = []

    with pytest.raises(httpx.RemoteProtocolError):
        async with client.stream(
            "POST", f"{fake_upstream.url}/v1/chat/completions", json=openai_body(stream=True)
        ) as r:
            async for line in r.aiter_lines():
                if line:
                    received.append(line)

    assert len(received) == 2
    assert "[DONE]" not in "".join(received)


async def test_cut_drops_a_non_streamed_answer_half_way(
    fake_upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    fake_upstream.script("claude-fake", Cut())

    with pytest.raises(httpx.RemoteProtocolError):
        await client.post(
            f"{fake_upstream.url}/v1/messages", json=anthropic_body(), headers=ANTHROPIC_HEADERS
        )


async def test_error_event_ends_the_stream_with_the_protocols_error(
    fake_upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    fake_upstream.script("claude-fake", ErrorEvent(after_chunks=3, message="Overloaded"))

    async with client.stream(
        "POST",
        f"{fake_upstream.url}/v1/messages",
        json=anthropic_body(stream=True),
        headers=ANTHROPIC_HEADERS,
    ) as r:
        events = await sse(r)

    assert len(events) == 4
    assert events[-1] == (
        "error",
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    )


async def test_stall_sends_nothing_until_the_client_times_out(
    fake_upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    fake_upstream.script("gpt-fake", Stall(5))

    with pytest.raises(httpx.ReadTimeout):
        await client.post(
            f"{fake_upstream.url}/v1/chat/completions", json=openai_body(), timeout=0.2
        )

    assert fake_upstream.wait_for_disconnects(1)


async def lines_until_read_timeout(
    fake_upstream: FakeUpstream, client: httpx.AsyncClient
) -> list[str]:
    """The lines of a streamed chat completion received before a read waits 0.3 s."""
    received: list[str] = []
    with pytest.raises(httpx.ReadTimeout):
        async with client.stream(
            "POST",
            f"{fake_upstream.url}/v1/chat/completions",
            json=openai_body(stream=True),
            timeout=0.3,
        ) as r:
            async for line in r.aiter_lines():
                if line:
                    received.append(line)
    return received


async def test_stall_after_headers_sends_some_events_then_nothing(
    fake_upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    fake_upstream.script("gpt-fake", Stall(5, after_chunks=1))
    received = await lines_until_read_timeout(fake_upstream, client)

    assert len(received) == 1


async def test_a_short_stall_then_answers_normally(
    fake_upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    fake_upstream.script("gpt-fake", Stall(0.05))

    response = await client.post(f"{fake_upstream.url}/v1/chat/completions", json=openai_body())

    assert response.json()["choices"][0]["message"]["content"] == default_text("gpt-fake")


async def test_linger_sends_the_whole_stream_then_keeps_the_body_open(
    fake_upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    fake_upstream.script("gpt-fake", Linger(5))
    received = await lines_until_read_timeout(fake_upstream, client)

    assert received[-1] == "data: [DONE]"
    chunks = [orjson.loads(line.removeprefix("data: ")) for line in received[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == default_text("gpt-fake")


async def test_it_counts_the_connections_it_accepts(
    fake_upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    for _ in range(3):
        await client.post(f"{fake_upstream.url}/v1/chat/completions", json=openai_body())
    async with httpx.AsyncClient(timeout=5) as other:
        await other.post(f"{fake_upstream.url}/v1/chat/completions", json=openai_body())

    assert fake_upstream.connections == 2
    fake_upstream.reset()
    assert fake_upstream.connections == 0


async def test_it_notices_a_client_that_stops_reading_a_stream(
    fake_upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    fake_upstream.script("gpt-fake", Ok(text="word " * 50, delay=0.05))

    async with client.stream(
        "POST", f"{fake_upstream.url}/v1/chat/completions", json=openai_body(stream=True)
    ) as r:
        async for line in r.aiter_lines():
            if line:
                break

    assert fake_upstream.wait_for_disconnects(1)
    assert fake_upstream.disconnects == 1


async def test_reset_forgets_scripts_and_records(
    fake_upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    fake_upstream.script("gpt-fake", Fail(500))
    await client.post(f"{fake_upstream.url}/v1/chat/completions", json=openai_body())

    fake_upstream.reset()
    response = await client.post(f"{fake_upstream.url}/v1/chat/completions", json=openai_body())

    assert response.status_code == 200
    assert len(fake_upstream.requests) == 1


async def test_unknown_paths_are_404(
    fake_upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    response = await client.post(f"{fake_upstream.url}/v2/whatever", json={})

    assert response.status_code == 404
