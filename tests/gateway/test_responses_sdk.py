"""POST /v1/responses through the official `openai` SDK's `responses` client, live.

The gateway is the real ASGI application under uvicorn; the upstreams are the fake
upstream's three protocols (an OpenAI-kind, an Anthropic-kind and a Gemini route), each
reached through the one call lifecycle and bridged at the edge.
"""

from __future__ import annotations

from typing import Any

import httpx
import openai
import orjson
import pytest
from pydantic import BaseModel

from billing.ledger import credit_account
from billing.models import Account, Hold, LedgerEntry, UsageRecord
from gateway.models import Model, Provider, Route
from gateway.tokens import count_text
from tests.fakes.upstream import ErrorEvent, Ok, pieces
from tests.gateway.test_chat_completions_sdk import expected_cost, wait_for_record

pytestmark = pytest.mark.django_db(transaction=True)

ROUTES = {"gpt-test": "openai-up", "claude-test": "claude-up", "gemini-test": "gemini-up"}
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
TEXT_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


@pytest.fixture
def catalog(fake_upstream):
    """gpt-test → an OpenAI-kind route, claude-test → Anthropic, gemini-test → Gemini."""

    def provider(name: str, kind: str, path: str = "/v1") -> Provider:
        return Provider.objects.create(
            name=name, kind=kind, base_url=fake_upstream.url + path, api_key="k", timeout_seconds=2
        )

    kinds = {"gpt-test": ("openai", "/v1"), "claude-test": ("anthropic", "/v1")}
    kinds["gemini-test"] = ("gemini", "/v1beta")
    for model_id, upstream in ROUTES.items():
        kind, path = kinds[model_id]
        model = Model.objects.create(
            id=model_id,
            context_length=8_000,
            max_output_tokens=1_000,
            input_price=2_000_000,
            output_price=8_000_000,
            cached_input_price=500_000,
        )
        Route.objects.create(
            model=model, provider=provider(kind, kind, path), upstream_model=upstream
        )
    return fake_upstream


@pytest.fixture
def client(live_server_url, customer, catalog):
    return openai.OpenAI(
        base_url=live_server_url + "/v1", api_key=customer.secret, max_retries=0, timeout=10
    )


@pytest.fixture
def async_client(live_server_url, customer, catalog):
    return openai.AsyncOpenAI(
        base_url=live_server_url + "/v1", api_key=customer.secret, max_retries=0, timeout=10
    )


def assert_billed_once(account: Account, request_id: str, status: str = "ok") -> UsageRecord:
    """One usage record from the Responses door at the model's prices, one ledger entry
    for it, and the books balanced."""
    record = wait_for_record(request_id)
    assert UsageRecord.objects.filter(account=account).count() == 1
    assert record.source == UsageRecord.Source.RESPONSES
    assert record.status == status
    cost = expected_cost(record.prompt_tokens, record.completion_tokens, record.cached_tokens)
    assert record.cost_micro_usd == cost > 0
    entry = LedgerEntry.objects.get(idempotency_key=f"usage:{request_id}")
    assert entry.amount_micro_usd == -cost
    account.refresh_from_db()
    assert account.held_micro_usd == 0
    assert not Hold.objects.filter(account=account).exists()
    assert account.ledger_sum() == account.balance_micro_usd
    return record


def assert_usage(usage: Any, record: UsageRecord) -> None:
    assert usage.input_tokens == record.prompt_tokens
    assert usage.input_tokens_details.cached_tokens == record.cached_tokens
    assert usage.output_tokens == record.completion_tokens
    assert usage.output_tokens_details.reasoning_tokens == 0
    assert usage.total_tokens == record.prompt_tokens + record.completion_tokens
    assert usage.model_extra["cost_micro_usd"] == record.cost_micro_usd
    assert usage.model_extra["cost"] == pytest.approx(record.cost_micro_usd / 1_000_000)


@pytest.mark.parametrize("model", list(ROUTES))
def test_a_plain_answer_through_each_kind_of_route_is_billed_once(client, catalog, customer, model):
    raw = client.responses.with_raw_response.create(
        model=model, input="Say something.", instructions="Be brief."
    )
    response = raw.parse()

    text = f"Hello from {ROUTES[model]}. This answer is deterministic."
    assert response.output_text == text
    assert response.status == "completed"
    assert response.id.startswith("resp_") and response.model == model
    assert [item.type for item in response.output] == ["message"]
    request_id = raw.headers["x-request-id"]
    record = assert_billed_once(customer.account, request_id)
    assert record.completion_tokens == len(pieces(text))
    assert record.stream is False
    assert raw.headers["x-request-cost-micro-usd"] == str(record.cost_micro_usd)
    assert_usage(response.usage, record)
    sent = catalog.requests_for(ROUTES[model])[-1].json
    assert "Be brief." in orjson.dumps(sent).decode()


