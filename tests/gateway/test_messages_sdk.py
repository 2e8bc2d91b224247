"""POST /v1/messages through the official `anthropic` SDK against a live server.

The upstreams are the fake upstream (a real HTTP server on 127.0.0.1) behind an
OpenAI-kind, an Anthropic-kind and a Gemini route; the gateway is the real ASGI
application under uvicorn. Every call is billed once, with source "messages".
"""

from __future__ import annotations

import time
from typing import Any

import anthropic
import httpx
import httpx2
import orjson
import pytest

from billing.models import Account, Hold, UsageRecord
from gateway.doors import messages as door
from gateway.models import Model, Provider, Route
from gateway.tokens import count_prompt
from tests.fakes.upstream import ErrorEvent, Fail, Ok, Stall, default_text, pieces
from tests.gateway.test_chat_completions_sdk import expected_cost, wait_for_record

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Say something deterministic."}]
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
# model id → the upstream model its one route calls
UPSTREAMS = {"gpt-test": "openai-up", "claude-test": "claude-up", "gemini-test": "gemini-up"}


@pytest.fixture
def catalog(fake_upstream):
    """gpt-test → an OpenAI-kind route, claude-test → Anthropic, gemini-test → Gemini."""
    prices = {"input_price": 2_000_000, "output_price": 8_000_000, "cached_input_price": 500_000}
    for (model_id, upstream), kind in zip(
        UPSTREAMS.items(), ("openai", "anthropic", "gemini"), strict=True
    ):
        provider = Provider.objects.create(
            name=kind,
            kind=kind,
            base_url=fake_upstream.url + ("/v1beta" if kind == "gemini" else "/v1"),
            api_key="k",
            timeout_seconds=2,
        )
        model = Model.objects.create(
            id=model_id,
            title=model_id.replace("-", " ").title(),
            aliases=[model_id.split("-")[0]],
            context_length=200_000,
            max_output_tokens=64_000,
            **prices,
        )
        Route.objects.create(model=model, provider=provider, upstream_model=upstream)
    return fake_upstream


@pytest.fixture
def client(live_server_url, customer, catalog):
    return anthropic.Anthropic(
        base_url=live_server_url, api_key=customer.secret, max_retries=0, timeout=10
    )


@pytest.fixture
def async_client(live_server_url, customer, catalog):
    return anthropic.AsyncAnthropic(
        base_url=live_server_url, auth_token=customer.secret, max_retries=0, timeout=10
    )


def assert_billed_once(request_id: str, account: Account, status: str = "ok") -> UsageRecord:
    record = wait_for_record(request_id)
    assert UsageRecord.objects.filter(account=account).count() == 1
    assert record.source == UsageRecord.Source.MESSAGES
    assert record.status == status
    assert record.cost_micro_usd == expected_cost(
        record.prompt_tokens, record.completion_tokens, record.cached_tokens
    )
    account.refresh_from_db()
    assert account.held_micro_usd == 0
    assert not Hold.objects.filter(account=account).exists()
    assert account.ledger_sum() == account.balance_micro_usd
    assert account.balance_micro_usd == 10_000_000 - record.cost_micro_usd
    return record


def assert_usage_matches(usage: Any, record: UsageRecord) -> None:
    assert usage.input_tokens + usage.cache_read_input_tokens == record.prompt_tokens
    assert usage.cache_read_input_tokens == record.cached_tokens
    assert usage.output_tokens == record.completion_tokens


@pytest.mark.parametrize("model", list(UPSTREAMS))
def test_it_answers_a_plain_request_on_every_kind_of_route(client, customer, model):
    raw = client.messages.with_raw_response.create(model=model, max_tokens=64_000, messages=HELLO)
    message = raw.parse()

    assert message.type == "message" and message.role == "assistant"
    assert message.model == model
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == default_text(UPSTREAMS[model])
    assert message.stop_reason == "end_turn"
    request_id = raw.headers["x-request-id"]
    assert message.id == "msg_" + request_id.removeprefix("req_")
    record = assert_billed_once(request_id, customer.account)
    assert record.provider == {"gpt-test": "openai", "claude-test": "anthropic"}.get(
        model, "gemini"
    )
    assert record.completion_tokens == len(pieces(message.content[0].text))
    assert_usage_matches(message.usage, record)
    assert raw.headers["x-request-cost-micro-usd"] == str(record.cost_micro_usd)


