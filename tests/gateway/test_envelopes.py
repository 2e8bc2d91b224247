"""The OpenAI chat envelopes every adapter answers in, byte for byte (key order included,
since orjson writes a dict as it was built and that is what a client reads)."""

from __future__ import annotations

import orjson

from gateway.providers import envelopes
from gateway.providers.base import usage_dict

USAGE = usage_dict(5, 2)
USAGE_BYTES = (
    b'{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7,'
    b'"prompt_tokens_details":{"cached_tokens":0}}'
)


def dumped(value: object) -> bytes:
    return orjson.dumps(value)


def test_the_role_rides_on_the_first_delta_only() -> None:
    stream = envelopes.ChunkStream("m", id="c1", created=7)

    first = stream.chunk({"content": "Hel"})
    second = stream.chunk({"content": "lo"})

    assert dumped(first) == (
        b'{"id":"c1","object":"chat.completion.chunk","created":7,"model":"m",'
        b'"choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"},'
        b'"logprobs":null,"finish_reason":null}]}'
    )
    assert dumped(second) == (
        b'{"id":"c1","object":"chat.completion.chunk","created":7,"model":"m",'
        b'"choices":[{"index":0,"delta":{"content":"lo"},"logprobs":null,"finish_reason":null}]}'
    )


def test_a_stream_takes_its_id_and_model_when_the_upstream_names_them() -> None:
    stream = envelopes.ChunkStream("asked-for", created=7)
    stream.id, stream.model = "msg_1", "served"

    chunk = stream.chunk({"content": "x"})

    assert (chunk["id"], chunk["model"]) == ("msg_1", "served")


def test_a_stream_is_dated_when_it_starts() -> None:
    stream = envelopes.ChunkStream("m")

    assert isinstance(stream.created, int)
    assert stream.id == ""


def test_the_finish_chunk_carries_the_reason_and_a_matched_stop_sequence() -> None:
    stream = envelopes.ChunkStream("m", id="c1", created=7)
    stream.chunk({"content": "a"})

    plain = stream.finish_chunk("length")
    stopped = stream.finish_chunk("stop", stop_reason="END")

    assert dumped(plain) == (
        b'{"id":"c1","object":"chat.completion.chunk","created":7,"model":"m",'
        b'"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"length"}]}'
    )
    assert dumped(stopped) == (
        b'{"id":"c1","object":"chat.completion.chunk","created":7,"model":"m",'
        b'"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop",'
        b'"stop_reason":"END"}]}'
    )


def test_a_finish_with_nothing_before_it_still_names_the_role() -> None:
    stream = envelopes.ChunkStream("m", id="c1", created=7)

    finish = stream.finish_chunk("stop")

    assert finish["choices"][0]["delta"] == {"role": "assistant"}


def test_the_usage_chunk_has_no_choices() -> None:
    expected = (
        b'{"id":"c1","object":"chat.completion.chunk","created":7,"model":"m","choices":[],'
        b'"usage":' + USAGE_BYTES + b"}"
    )

    assert dumped(envelopes.usage_chunk(id="c1", created=7, model="m", usage=USAGE)) == expected
    stream = envelopes.ChunkStream("m", id="c1", created=7)
    assert dumped(stream.usage_chunk(USAGE)) == expected


def test_tool_call_deltas_open_a_call_then_stream_its_arguments() -> None:
    assert dumped(envelopes.tool_call_start(1, "call_1", "get_weather")) == (
        b'{"index":1,"id":"call_1","type":"function",'
        b'"function":{"name":"get_weather","arguments":""}}'
    )
    assert dumped(envelopes.tool_call_arguments(1, '{"city"')) == (
        b'{"index":1,"function":{"arguments":"{\\"city\\""}}'
    )


def test_a_completion_with_text() -> None:
    completion = envelopes.completion(
        id="c1",
        created=7,
        model="m",
        message=envelopes.assistant_message("Hi", []),
        finish_reason="stop",
        usage=USAGE,
    )

    assert dumped(completion) == (
        b'{"id":"c1","object":"chat.completion","created":7,"model":"m",'
        b'"choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},'
        b'"logprobs":null,"finish_reason":"stop"}],"usage":' + USAGE_BYTES + b"}"
    )


def test_a_completion_with_tool_calls_has_null_content() -> None:
    calls = [envelopes.tool_call("call_1", "f", "{}")]

    completion = envelopes.completion(
        id="c1",
        created=7,
        model="m",
        message=envelopes.assistant_message("", calls),
        finish_reason="tool_calls",
    )

    assert dumped(completion) == (
        b'{"id":"c1","object":"chat.completion","created":7,"model":"m",'
        b'"choices":[{"index":0,"message":{"role":"assistant","content":null,'
        b'"tool_calls":[{"id":"call_1","type":"function",'
        b'"function":{"name":"f","arguments":"{}"}}]},'
        b'"logprobs":null,"finish_reason":"tool_calls"}]}'
    )


def test_an_empty_answer_is_an_empty_string() -> None:
    assert envelopes.assistant_message("", []) == {"role": "assistant", "content": ""}


def test_a_completion_keeps_a_matched_stop_sequence_after_the_reason() -> None:
    completion = envelopes.completion(
        id="c1",
        created=7,
        model="m",
        message=envelopes.assistant_message("a", []),
        finish_reason="stop",
        stop_reason="END",
    )

    assert dumped(completion["choices"]) == (
        b'[{"index":0,"message":{"role":"assistant","content":"a"},'
        b'"logprobs":null,"finish_reason":"stop","stop_reason":"END"}]'
    )


def test_the_demo_shapes_leave_logprobs_out() -> None:
    stream = envelopes.ChunkStream("demo", created=7, logprobs=False)
    completion = envelopes.completion(
        id="",
        created=7,
        model="demo",
        message=envelopes.assistant_message("a", []),
        finish_reason="stop",
        logprobs=False,
    )

    assert dumped(stream.chunk({"content": ""})["choices"]) == (
        b'[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]'
    )
    assert dumped(stream.finish_chunk("length")["choices"]) == (
        b'[{"index":0,"delta":{},"finish_reason":"length"}]'
    )
    assert dumped(completion["choices"]) == (
        b'[{"index":0,"message":{"role":"assistant","content":"a"},"finish_reason":"stop"}]'
    )