@pytest.mark.parametrize("model", list(ROUTES))
def test_a_stream_has_the_exact_events_and_the_sdk_assembles_it(client, customer, model):
    with client.responses.stream(model=model, input="Say something.") as stream:
        events = list(stream)
        final = stream.get_final_response()

    text = f"Hello from {ROUTES[model]}. This answer is deterministic."
    kinds = [event.type for event in events]
    deltas = len(pieces(text))
    assert kinds == TEXT_EVENTS[:4] + ["response.output_text.delta"] * deltas + TEXT_EVENTS[5:]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == text
    assert final.output_text == text and final.status == "completed"
    assert events[0].response.status == "in_progress" and events[0].response.output == []
    item_ids = {e.item_id for e in events if hasattr(e, "item_id")}
    assert item_ids == {final.output[0].id}
    record = assert_billed_once(customer.account, final.id.replace("resp_", "req_"))
    assert record.stream is True
    assert_usage(final.usage, record)


async def test_the_async_client_streams_with_create(async_client, customer):
    stream = await async_client.responses.create(model="gpt-test", input="Hi", stream=True)
    events = [event async for event in stream]

    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    completed = events[-1].response
    assert completed.output_text == "Hello from openai-up. This answer is deterministic."
    assert completed.usage.output_tokens == len(pieces(completed.output_text))


async def test_the_async_client_gets_a_plain_answer(async_client):
    response = await async_client.responses.create(model="claude-test", input="Hi")

    assert response.output_text == "Hello from claude-up. This answer is deterministic."
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens


@pytest.mark.parametrize("model", list(ROUTES))
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_function_call_and_its_output_in_the_next_turn(client, catalog, customer, model, stream):
    upstream = ROUTES[model]
    arguments = '{"city":"Paris"}'
    catalog.script(upstream, Ok(tool_calls=[("get_weather", arguments)]), Ok(text="It is sunny."))
    question = {"role": "user", "content": "Weather in Paris?"}

    if stream:
        with client.responses.stream(model=model, input=[question], tools=[WEATHER_TOOL]) as s:
            events = list(s)
            first = s.get_final_response()
        kinds = [event.type for event in events]
        assert kinds[:3] == [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
        ]
        assert "response.function_call_arguments.delta" in kinds
        assert kinds[-3:] == [
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
        done = next(e for e in events if e.type == "response.function_call_arguments.done")
        assert done.arguments == arguments
    else:
        first = client.responses.create(model=model, input=[question], tools=[WEATHER_TOOL])
    [call] = first.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.arguments == arguments and call.call_id and call.status == "completed"

    second = client.responses.create(
        model=model,
        input=[
            question,
            call.model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"},
        ],
        tools=[WEATHER_TOOL],
    )

    assert second.output_text == "It is sunny."
    sent = orjson.dumps(catalog.requests_for(upstream)[-1].json).decode()
    assert "sunny, 21 C" in sent and "get_weather" in sent
    if model != "gemini-test":
        assert call.call_id in sent
    records = UsageRecord.objects.filter(account=customer.account, source="responses")
    assert records.count() == 2
    assert all(
        r.cost_micro_usd == expected_cost(r.prompt_tokens, r.completion_tokens) for r in records
    )
    customer.account.refresh_from_db()
    assert customer.account.ledger_sum() == customer.account.balance_micro_usd


def test_the_function_call_reaches_an_openai_route_as_chat_tool_messages(client, catalog):
    client.responses.create(
        model="gpt-test",
        input=[
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Let me look."}],
            },
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": "{}",
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "rain"},
        ],
        instructions="Be brief.",
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "name": "get_weather"},
        parallel_tool_calls=False,
        max_output_tokens=50,
        temperature=0.5,
        top_p=0.9,
        reasoning={"effort": "low", "summary": "auto"},
        store=False,
        include=["reasoning.encrypted_content"],
        prompt_cache_key="thread-1",
    )

    sent = catalog.requests_for("openai-up")[-1].json
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "rain"},
    ]
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": WEATHER_TOOL["parameters"],
            },
        }
    ]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["parallel_tool_calls"] is False
    assert sent["max_completion_tokens"] == 50
    assert (sent["temperature"], sent["top_p"]) == (0.5, 0.9)
    assert sent["reasoning_effort"] == "low"
    assert sent["prompt_cache_key"] == "thread-1"
    for dropped in ("store", "include", "input", "instructions", "reasoning"):
        assert dropped not in sent


class Answer(BaseModel):
    answer: str