def test_the_model_field_takes_aliases_and_titles(client, customer):
    by_alias = client.messages.create(model="claude", max_tokens=10, messages=HELLO)
    by_title = client.messages.create(model="Claude Test", max_tokens=10, messages=HELLO)
    assert by_alias.model == by_title.model == "claude-test"


def test_cache_reads_come_back_as_cache_read_input_tokens(client, customer, catalog):
    catalog.script("claude-up", Ok(prompt_tokens=400, cached_tokens=300))
    raw = client.messages.with_raw_response.create(
        model="claude-test", max_tokens=100, messages=HELLO
    )
    message = raw.parse()
    assert message.usage.cache_read_input_tokens == 300
    assert message.usage.input_tokens == 100
    record = assert_billed_once(raw.headers["x-request-id"], customer.account)
    assert record.cached_tokens == 300


async def test_the_async_client_answers_plain_and_streamed(async_client, catalog):
    message = await async_client.messages.create(model="gpt-test", max_tokens=100, messages=HELLO)
    assert message.content[0].text == default_text("openai-up")
    async with async_client.messages.stream(
        model="claude-test", max_tokens=100, messages=HELLO
    ) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert text == final.content[0].text == default_text("claude-up")
    assert final.stop_reason == "end_turn"
    assert catalog.requests[-1].headers["x-api-key"] == "k"  # the gateway's key, not ours


@pytest.mark.parametrize("model", list(UPSTREAMS))
def test_the_stream_helper_assembles_the_message(client, customer, model):
    with client.messages.stream(
        model=model,
        max_tokens=100,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=HELLO,
    ) as stream:
        final = stream.get_final_message()
        request_id = stream.response.headers["x-request-id"]

    assert final.content[0].text == default_text(UPSTREAMS[model])
    assert final.stop_reason == "end_turn"
    record = assert_billed_once(request_id, customer.account)
    assert record.stream is True
    assert_usage_matches(final.usage, record)


