"""POST /v1/chat/completions through the official `openai` SDK against a live server.

The upstreams are the fake upstream (a real HTTP server on 127.0.0.1); the gateway is
the real ASGI application under uvicorn.
"""

from __future__ import annotations

import time

import openai
import pytest

from billing.models import Account, Hold, LedgerEntry, UsageRecord
from gateway import routing
from gateway.catalog import get_catalog
from gateway.errors import GatewayError
from gateway.models import Model, Provider, Route
from gateway.tokens import count_prompt
from tests.fakes.upstream import Cut, ErrorEvent, Fail, Ok, Stall, pieces

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = [{"role": "user", "content": "Say something deterministic."}]
PROMPT_TOKENS = count_prompt(MESSAGES)
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.fixture
def catalog(fake_upstream):
    """gpt-test → primary, then mirror; claude-test → anthropic; gemini-test → gemini."""

    def provider(name: str, kind: str, path: str = "/v1") -> Provider:
        return Provider.objects.create(
            name=name, kind=kind, base_url=fake_upstream.url + path, api_key="k", timeout_seconds=1
        )

    primary, mirror = provider("primary", "openai"), provider("mirror", "openai")
    anthropic, gemini = provider("anthropic", "anthropic"), provider("gemini", "gemini", "/v1beta")
    prices = {"input_price": 2_000_000, "output_price": 8_000_000, "cached_input_price": 500_000}
    gpt = Model.objects.create(
        id="gpt-test",
        title="GPT Test",
        aliases=["gt"],
        context_length=8_000,
        max_output_tokens=1_000,
        **prices,
    )
    Route.objects.create(model=gpt, provider=primary, upstream_model="primary-model", priority=0)
    Route.objects.create(model=gpt, provider=mirror, upstream_model="mirror-model", priority=1)
    claude = Model.objects.create(id="claude-test", title="Claude Test", **prices)
    Route.objects.create(model=claude, provider=anthropic, upstream_model="claude-up")
    gem = Model.objects.create(id="gemini-test", title="Gemini Test", **prices)
    Route.objects.create(model=gem, provider=gemini, upstream_model="gemini-up")
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