@pytest.mark.parametrize("model", ["gpt-test", "gemini-test"])
def test_text_format_json_schema_becomes_the_routes_json_mode(client, catalog, model):
    response = client.responses.parse(model=model, input="Answer in JSON.", text_format=Answer)

    assert response.output_parsed == Answer(
        answer=f"Hello from {ROUTES[model]}. This answer is deterministic."
    )
    sent = catalog.requests_for(ROUTES[model])[-1].json
    if model == "gpt-test":
        assert sent["response_format"]["type"] == "json_schema"
        assert sent["response_format"]["json_schema"]["name"] == "Answer"
        assert sent["response_format"]["json_schema"]["schema"]["required"] == ["answer"]
    else:
        assert sent["generationConfig"]["responseMimeType"] == "application/json"


def test_a_stream_cut_by_max_output_tokens_completes_as_incomplete(client, catalog):
    catalog.script("openai-up", Ok(text="one two three", finish_reason="length"))

    with client.responses.stream(model="gpt-test", input="Count.", max_output_tokens=3) as s:
        events = list(s)
        final = s.get_final_response()

    assert events[-1].type == "response.completed"
    assert final.status == "incomplete"
    assert final.incomplete_details.reason == "max_output_tokens"
    assert final.output[0].status == "incomplete"


def test_a_client_that_disconnects_mid_stream_pays_for_what_it_got(client, catalog, customer):
    catalog.script("openai-up", Ok(text="word " * 200, delay=0.05))

    raw = client.responses.with_raw_response.create(model="gpt-test", input="Talk.", stream=True)
    stream = raw.parse()
    for event in stream:
        if event.type == "response.output_text.delta" and event.sequence_number >= 6:
            break
    stream.close()

    assert catalog.wait_for_disconnects(1)
    record = assert_billed_once(customer.account, raw.headers["x-request-id"], "cancelled")
    assert 0 < record.completion_tokens < 200


def test_an_upstream_failure_mid_stream_ends_with_response_failed(client, catalog, customer):
    catalog.script("openai-up", ErrorEvent(after_chunks=3))

    raw = client.responses.with_raw_response.create(model="gpt-test", input="Talk.", stream=True)
    events = list(raw.parse())

    assert events[-1].type == "response.failed"
    failed = events[-1].response
    assert failed.status == "failed"
    assert failed.error.code == "server_error"
    assert "mid-stream" in failed.error.message
    assert [e.sequence_number for e in events] == list(range(len(events)))
    # What reached the client is in the failed response, and is what was billed.
    relayed = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert relayed and failed.output[0].content[0].text == relayed
    record = assert_billed_once(customer.account, raw.headers["x-request-id"], "error")
    assert record.completion_tokens == count_text(relayed)


def test_no_credit_is_a_402_for_a_plain_request(live_server_url, make_customer, catalog):
    poor = make_customer(credit_micro_usd=0)
    client = openai.OpenAI(base_url=live_server_url + "/v1", api_key=poor.secret, max_retries=0)

    with pytest.raises(openai.APIStatusError) as caught:
        client.responses.create(model="gpt-test", input="Hi")

    assert caught.value.status_code == 402
    assert caught.value.body["code"] == "insufficient_credits"
    assert catalog.requests == []
    assert not UsageRecord.objects.settled().filter(account=poor.account).exists()


@pytest.mark.parametrize(
    ("credit", "headers", "reason"),
    [
        (0, {}, "Insufficient credits"),
        (10_000_000, {"X-Max-Cost-Micro-Usd": "1"}, "per-request cap"),
    ],
    ids=["no-credit", "over-the-cap"],
)
def test_a_stream_refused_for_money_fails_as_a_stream_with_insufficient_quota(
    live_server_url, make_customer, catalog, credit, headers, reason
):
    """Codex CLI stops on `response.failed` with `insufficient_quota`, and retries an HTTP
    402 five times; nothing is held, called or billed."""
    poor = make_customer(credit_micro_usd=credit)
    client = openai.OpenAI(base_url=live_server_url + "/v1", api_key=poor.secret, max_retries=0)

    raw = client.responses.with_raw_response.create(
        model="gpt-test", input="Hi", stream=True, extra_headers=headers
    )
    events = list(raw.parse())

    assert raw.http_response.status_code == 200
    assert raw.headers["x-request-id"].startswith("req_")
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.failed",
    ]
    assert [e.sequence_number for e in events] == [0, 1, 2]
    failed = events[-1].response
    assert failed.id == "resp_" + raw.headers["x-request-id"][4:]
    assert failed.status == "failed" and failed.output == []
    assert failed.error.code == "insufficient_quota"
    assert reason in failed.error.message
    assert catalog.requests == []
    # The refusal itself reaches the request log a moment later, at no cost.
    billed = UsageRecord.objects.filter(account=poor.account).exclude(
        status=UsageRecord.Status.REFUSED
    )
    assert not billed.exists()
    assert not Hold.objects.filter(account=poor.account).exists()