def raw_events(url: str, secret: str, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The stream as (event name, data) pairs, read with plain httpx."""
    events = []
    with httpx.stream(
        "POST",
        url + "/v1/messages?beta=true",
        json={**body, "stream": True},
        headers={"x-api-key": secret, "anthropic-version": "2023-06-01"},
        timeout=10,
    ) as response:
        assert response.status_code == 200, response.read()
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = orjson.loads(line[6:])
                assert data["type"] == name
                events.append((name, data))
    return events


def test_the_stream_is_anthropics_exact_event_sequence(live_server_url, customer, catalog):
    catalog.script(
        "openai-up", Ok(text="Let me look.", tool_calls=[("get_weather", '{"city": "Paris"}')])
    )
    events = raw_events(
        live_server_url,
        customer.secret,
        {"model": "gpt-test", "max_tokens": 100, "messages": HELLO, "tools": [WEATHER]},
    )
    names = [name for name, _ in events]
    text_deltas = len(pieces("Let me look."))
    assert names[0] == "message_start"
    assert names[1:3] == ["content_block_start", "content_block_delta"]
    assert names[-2:] == ["message_delta", "message_stop"]
    assert names.count("content_block_start") == names.count("content_block_stop") == 2
    start = events[0][1]["message"]
    assert start["role"] == "assistant" and start["content"] == []
    assert start["usage"]["input_tokens"] > 0
    blocks = [data for name, data in events if name == "content_block_start"]
    assert [b["index"] for b in blocks] == [0, 1]
    assert blocks[0]["content_block"] == {"type": "text", "text": ""}
    tool = blocks[1]["content_block"]
    assert tool["type"] == "tool_use" and tool["name"] == "get_weather" and tool["input"] == {}
    deltas = [data for name, data in events if name == "content_block_delta"]
    assert [d["delta"]["type"] for d in deltas[:text_deltas]] == ["text_delta"] * text_deltas
    arguments = "".join(d["delta"]["partial_json"] for d in deltas if d["index"] == 1)
    assert orjson.loads(arguments) == {"city": "Paris"}
    # each block is stopped, with its index, before the next starts
    order = [(name, data.get("index")) for name, data in events if "content_block" in name]
    assert order.index(("content_block_stop", 0)) < order.index(("content_block_start", 1))
    final = events[-2][1]
    assert final["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    record = assert_billed_once(final_request_id(customer), customer.account)
    assert final["usage"]["output_tokens"] == record.completion_tokens
    assert final["usage"]["cost_micro_usd"] == record.cost_micro_usd


def final_request_id(customer: Any) -> str:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        record = UsageRecord.objects.filter(account=customer.account).first()
        if record is not None:
            return record.request_id
        time.sleep(0.02)
    raise AssertionError("no usage record")


def test_pings_go_out_while_the_upstream_is_silent(live_server_url, customer, catalog, monkeypatch):
    monkeypatch.setattr(door, "PING_SECONDS", 0.1)
    catalog.script("claude-up", Stall(0.6, after_chunks=5))
    events = raw_events(
        live_server_url,
        customer.secret,
        {"model": "claude-test", "max_tokens": 50, "messages": HELLO},
    )
    names = [name for name, _ in events]
    assert names.count("ping") >= 2
    assert names[-1] == "message_stop"
    text = "".join(data["delta"]["text"] for name, data in events if name == "content_block_delta")
    assert text == default_text("claude-up")


def test_an_upstream_failure_mid_stream_is_an_error_event(client, customer, catalog):
    catalog.script("openai-up", ErrorEvent(after_chunks=3))
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        client.messages.stream(model="gpt-test", max_tokens=50, messages=HELLO) as stream,
    ):
        for _ in stream:
            pass
    assert "mid-stream" in str(caught.value)
    record = assert_billed_once(final_request_id(customer), customer.account, status="error")
    assert record.completion_tokens > 0


@pytest.mark.parametrize("model", ["gpt-test", "claude-test"])
@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_a_tool_use_round_trip(client, customer, catalog, model, streamed):
    upstream = UPSTREAMS[model]
    catalog.script(
        upstream, Ok(tool_calls=[("get_weather", '{"city": "Paris"}')]), Ok(text="Sunny.")
    )
    request: dict[str, Any] = {
        "model": model,
        "max_tokens": 200,
        "tools": [WEATHER],
        "tool_choice": {"type": "auto"},
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
    }
    if streamed:
        with client.messages.stream(**request) as stream:
            first = stream.get_final_message()
    else:
        first = client.messages.create(**request)
    assert first.stop_reason == "tool_use"
    (call,) = [block for block in first.content if block.type == "tool_use"]
    assert call.name == "get_weather" and call.input == {"city": "Paris"}

    request["messages"] += [
        {"role": "assistant", "content": [block.model_dump() for block in first.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": call.id, "content": "22°C, sunny"},
                {"type": "text", "text": "Thanks."},
            ],
        },
    ]
    second = client.messages.create(**request)
    assert second.content[0].text == "Sunny." and second.stop_reason == "end_turn"
    sent = catalog.requests_for(upstream)[-1].json
    if model == "gpt-test":
        roles = [m["role"] for m in sent["messages"]]
        assert roles == ["user", "assistant", "tool", "user"]
        assert sent["messages"][1]["tool_calls"][0]["id"] == call.id
        assert sent["messages"][2] == {
            "role": "tool",
            "tool_call_id": call.id,
            "content": "22°C, sunny",
        }
        assert sent["tools"][0]["function"]["name"] == "get_weather"
        assert sent["tool_choice"] == "auto"
    else:
        result = sent["messages"][2]["content"][0]
        assert result == {"type": "tool_result", "tool_use_id": call.id, "content": "22°C, sunny"}
        assert sent["tools"][0]["input_schema"] == WEATHER["input_schema"]
    records = UsageRecord.objects.filter(account=customer.account)
    assert records.count() == 2
    assert {r.source for r in records} == {UsageRecord.Source.MESSAGES}


def test_the_request_as_claude_code_sends_it_is_translated(client, catalog):
    client.messages.create(
        model="gpt-test",
        max_tokens=32_000,
        system=[
            {"type": "text", "text": "You are Claude Code."},
            {"type": "text", "text": "Be careful.", "cache_control": {"type": "ephemeral"}},
        ],
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look:", "cache_control": {"type": "ephemeral"}},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Hmm.", "signature": "sig"},
                    {"type": "text", "text": "A picture."},
                ],
            },
            {"role": "user", "content": "And now?"},
        ],
        metadata={"user_id": "user_abc_session_1"},
        stop_sequences=["END"],
        thinking={"type": "enabled", "budget_tokens": 2048},
        cache_control={"type": "ephemeral"},
        output_config={"effort": "high"},
        extra_body={"context_management": {"edits": []}, "temperature": 0.5, "top_p": 0.9},
        extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"},
    )
    sent = catalog.requests_for("openai-up")[-1].json
    assert sent["messages"][0] == {
        "role": "system",
        "content": "You are Claude Code.\n\nBe careful.",
    }
    assert sent["messages"][1]["content"] == [
        {"type": "text", "text": "Look:"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
    ]
    assert sent["messages"][2] == {"role": "assistant", "content": "A picture."}
    assert sent["max_tokens"] == 32_000
    assert sent["stop"] == ["END"]
    assert sent["user"] == "user_abc_session_1"
    assert (sent["temperature"], sent["top_p"]) == (0.5, 0.9)
    for dropped in ("thinking", "context_management", "metadata", "system", "cache_control"):
        assert dropped not in sent


def test_count_tokens_counts_with_the_gateways_tokenizer(client, customer):
    counted = client.messages.count_tokens(
        model="claude-test",
        system="Be brief.",
        messages=HELLO,
        tools=[WEATHER],
    )
    chat = door.to_chat(
        {"model": "claude-test", "system": "Be brief.", "messages": HELLO, "tools": [WEATHER]},
        counting=True,
    )
    assert counted.input_tokens == count_prompt(chat["messages"], chat["tools"])
    assert not UsageRecord.objects.exists()


# --- errors, through the SDK's exception classes ----------------------------------------


def assert_anthropic_error(exc: anthropic.APIStatusError, kind: str) -> None:
    assert exc.body["type"] == "error"
    assert exc.body["error"]["type"] == kind
    assert exc.body["error"]["message"]


def test_a_bad_key_is_an_authentication_error(live_server_url, catalog):
    bad = anthropic.Anthropic(base_url=live_server_url, api_key="sk-sb-nope", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        bad.messages.create(model="gpt-test", max_tokens=10, messages=HELLO)
    assert caught.value.status_code == 401
    assert_anthropic_error(caught.value, "authentication_error")


def test_a_model_outside_the_allowlist_is_a_permission_error(
    live_server_url, make_customer, catalog
):
    limited = make_customer(allowed_models=["claude-test"])
    sdk = anthropic.Anthropic(base_url=live_server_url, api_key=limited.secret, max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        sdk.messages.create(model="gpt-test", max_tokens=10, messages=HELLO)
    assert_anthropic_error(caught.value, "permission_error")


def test_an_unknown_model_is_not_found(client):
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(model="no-such-model", max_tokens=10, messages=HELLO)
    assert_anthropic_error(caught.value, "not_found_error")
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="no-such-model", messages=HELLO)


def test_a_bad_request_is_an_invalid_request_error(client):
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model="gpt-test", max_tokens=10, messages=HELLO, extra_body={"temperature": 1.5}
        )
    assert_anthropic_error(caught.value, "invalid_request_error")
    assert "temperature" in caught.value.body["error"]["message"]


def test_a_body_too_large_is_a_413_invalid_request_error(client, settings):
    settings.MAX_REQUEST_BYTES = 2_000
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(
            model="gpt-test", max_tokens=10, messages=[{"role": "user", "content": "x" * 5_000}]
        )
    assert caught.value.status_code == 413
    assert_anthropic_error(caught.value, "invalid_request_error")


def test_over_the_rate_limit_is_a_rate_limit_error_with_retry_after(
    live_server_url, make_customer, catalog
):
    limited = make_customer(rpm_limit=1)
    sdk = anthropic.Anthropic(base_url=live_server_url, api_key=limited.secret, max_retries=0)
    sdk.messages.create(model="gpt-test", max_tokens=10, messages=HELLO)
    with pytest.raises(anthropic.RateLimitError) as caught:
        sdk.messages.create(model="gpt-test", max_tokens=10, messages=HELLO)
    assert_anthropic_error(caught.value, "rate_limit_error")
    assert int(caught.value.response.headers["retry-after"]) >= 1


def test_out_of_credit_is_a_402_the_sdk_does_not_retry(live_server_url, make_customer, catalog):
    broke = make_customer(credit_micro_usd=0)
    sent: list[httpx2.Request] = []
    sdk = anthropic.Anthropic(
        base_url=live_server_url,
        api_key=broke.secret,
        max_retries=3,
        http_client=httpx2.Client(event_hooks={"request": [sent.append]}),
    )
    with pytest.raises(anthropic.APIStatusError) as caught:
        sdk.messages.create(model="gpt-test", max_tokens=10, messages=HELLO)
    assert caught.value.status_code == 402
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert_anthropic_error(caught.value, "billing_error")
    assert len(sent) == 1
    assert not UsageRecord.objects.settled().exists()
    assert catalog.requests == []


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_no_healthy_upstream_is_529_overloaded(client, customer, catalog, streamed):
    catalog.script("openai-up", Fail(500))
    with pytest.raises(anthropic.OverloadedError) as caught:
        if streamed:
            with client.messages.stream(model="gpt-test", max_tokens=10, messages=HELLO) as s:
                s.get_final_message()
        else:
            client.messages.create(model="gpt-test", max_tokens=10, messages=HELLO)
    assert caught.value.status_code == 529
    assert_anthropic_error(caught.value, "overloaded_error")
    assert caught.value.response.headers["retry-after"]
    account = Account.objects.get(pk=customer.account.pk)
    assert account.balance_micro_usd == 10_000_000 and account.held_micro_usd == 0


@pytest.mark.parametrize("model", ["gpt-test", "claude-test"])
def test_a_client_that_leaves_mid_stream_pays_for_what_it_got(
    live_server_url, customer, catalog, model
):
    text = " ".join(f"word{i}" for i in range(40))
    catalog.script(UPSTREAMS[model], Ok(text=text, delay=0.05))
    with httpx.stream(
        "POST",
        live_server_url + "/v1/messages",
        json={"model": model, "max_tokens": 500, "messages": HELLO, "stream": True},
        headers={"authorization": f"Bearer {customer.secret}"},
        timeout=10,
    ) as response:
        request_id = response.headers["x-request-id"]
        deltas = 0
        for line in response.iter_lines():
            if line.startswith("event: content_block_delta"):
                deltas += 1
                if deltas == 5:
                    break
    assert catalog.wait_for_disconnects(1)
    record = assert_billed_once(request_id, customer.account, status="cancelled")
    assert 5 <= record.completion_tokens < len(pieces(text))


@pytest.mark.parametrize("model", ["gpt-test", "claude-test"])
@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_a_matched_stop_sequence_is_stop_sequence(client, catalog, model, streamed):
    catalog.script(UPSTREAMS[model], Ok(text="one two", stop_sequence="END"))
    request = {"model": model, "max_tokens": 50, "messages": HELLO, "stop_sequences": ["END"]}
    if streamed:
        with client.messages.stream(**request) as stream:
            message = stream.get_final_message()
    else:
        message = client.messages.create(**request)
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "END")
    sent = catalog.requests_for(UPSTREAMS[model])[-1].json
    assert sent.get("stop", sent.get("stop_sequences")) == ["END"]


@pytest.mark.parametrize(
    ("finish", "reason"),
    [("length", "max_tokens"), ("content_filter", "refusal"), ("stop", "end_turn")],
)
def test_the_other_stop_reasons(client, catalog, finish, reason):
    catalog.script("openai-up", Ok(finish_reason=finish))
    message = client.messages.create(model="gpt-test", max_tokens=50, messages=HELLO)
    assert message.stop_reason == reason and message.stop_sequence is None


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_reasoning_from_the_upstream_comes_back_as_a_thinking_block(
    client, customer, catalog, streamed
):
    catalog.script("openai-up", Ok(text="Four.", reasoning_text="Two and two make four."))
    request = {"model": "gpt-test", "max_tokens": 50, "messages": HELLO}
    if streamed:
        with client.messages.stream(**request) as stream:
            thinking = "".join(
                event.delta.thinking
                for event in stream
                if event.type == "content_block_delta" and event.delta.type == "thinking_delta"
            )
            message = stream.get_final_message()
        assert thinking == "Two and two make four."
    else:
        message = client.messages.create(**request)
    assert [block.type for block in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == "Two and two make four."
    assert message.content[1].text == "Four."
    record = assert_billed_once(final_request_id(customer), customer.account)
    assert record.completion_tokens == len(pieces("Two and two make four. Four."))


def test_an_idempotency_key_replays_the_first_answer_billed_once(client, customer, catalog):
    headers = {"Idempotency-Key": "retry-me"}
    first = client.messages.with_raw_response.create(
        model="gpt-test", max_tokens=50, messages=HELLO, extra_headers=headers
    )
    again = client.messages.with_raw_response.create(
        model="gpt-test", max_tokens=50, messages=HELLO, extra_headers=headers
    )
    assert again.headers["idempotent-replayed"] == "true"
    assert again.parse().model_dump() == first.parse().model_dump()
    assert len(catalog.requests) == 1
    assert_billed_once(first.headers["x-request-id"], customer.account)