def expected_cost(prompt: int, completion: int, cached: int = 0) -> int:
    total = (prompt - cached) * 2_000_000 + completion * 8_000_000 + cached * 500_000
    return -(-total // 1_000_000)


def assert_books_balance(account: Account) -> None:
    account.refresh_from_db()
    assert account.held_micro_usd == 0
    assert not Hold.objects.filter(account=account).exists()
    assert account.ledger_sum() == account.balance_micro_usd


def wait_for_record(request_id: str) -> UsageRecord:
    """Settlement can finish just after the client has read the last byte."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        record = UsageRecord.objects.filter(request_id=request_id).first()
        if record is not None:
            return record
        time.sleep(0.02)
    raise AssertionError(f"no usage record for {request_id}")


def test_it_answers_a_non_streamed_request_and_bills_it_once(client, customer):
    raw = client.chat.completions.with_raw_response.create(model="gpt-test", messages=MESSAGES)
    reply = raw.parse()

    assert (
        reply.choices[0].message.content
        == "Hello from primary-model. This answer is deterministic."
    )
    assert reply.model == "gpt-test"
    request_id = raw.headers["x-request-id"]
    record = UsageRecord.objects.get(request_id=request_id)
    assert record.provider == "primary"
    assert record.status == UsageRecord.Status.OK
    assert record.completion_tokens == len(pieces(reply.choices[0].message.content))
    assert reply.usage.completion_tokens == record.completion_tokens
    cost = expected_cost(record.prompt_tokens, record.completion_tokens)
    assert record.cost_micro_usd == cost
    assert raw.headers["x-request-cost-micro-usd"] == str(cost)
    entry = LedgerEntry.objects.get(idempotency_key=f"usage:{request_id}")
    assert entry.amount_micro_usd == -cost
    assert_books_balance(customer.account)


async def test_it_streams_with_the_async_client_without_a_usage_chunk_unless_asked(
    async_client, catalog
):
    stream = await async_client.chat.completions.create(
        model="gpt-test", messages=MESSAGES, stream=True
    )
    chunks = [chunk async for chunk in stream]

    assert all(chunk.choices for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "Hello from primary-model. This answer is deterministic."
    assert catalog.requests[-1].json["stream_options"] == {"include_usage": True}


def test_the_usage_chunk_carries_the_cost_when_the_client_asks(client, customer):
    stream = client.chat.completions.with_raw_response.create(
        model="gpt-test",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    request_id = stream.headers["x-request-id"]
    chunks = list(stream.parse())

    last = chunks[-1]
    assert last.choices == []
    record = wait_for_record(request_id)
    assert last.usage.completion_tokens == record.completion_tokens
    assert last.usage.model_extra["cost_micro_usd"] == record.cost_micro_usd
    assert last.usage.model_extra["cost"] == pytest.approx(record.cost_micro_usd / 1_000_000)
    assert record.stream is True
    assert record.ttft_ms is not None
    assert_books_balance(customer.account)


def test_tool_calls_stream_as_openai_deltas(client, catalog):
    catalog.script("primary-model", Ok(tool_calls=[("get_weather", '{"city": "Paris, France"}')]))

    stream = client.chat.completions.create(
        model="gpt-test", messages=MESSAGES, tools=[WEATHER_TOOL], stream=True
    )
    name, arguments, finish = "", "", None
    for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                name += call.function.name or ""
                arguments += call.function.arguments or ""
            finish = choice.finish_reason or finish

    assert name == "get_weather"
    assert arguments == '{"city": "Paris, France"}'
    assert finish == "tool_calls"
    assert catalog.requests[-1].json["tools"] == [WEATHER_TOOL]


def test_tool_calls_come_back_whole_without_streaming(client, catalog):
    catalog.script("primary-model", Ok(tool_calls=[("get_weather", '{"city": "Oslo"}')]))

    reply = client.chat.completions.create(
        model="gpt-test", messages=MESSAGES, tools=[WEATHER_TOOL], tool_choice="required"
    )

    call = reply.choices[0].message.tool_calls[0]
    assert (call.function.name, call.function.arguments) == ("get_weather", '{"city": "Oslo"}')
    assert reply.choices[0].finish_reason == "tool_calls"
    assert catalog.requests[-1].json["tool_choice"] == "required"


@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "json_object"},
        {
            "type": "json_schema",
            "json_schema": {
                "name": "answer",
                "schema": {"type": "object", "properties": {"answer": {"type": "string"}}},
            },
        },
    ],
)
def test_response_format_is_passed_through(client, catalog, response_format):
    import json

    reply = client.chat.completions.create(
        model="gpt-test", messages=MESSAGES, response_format=response_format
    )

    assert "answer" in json.loads(reply.choices[0].message.content)
    assert catalog.requests[-1].json["response_format"] == response_format


def test_sampling_parameters_reach_the_upstream_unchanged(client, catalog):
    client.chat.completions.create(
        model="gpt-test",
        messages=MESSAGES,
        temperature=0.3,
        top_p=0.9,
        stop=["\n\n"],
        seed=7,
        user="end-user-1",
        n=1,
        max_completion_tokens=50,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
    )

    sent = catalog.requests[-1].json
    assert sent["model"] == "primary-model"
    expected = {
        "temperature": 0.3,
        "top_p": 0.9,
        "stop": ["\n\n"],
        "seed": 7,
        "user": "end-user-1",
        "n": 1,
        "max_completion_tokens": 50,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
    }
    assert {k: sent[k] for k in expected} == expected


@pytest.mark.parametrize("name", ["gpt-test", "gt", "GPT Test", "gpt test"])
def test_a_model_is_found_by_id_alias_or_title(client, name):
    reply = client.chat.completions.create(model=name, messages=MESSAGES)

    assert reply.model == "gpt-test"


@pytest.mark.parametrize("failure", [Fail(500), Fail(503), Fail(429, retry_after=1), Stall(3)])
def test_it_falls_back_to_the_mirror_before_the_first_byte(client, catalog, failure):
    catalog.script("primary-model", failure)

    raw = client.chat.completions.with_raw_response.create(model="gpt-test", messages=MESSAGES)

    assert raw.parse().choices[0].message.content.startswith("Hello from mirror-model")
    record = UsageRecord.objects.get(request_id=raw.headers["x-request-id"])
    assert (record.provider, record.attempts) == ("mirror", 2)


def test_a_stream_falls_back_when_the_primary_fails_before_any_chunk(client, catalog):
    catalog.script("primary-model", Fail(502))

    stream = client.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    assert text.startswith("Hello from mirror-model")


def test_an_unreachable_provider_falls_back(client, catalog):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    Provider.objects.filter(name="primary").update(base_url=f"http://127.0.0.1:{closed_port}/v1")

    reply = client.chat.completions.create(model="gpt-test", messages=MESSAGES)

    assert reply.choices[0].message.content.startswith("Hello from mirror-model")


def test_fallback_off_answers_503_with_retry_after(client, catalog, customer):
    catalog.script("primary-model", Fail(500))

    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(
            model="gpt-test", messages=MESSAGES, extra_headers={"X-Fallback": "off"}
        )

    assert caught.value.status_code == 503
    assert int(caught.value.response.headers["retry-after"]) >= 1
    assert caught.value.body["code"] == "upstream_unavailable"
    assert catalog.requests_for("mirror-model") == []
    record = UsageRecord.objects.get(request_id=caught.value.response.headers["x-request-id"])
    assert (record.status, record.cost_micro_usd) == (UsageRecord.Status.ERROR, 0)
    assert_books_balance(customer.account)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_fallback_off_tries_a_cooling_primary_and_never_the_mirror(client, catalog, stream):
    catalog.script("primary-model", Fail(500))
    cooled = client.chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert cooled.choices[0].message.content.startswith("Hello from mirror-model")

    raw = client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=MESSAGES, stream=stream, extra_headers={"X-Fallback": "off"}
    )

    answer = raw.parse()
    text = (
        "".join(c.choices[0].delta.content or "" for c in answer if c.choices)
        if stream
        else answer.choices[0].message.content
    )
    assert text.startswith("Hello from primary-model")
    assert len(catalog.requests_for("primary-model")) == 2
    assert len(catalog.requests_for("mirror-model")) == 1
    record = wait_for_record(raw.headers["x-request-id"])
    assert (record.provider, record.attempts, record.status) == ("primary", 1, "ok")


def test_fallback_off_answers_503_when_the_cooling_primary_fails_again(client, catalog, customer):
    catalog.script("primary-model", Fail(500), Fail(503))
    client.chat.completions.create(model="gpt-test", messages=MESSAGES)

    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(
            model="gpt-test", messages=MESSAGES, extra_headers={"X-Fallback": "off"}
        )

    assert caught.value.status_code == 503
    assert int(caught.value.response.headers["retry-after"]) >= 1
    assert len(catalog.requests_for("primary-model")) == 2
    assert len(catalog.requests_for("mirror-model")) == 1
    assert_books_balance(customer.account)


def test_a_failing_provider_cools_down_and_is_skipped(client, catalog):
    catalog.script("primary-model", Fail(500))
    client.chat.completions.create(model="gpt-test", messages=MESSAGES)

    reply = client.chat.completions.create(model="gpt-test", messages=MESSAGES)

    assert reply.choices[0].message.content.startswith("Hello from mirror-model")
    assert len(catalog.requests_for("primary-model")) == 1


def test_when_every_provider_cools_down_it_answers_503(client, catalog, settings):
    settings.PROVIDER_PROBE_SECONDS = 60  # no probe falls inside the test
    catalog.script("primary-model", Fail(500))
    catalog.script("mirror-model", Fail(500))
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-test", messages=MESSAGES)

    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="gpt-test", messages=MESSAGES)

    assert caught.value.status_code == 503
    assert "cooling down" in caught.value.message
    assert len(catalog.requests) == 2


def test_while_every_provider_cools_down_a_probe_goes_to_the_first_to_recover(
    client, catalog, settings
):
    """Half-open: once its probe is due, one request tries the provider whose cooldown
    ends first; its answer ends that cooldown, and the requests after it go there."""
    settings.PROVIDER_PROBE_SECONDS = 0
    catalog.script("primary-model", Fail(500))
    catalog.script("mirror-model", Fail(500))
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-test", messages=MESSAGES)

    probed = client.chat.completions.create(model="gpt-test", messages=MESSAGES)
    after = client.chat.completions.create(model="gpt-test", messages=MESSAGES)

    assert probed.choices[0].message.content.startswith("Hello from primary-model")
    assert after.choices[0].message.content.startswith("Hello from primary-model")
    assert [r.model for r in catalog.requests] == ["primary-model", "mirror-model"] + [
        "primary-model"
    ] * 2


def test_a_failed_probe_keeps_the_provider_cooling_and_the_next_waits_its_interval(
    client, catalog, settings
):
    settings.PROVIDER_PROBE_SECONDS = 1.0
    catalog.script("primary-model", Fail(500), Fail(500))
    catalog.script("mirror-model", Fail(500), Fail(500))
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-test", messages=MESSAGES)
    time.sleep(1.1)

    for _ in range(2):  # each provider's probe, the first to recover first
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="gpt-test", messages=MESSAGES)
    with pytest.raises(openai.InternalServerError) as refused:
        client.chat.completions.create(model="gpt-test", messages=MESSAGES)

    assert "cooling down" in refused.value.message
    assert [r.model for r in catalog.requests] == ["primary-model", "mirror-model"] * 2
    time.sleep(1.1)
    reply = client.chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert reply.choices[0].message.content.startswith("Hello from primary-model")
    assert len(catalog.requests) == 5


def test_a_provider_that_asked_to_be_left_alone_is_not_probed_before_its_retry_after(
    client, catalog, settings
):
    settings.PROVIDER_PROBE_SECONDS = 0
    catalog.script("primary-model", Fail(429, retry_after=30))
    catalog.script("mirror-model", Fail(429, retry_after=30))
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-test", messages=MESSAGES)

    with pytest.raises(openai.InternalServerError) as refused:
        client.chat.completions.create(model="gpt-test", messages=MESSAGES)

    assert refused.value.status_code == 503
    assert 29 <= int(refused.value.response.headers["Retry-After"]) <= 30
    assert len(catalog.requests) == 2


def test_a_cooling_provider_has_one_probe_in_flight_at_a_time(catalog, settings):
    """The first to recover is probed; while its probe is out, the next; then none."""
    settings.PROVIDER_PROBE_SECONDS = 0
    model = get_catalog().resolve("gpt-test")
    primary, mirror = model.routes
    routing.cool_down(primary.provider.id)
    routing.cool_down(mirror.provider.id)

    probes = [routing.routes_to_try(model, fallback=True) for _ in range(2)]
    with pytest.raises(GatewayError) as refused:
        routing.routes_to_try(model, fallback=True)  # neither probe has answered yet
    routing.attempt_ended(primary.provider.id)

    assert probes == [[primary], [mirror]]
    assert refused.value.status == 503
    assert routing.routes_to_try(model, fallback=True) == [primary]


def test_a_client_error_from_the_upstream_is_passed_on_without_fallback(client, catalog):
    catalog.script("primary-model", Fail(400, message="bad things in the prompt"))

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-test", messages=MESSAGES)

    assert "bad things in the prompt" in caught.value.message
    assert catalog.requests_for("mirror-model") == []


@pytest.mark.parametrize("failure", [Cut(after_chunks=3), ErrorEvent(after_chunks=3)])
def test_a_stream_cut_after_the_first_byte_ends_with_an_error_and_bills_what_was_sent(
    client, catalog, customer, failure
):
    catalog.script("primary-model", failure)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=MESSAGES, stream=True
    )
    received = []

    with pytest.raises(openai.APIError):
        for chunk in raw.parse():
            received.extend(c.delta.content or "" for c in chunk.choices)

    assert received
    assert catalog.requests_for("mirror-model") == []
    record = wait_for_record(raw.headers["x-request-id"])
    assert record.status == UsageRecord.Status.ERROR
    assert record.completion_tokens > 0
    assert record.cost_micro_usd > 0
    assert_books_balance(customer.account)


def test_a_client_that_disconnects_cancels_the_upstream_and_pays_for_what_it_got(
    client, catalog, customer
):
    catalog.script("primary-model", Ok(text="word " * 200, delay=0.05))
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=MESSAGES, stream=True
    )
    stream = raw.parse()
    for index, _chunk in enumerate(stream):
        if index == 3:
            break
    stream.close()

    assert catalog.wait_for_disconnects(1)
    record = wait_for_record(raw.headers["x-request-id"])
    assert record.status == UsageRecord.Status.CANCELLED
    assert 0 < record.completion_tokens < 200
    assert record.cost_micro_usd == expected_cost(record.prompt_tokens, record.completion_tokens)
    assert_books_balance(customer.account)


def test_without_upstream_usage_it_counts_the_tokens_itself(client, catalog):
    catalog.script("primary-model", Ok(usage=False))

    raw = client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(raw.parse())

    record = wait_for_record(raw.headers["x-request-id"])
    assert record.completion_tokens > 0
    assert record.prompt_tokens > 0
    assert chunks[-1].usage.completion_tokens == record.completion_tokens


@pytest.mark.parametrize("model", ["claude-test", "gemini-test"])
def test_other_protocols_answer_through_the_same_api(client, catalog, model):
    upstream = model.split("-")[0] + "-up"
    catalog.script(upstream, Ok(cached_tokens=4, prompt_tokens=20))

    raw = client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES)
    reply = raw.parse()

    assert (
        reply.choices[0].message.content == f"Hello from {upstream}. This answer is deterministic."
    )
    assert reply.usage.prompt_tokens == 20
    assert reply.usage.prompt_tokens_details.cached_tokens == 4
    record = UsageRecord.objects.get(request_id=raw.headers["x-request-id"])
    assert record.cost_micro_usd == expected_cost(20, record.completion_tokens, cached=4)


@pytest.mark.parametrize("model", ["claude-test", "gemini-test"])
def test_other_protocols_stream_tool_calls(client, catalog, model):
    upstream = model.split("-")[0] + "-up"
    catalog.script(upstream, Ok(tool_calls=[("get_weather", '{"city": "Lima"}')]))

    stream = client.chat.completions.create(
        model=model, messages=MESSAGES, tools=[WEATHER_TOOL], stream=True
    )
    name = arguments = ""
    for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                name += call.function.name or ""
                arguments += call.function.arguments or ""

    assert name == "get_weather"
    assert arguments.replace(" ", "") == '{"city":"Lima"}'


def test_models_are_listed_for_the_sdk(client):
    ids = [model.id for model in client.models.list()]

    assert ids == ["claude-test", "gemini-test", "gpt-test"]
    assert client.models.retrieve("gpt-test").id == "gpt-test"


def test_rate_limits_answer_429_with_headers(live_server_url, make_customer, catalog):
    limited = make_customer(rpm_limit=1)
    client = openai.OpenAI(base_url=live_server_url + "/v1", api_key=limited.secret, max_retries=0)
    first = client.chat.completions.with_raw_response.create(model="gpt-test", messages=MESSAGES)
    assert first.headers["x-ratelimit-limit-requests"] == "1"
    assert first.headers["x-ratelimit-remaining-requests"] == "0"

    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt-test", messages=MESSAGES)

    assert int(caught.value.response.headers["retry-after"]) >= 1
    assert caught.value.body["code"] == "rate_limit_exceeded"
    assert len(catalog.requests) == 1


def test_token_limits_take_the_output_budget_then_keep_only_what_was_used(
    live_server_url, make_customer, catalog
):
    limited = make_customer(tpm_limit=500)
    client = openai.OpenAI(base_url=live_server_url + "/v1", api_key=limited.secret, max_retries=0)
    ok = client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=MESSAGES, max_tokens=200
    )
    # Admitted for its prompt and its whole output budget...
    assert int(ok.headers["x-ratelimit-remaining-tokens"]) == 500 - PROMPT_TOKENS - 200

    # ...and, once settled, the window keeps only the tokens the upstream reported (or
    # fewer, should the minute have turned meanwhile).
    record = wait_for_record(ok.headers["x-request-id"])
    used = record.prompt_tokens + record.completion_tokens
    assert 0 < used < PROMPT_TOKENS + 200
    remaining = 0
    for _ in range(50):
        models = client.models.with_raw_response.list()
        remaining = int(models.headers["x-ratelimit-remaining-tokens"])
        if remaining >= 500 - used:
            break
        time.sleep(0.02)
    assert remaining >= 500 - used
    assert remaining >= PROMPT_TOKENS + 400

    # Room the first call's budget would still take, had it not been given back.
    client.chat.completions.create(model="gpt-test", messages=MESSAGES, max_tokens=400)


@pytest.mark.parametrize(
    ("call", "error", "status", "code"),
    [
        (dict(api_key="sk-sb-wrong"), openai.AuthenticationError, 401, "invalid_api_key"),
        (dict(model="no-such-model"), openai.NotFoundError, 404, "model_not_found"),
        (dict(max_tokens=5_000), openai.BadRequestError, 400, "invalid_value"),
        (dict(credit=0), openai.APIStatusError, 402, "insufficient_credits"),
        (dict(allowed=["claude-test"]), openai.PermissionDeniedError, 403, "model_not_allowed"),
    ],
)
def test_errors_reach_the_sdk_as_openai_errors(
    live_server_url, make_customer, catalog, call, error, status, code
):
    customer = make_customer(
        credit_micro_usd=call.get("credit", 10_000_000), allowed_models=call.get("allowed", [])
    )
    client = openai.OpenAI(
        base_url=live_server_url + "/v1",
        api_key=call.get("api_key", customer.secret),
        max_retries=0,
    )
    kwargs = {"model": call.get("model", "gpt-test"), "messages": MESSAGES}
    if "max_tokens" in call:
        kwargs["max_tokens"] = call["max_tokens"]

    with pytest.raises(error) as caught:
        client.chat.completions.create(**kwargs)

    assert caught.value.status_code == status
    assert caught.value.body["code"] == code
    assert caught.value.response.headers["x-request-id"].startswith("req_")
    assert catalog.requests == []


def test_anthropic_gets_the_reserved_output_budget_when_the_client_sets_none(client, catalog):
    Model.objects.filter(id="claude-test").update(max_output_tokens=300)

    client.chat.completions.create(model="claude-test", messages=MESSAGES)

    assert catalog.requests[-1].json["max_tokens"] == 300