def test_a_refused_stream_leaves_its_idempotency_key_for_a_retry(
    live_server_url, make_customer, catalog
):
    poor = make_customer(credit_micro_usd=0)
    client = openai.OpenAI(base_url=live_server_url + "/v1", api_key=poor.secret, max_retries=0)
    key = {"Idempotency-Key": "codex-turn-1"}

    refused = list(
        client.responses.create(model="gpt-test", input="Hi", stream=True, extra_headers=key)
    )
    credit_account(
        account=poor.account,
        amount=10_000_000,
        kind=LedgerEntry.Kind.GRANT,
        idempotency_key="test:top-up",
    )
    answered = list(
        client.responses.create(model="gpt-test", input="Hi", stream=True, extra_headers=key)
    )

    assert refused[-1].type == "response.failed"
    assert answered[-1].type == "response.completed"
    assert UsageRecord.objects.filter(account=poor.account, status="ok").count() == 1


def test_the_output_cap_is_named_as_the_responses_parameter(client, catalog):
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="gpt-test", input="Hi", max_output_tokens=5_000)

    assert caught.value.body["param"] == "max_output_tokens"
    assert "max_output_tokens" in caught.value.body["message"]
    assert catalog.requests == []


def test_models_answers_codex_asking_with_its_client_version(live_server_url, customer, catalog):
    response = httpx.get(
        live_server_url + "/v1/models",
        params={"client_version": "0.169.0"},
        headers={"Authorization": f"Bearer {customer.secret}"},
    )

    assert response.status_code == 200
    assert sorted(m["id"] for m in response.json()["data"]) == sorted(ROUTES)


def test_cached_and_reasoning_tokens_are_reported_in_the_usage(client, catalog, customer):
    catalog.script("openai-up", Ok(prompt_tokens=40, cached_tokens=30, reasoning_tokens=5))

    raw = client.responses.with_raw_response.create(model="gpt-test", input="Think.")
    usage = raw.parse().usage

    record = assert_billed_once(customer.account, raw.headers["x-request-id"])
    assert usage.input_tokens == record.prompt_tokens == 40
    assert usage.input_tokens_details.cached_tokens == record.cached_tokens == 30
    assert usage.output_tokens_details.reasoning_tokens == 5
    assert record.cost_micro_usd == expected_cost(40, record.completion_tokens, 30)


def test_text_then_a_function_call_stream_as_two_output_items(client, catalog):
    catalog.script("openai-up", Ok(text="Let me look.", tool_calls=[("get_weather", "{}")]))

    with client.responses.stream(model="gpt-test", input="Weather?", tools=[WEATHER_TOOL]) as s:
        events = list(s)
        final = s.get_final_response()

    assert [item.type for item in final.output] == ["message", "function_call"]
    added = [e for e in events if e.type == "response.output_item.added"]
    done = [e for e in events if e.type == "response.output_item.done"]
    assert [e.output_index for e in added] == [e.output_index for e in done] == [0, 1]
    kinds = [e.type for e in events]
    # The message is finished before the function call begins.
    assert kinds.index("response.content_part.done") < kinds.index(
        "response.function_call_arguments.delta"
    )
    assert final.output_text == "Let me look."


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_retry_with_the_same_idempotency_key_is_replayed_not_billed_again(
    client, catalog, customer, stream
):
    headers = {"Idempotency-Key": f"responses-{stream}"}

    first = client.responses.with_raw_response.create(
        model="gpt-test", input="Hi", stream=stream, extra_headers=headers
    )
    first_body = list(first.parse()) if stream else first.parse()
    again = client.responses.with_raw_response.create(
        model="gpt-test", input="Hi", stream=stream, extra_headers=headers
    )
    again_body = list(again.parse()) if stream else again.parse()

    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["x-request-id"] == first.headers["x-request-id"]
    assert again_body == first_body
    assert len(catalog.requests_for("openai-up")) == 1
    assert_billed_once(customer.account, first.headers["x-request-id"])


def test_a_failure_in_the_translation_still_ends_the_stream_and_settles_it(
    client, catalog, customer, monkeypatch
):
    from gateway.doors import responses

    real = responses.ResponseStream.chunk
    seen = {"chunks": 0}

    def breaking(self, chunk):
        seen["chunks"] += 1
        if seen["chunks"] == 3:
            raise RuntimeError("a bug in the translation")
        return real(self, chunk)

    monkeypatch.setattr(responses.ResponseStream, "chunk", breaking)

    raw = client.responses.with_raw_response.create(model="gpt-test", input="Talk.", stream=True)
    events = list(raw.parse())

    assert events[-1].type == "response.failed"
    assert events[-1].response.error.code == "server_error"
    record = assert_billed_once(customer.account, raw.headers["x-request-id"], "error")
    assert record.error == "the Responses stream failed"
