"""POST /v1/responses passed through to an upstream that serves the Responses API.

A provider with `serves_responses` gets the request as it came (reasoning items and
`include` too, with `store: false`) at its own /responses, and its events are relayed
under our response id, model and sequence numbers; the call is metered, limited, held,
fallen back and billed exactly like a bridged one. Live: the official `openai` SDK
against the real ASGI application, and the fake upstream's Responses protocol.
"""

from __future__ import annotations

import openai
import pytest

from billing.models import UsageRecord
from gateway.models import Model, Provider, Route
from gateway.tokens import count_text
from tests.fakes.upstream import Cut, ErrorEvent, Fail, Ok, pieces
from tests.gateway.test_responses_sdk import WEATHER_TOOL, assert_billed_once, assert_usage

pytestmark = pytest.mark.django_db(transaction=True)

NATIVE = "native-up"
BRIDGED = "bridged-up"
TEXT = f"Hello from {NATIVE}. This answer is deterministic."
REASONING_ITEM = {
    "type": "reasoning",
    "id": "rs_earlier",
    "summary": [{"type": "summary_text", "text": "The user wants the weather."}],
    "encrypted_content": "gAAAAB" + "x" * 400,
}


@pytest.fixture
def catalog(fake_upstream):
    """gpt-test: first a provider serving the Responses API, then a chat-only mirror."""
    model = Model.objects.create(
        id="gpt-test",
        context_length=8_000,
        max_output_tokens=1_000,
        input_price=2_000_000,
        output_price=8_000_000,
        cached_input_price=500_000,
    )
    for name, upstream, serves, priority in (
        ("openai-responses", NATIVE, True, 0),
        ("openai-chat", BRIDGED, False, 1),
    ):
        provider = Provider.objects.create(
            name=name,
            kind="openai",
            base_url=fake_upstream.url + "/v1",
            api_key="k",
            timeout_seconds=2,
            serves_responses=serves,
        )
        Route.objects.create(
            model=model, provider=provider, upstream_model=upstream, priority=priority
        )
    return fake_upstream


@pytest.fixture
def client(live_server_url, customer, catalog):
    return openai.OpenAI(
        base_url=live_server_url + "/v1", api_key=customer.secret, max_retries=0, timeout=10
    )


def test_a_plain_request_goes_through_untranslated_and_is_billed_once(client, catalog, customer):
    raw = client.responses.with_raw_response.create(
        model="gpt-test",
        instructions="Be brief.",
        input=[REASONING_ITEM, {"role": "user", "content": "Weather?"}],
        include=["reasoning.encrypted_content"],
        store=False,
    )
    response = raw.parse()

    sent = catalog.requests_for(NATIVE)[-1]
    assert sent.protocol == "responses" and sent.path == "/v1/responses"
    assert sent.json["input"][0] == REASONING_ITEM
    assert sent.json["include"] == ["reasoning.encrypted_content"]
    assert sent.json["store"] is False and sent.json["stream"] is False
    assert response.output_text == TEXT
    assert response.id == "resp_" + raw.headers["x-request-id"][4:]
    assert response.model == "gpt-test"
    record = assert_billed_once(customer.account, raw.headers["x-request-id"])
    assert record.completion_tokens == len(pieces(TEXT))
    assert raw.headers["x-request-cost-micro-usd"] == str(record.cost_micro_usd)
    assert_usage(response.usage, record)


def test_a_stream_relays_the_upstreams_events_under_our_id(client, catalog, customer):
    catalog.script(NATIVE, Ok(reasoning_text="Think first.", cached_tokens=3))

    with client.responses.stream(model="gpt-test", input="Say something.") as stream:
        events = list(stream)
        final = stream.get_final_response()

    kinds = [event.type for event in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert "response.reasoning_summary_text.delta" in kinds
    assert kinds[-1] == "response.completed"
    assert [event.sequence_number for event in events] == list(range(len(events)))
    ours = "resp_" + final.id[5:]
    assert {e.response.id for e in events if hasattr(e, "response")} == {ours}
    assert {e.response.model for e in events if hasattr(e, "response")} == {"gpt-test"}
    assert final.output_text == TEXT
    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert catalog.requests_for(NATIVE)[-1].json["stream"] is True
    record = assert_billed_once(customer.account, final.id.replace("resp_", "req_"))
    assert record.cached_tokens == 3
    assert record.completion_tokens == len(pieces(TEXT)) + len(pieces("Think first."))
    assert_usage(final.usage, record)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_function_call_passes_through_and_its_output_goes_back(client, catalog, stream):
    catalog.script(NATIVE, Ok(tool_calls=[("get_weather", '{"city": "Oslo"}')]))

    if stream:
        with client.responses.stream(model="gpt-test", input="Oslo?", tools=[WEATHER_TOOL]) as s:
            list(s)
            first = s.get_final_response()
    else:
        first = client.responses.create(model="gpt-test", input="Oslo?", tools=[WEATHER_TOOL])
    call = first.output[0]
    assert (call.type, call.name, call.arguments) == (
        "function_call",
        "get_weather",
        '{"city": "Oslo"}',
    )

    second = client.responses.create(
        model="gpt-test",
        input=[
            {"role": "user", "content": "Oslo?"},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny"},
        ],
        tools=[WEATHER_TOOL],
    )

    assert second.output_text == TEXT
    sent = catalog.requests_for(NATIVE)[-1].json["input"]
    assert [item.get("type") for item in sent[1:]] == ["function_call", "function_call_output"]
    assert UsageRecord.objects.filter(status="ok").count() == 2


@pytest.mark.parametrize("failure", [Fail(500), Fail(404)], ids=["down", "not-served"])
def test_a_failing_responses_upstream_falls_back_to_the_chat_mirror(
    client, catalog, customer, failure
):
    catalog.script(NATIVE, failure)

    with client.responses.stream(model="gpt-test", input="Say something.") as stream:
        events = list(stream)
        final = stream.get_final_response()

    assert final.output_text == f"Hello from {BRIDGED}. This answer is deterministic."
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert catalog.requests_for(BRIDGED)[-1].path == "/v1/chat/completions"
    record = assert_billed_once(customer.account, final.id.replace("resp_", "req_"))
    assert record.attempts == 2


def test_a_failure_mid_stream_ends_with_one_response_failed(client, catalog, customer):
    catalog.script(NATIVE, ErrorEvent(after_chunks=6))

    raw = client.responses.with_raw_response.create(model="gpt-test", input="Talk.", stream=True)
    events = list(raw.parse())

    assert [e.type for e in events].count("response.failed") == 1
    assert events[-1].type == "response.failed"
    assert events[-1].response.status == "failed"
    assert events[-1].response.id == "resp_" + raw.headers["x-request-id"][4:]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    relayed = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert relayed
    record = assert_billed_once(customer.account, raw.headers["x-request-id"], "error")
    assert record.completion_tokens == count_text(relayed)


def test_a_cut_stream_still_ends_with_response_failed(client, catalog, customer):
    catalog.script(NATIVE, Cut(after_chunks=6))

    raw = client.responses.with_raw_response.create(model="gpt-test", input="Talk.", stream=True)
    events = list(raw.parse())

    assert events[-1].type == "response.failed"
    assert_billed_once(customer.account, raw.headers["x-request-id"], "error")


def test_a_client_that_leaves_mid_stream_pays_for_what_it_got(client, catalog, customer):
    catalog.script(NATIVE, Ok(text="word " * 200, delay=0.05))

    raw = client.responses.with_raw_response.create(model="gpt-test", input="Talk.", stream=True)
    stream = raw.parse()
    for event in stream:
        if event.type == "response.output_text.delta" and event.sequence_number >= 8:
            break
    stream.close()

    assert catalog.wait_for_disconnects(1)
    record = assert_billed_once(customer.account, raw.headers["x-request-id"], "cancelled")
    assert 0 < record.completion_tokens < 200


def test_the_hold_covers_the_reasoning_items_handed_back(live_server_url, customer, catalog):
    """The reasoning only the Responses upstream reads is held for, at its size: the same
    request without it fits under a cap that it does not."""
    client = openai.OpenAI(base_url=live_server_url + "/v1", api_key=customer.secret, max_retries=0)
    question = {"role": "user", "content": "Weather?"}
    cap = {"X-Max-Cost-Micro-Usd": "9000"}  # about 1000 output tokens and a short prompt

    client.responses.create(
        model="gpt-test", input=[question], max_output_tokens=1_000, extra_headers=cap
    )
    with pytest.raises(openai.APIStatusError) as caught:
        client.responses.create(
            model="gpt-test",
            input=[REASONING_ITEM, question],
            max_output_tokens=1_000,
            extra_headers=cap,
        )

    assert caught.value.status_code == 402
    assert caught.value.body["code"] == "max_cost_exceeded"
    assert len(catalog.requests_for(NATIVE)) == 1
