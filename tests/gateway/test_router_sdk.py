"""The smart router (`model: "auto"`) through the official SDKs against a live server.

Six models sit behind the fake upstream, five of them with router profiles; each test
checks which one a kind of request is sent to, that the answer names it (the body's
`model` and the `x-routed-model` header), and that the call is held and billed at the
chosen model's prices, once.
"""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest
from django.test import Client

from billing.models import Account, Hold, UsageRecord
from gateway.calls import worst_case_cost
from gateway.catalog import get_catalog
from gateway.models import Model, Provider, Route, RouterProfile, RouterRule
from gateway.tokens import count_prompt
from tests.gateway.test_chat_completions_sdk import WEATHER_TOOL, wait_for_record

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Hello there."}]
CODE = [{"role": "user", "content": "Fix this:\n```python\ndef add(a, b):\n    return a - b\n```"}]
REASONING = [
    {"role": "user", "content": "Prove step by step that there are infinitely many primes."}
]
IMAGE = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ],
    }
]
# name: (context window, input and output price per million tokens, profile or None)
MODELS = {
    "small-fast": (4_000, 1_000_000, 2_000_000, {"tier": 1, "tools": False}),
    "mid-coder": (16_000, 3_000_000, 6_000_000, {"tier": 2}),
    "vision-model": (8_000, 2_500_000, 10_000_000, {"tier": 2, "vision": True}),
    "big-window": (50_000, 5_000_000, 15_000_000, {"tier": 2, "tools": False}),
    "strong-reasoner": (30_000, 15_000_000, 60_000_000, {"tier": 3, "reasoning": True}),
    "no-profile": (100_000, 100_000, 100_000, None),
}
RULES = {"default": 1, "code": 2, "reasoning": 3}


@pytest.fixture
def catalog(fake_upstream):
    provider = Provider.objects.create(
        name="fake", kind="openai", base_url=fake_upstream.url + "/v1", api_key="k"
    )
    for model_id, (context, input_price, output_price, profile) in MODELS.items():
        model = Model.objects.create(
            id=model_id,
            context_length=context,
            max_output_tokens=min(context, 8_000),
            input_price=input_price,
            output_price=output_price,
        )
        Route.objects.create(model=model, provider=provider, upstream_model=model_id)
        if profile is not None:
            RouterProfile.objects.create(model=model, **profile)
    for signal, tier in RULES.items():
        RouterRule.objects.update_or_create(signal=signal, defaults={"min_tier": tier})
    return fake_upstream


def sdk(url: str, secret: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=secret, max_retries=0, timeout=20)


@pytest.fixture
def client(live_server_url, customer, catalog):
    return sdk(live_server_url, customer.secret)


def price_of(model_id: str, record: UsageRecord) -> int:
    _context, input_price, output_price, _profile = MODELS[model_id]
    total = record.prompt_tokens * input_price + record.completion_tokens * output_price
    return -(-total // 1_000_000)


def assert_books_balance(account: Account) -> None:
    account.refresh_from_db()
    assert account.held_micro_usd == 0
    assert not Hold.objects.filter(account=account).exists()
    assert account.ledger_sum() == account.balance_micro_usd


def routed(client: openai.OpenAI, messages: list, **options: object) -> tuple[str, UsageRecord]:
    """Send a non-streamed router request; the chosen model, checked everywhere it shows."""
    raw = client.chat.completions.with_raw_response.create(
        model=options.pop("model", "auto"), messages=messages, **options
    )
    reply = raw.parse()
    record = wait_for_record(raw.headers["x-request-id"])
    assert raw.headers["x-routed-model"] == reply.model == record.model
    assert record.upstream_model == reply.model
    assert reply.choices[0].message.content.startswith(f"Hello from {reply.model}.") or (
        reply.choices[0].message.tool_calls
    )
    return reply.model, record


def long_prompt(tokens: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": "word " * tokens}]


@pytest.mark.parametrize(
    ("messages", "options", "chosen"),
    [
        (HELLO, {}, "small-fast"),
        (long_prompt(20_000), {}, "big-window"),
        (long_prompt(6_000), {}, "mid-coder"),
        (HELLO, {"tools": [WEATHER_TOOL]}, "mid-coder"),
        (IMAGE, {}, "vision-model"),
        (CODE, {}, "mid-coder"),
        (REASONING, {}, "strong-reasoner"),
        # More output than small-fast's window leaves room for.
        (HELLO, {"max_tokens": 3_995}, "mid-coder"),
    ],
    ids=["short", "long", "medium", "tools", "image", "code", "reasoning", "long-answer"],
)
def test_it_routes_each_kind_of_request_to_the_model_that_fits_and_bills_its_price(
    client, customer, messages, options, chosen
):
    model, record = routed(client, messages, **options)

    assert model == chosen
    assert record.requested_model == "auto"
    assert record.status == UsageRecord.Status.OK
    assert record.cost_micro_usd == price_of(chosen, record) > 0
    assert record.cost_micro_usd <= record.reserved_micro_usd
    assert UsageRecord.objects.filter(account=customer.account).count() == 1
    assert_books_balance(customer.account)


def test_the_hold_is_the_chosen_models_worst_case(client, customer):
    _model, record = routed(client, REASONING, max_tokens=500)

    snapshot = get_catalog().models["strong-reasoner"]
    held = worst_case_cost(snapshot, count_prompt(REASONING), 500)
    assert record.reserved_micro_usd == held


def test_a_model_without_a_profile_is_never_chosen_even_when_cheapest(client):
    model, _record = routed(client, HELLO)

    assert model != "no-profile"


@pytest.mark.parametrize("where", ["body", "header"])
def test_a_price_ceiling_keeps_the_choice_under_it(client, where):
    options: dict[str, object] = (
        {"extra_body": {"route": {"max_price_per_mtok": 10}}}
        if where == "body"
        else {"extra_headers": {"X-Route-Max-Price": "10"}}
    )
    model, record = routed(client, REASONING, **options)

    # strong-reasoner ($60) is over the ceiling: the strongest under it, cheapest first.
    assert model == "mid-coder"
    assert record.cost_micro_usd == price_of("mid-coder", record)


def test_the_lower_of_the_body_and_header_ceilings_wins(client):
    model, _record = routed(
        client,
        CODE,
        extra_body={"route": {"max_price_per_mtok": "50"}},
        extra_headers={"X-Route-Max-Price": "2"},
    )

    assert model == "small-fast"


def test_the_key_allowlist_limits_the_choice(live_server_url, make_customer, catalog):
    limited = make_customer(allowed_models=["vision-model", "mid-coder"])
    model, _record = routed(sdk(live_server_url, limited.secret), HELLO)

    assert model == "mid-coder"


def test_a_conversation_stays_on_its_model_until_it_outgrows_it(client):
    first = [{"role": "system", "content": "Be brief."}, *HELLO]
    model, _ = routed(client, first)
    assert model == "small-fast"

    # Code would go to mid-coder on its own, but the conversation keeps its model.
    second = [*first, {"role": "assistant", "content": "Hi."}, *CODE]
    assert routed(client, second)[0] == "small-fast"
    # The same opening turned into a prompt small-fast cannot hold: routed afresh...
    third = [*second, {"role": "assistant", "content": "Done."}, *long_prompt(6_000)]
    assert routed(client, third)[0] == "mid-coder"
    # ...and the conversation stays there.
    fourth = [*third, {"role": "assistant", "content": "Read it."}, *HELLO]
    assert routed(client, fourth)[0] == "mid-coder"
    # Another conversation (another first message) is routed on its own.
    assert routed(client, [{"role": "user", "content": "Something else."}])[0] == "small-fast"


def test_strap_routes_every_turn_afresh(client):
    assert routed(client, HELLO, model="strap")[0] == "small-fast"

    second = [*HELLO, {"role": "assistant", "content": "Hi."}, *CODE]
    model, record = routed(client, second, model="strap")

    assert model == "mid-coder"
    assert record.requested_model == "strap"


def test_a_stream_names_the_chosen_model_in_its_header_and_chunks(client, customer):
    raw = client.chat.completions.with_raw_response.create(
        model="router", messages=CODE, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(raw.parse())

    assert raw.headers["x-routed-model"] == "mid-coder"
    assert {chunk.model for chunk in chunks} == {"mid-coder"}
    record = wait_for_record(raw.headers["x-request-id"])
    assert (record.model, record.requested_model, record.stream) == ("mid-coder", "router", True)
    assert chunks[-1].usage.cost_micro_usd == record.cost_micro_usd == price_of("mid-coder", record)
    assert_books_balance(customer.account)


def test_the_messages_door_routes_too(live_server_url, customer, catalog):
    client = anthropic.Anthropic(
        base_url=live_server_url, api_key=customer.secret, max_retries=0, timeout=10
    )
    raw = client.messages.with_raw_response.create(
        model="auto", max_tokens=300, messages=[{"role": "user", "content": "Hello there."}]
    )
    message = raw.parse()

    assert message.model == raw.headers["x-routed-model"] == "small-fast"
    record = wait_for_record(raw.headers["x-request-id"])
    assert (record.model, record.requested_model, record.source) == (
        "small-fast",
        "auto",
        UsageRecord.Source.MESSAGES,
    )
    assert record.cost_micro_usd == price_of("small-fast", record) > 0
    assert_books_balance(customer.account)


def test_a_small_balance_is_never_overspent_by_the_router(live_server_url, make_customer, catalog):
    # Enough for small-fast's worst case, not for strong-reasoner's.
    poor = make_customer(credit_micro_usd=5_000)
    client = sdk(live_server_url, poor.secret)

    _model, record = routed(client, HELLO, max_tokens=100)
    assert record.cost_micro_usd <= record.reserved_micro_usd
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(model="auto", messages=REASONING, max_tokens=2_000)

    assert refused.value.status_code == 402
    assert refused.value.body["code"] == "insufficient_credits"
    poor.account.refresh_from_db()
    assert poor.account.balance_micro_usd == 5_000 - record.cost_micro_usd >= 0
    assert UsageRecord.objects.filter(account=poor.account).count() == 1
    assert_books_balance(poor.account)


@pytest.mark.parametrize(
    ("messages", "options", "says"),
    [
        (HELLO, {"extra_headers": {"X-Route-Max-Price": "0.5"}}, "above the price ceiling"),
        (long_prompt(60_000), {}, "context window too small"),
        ([*IMAGE], {"extra_headers": {"X-Route-Max-Price": "5"}}, "cannot read images"),
    ],
    ids=["ceiling-too-low", "prompt-too-long", "no-cheap-vision"],
)
def test_it_says_why_no_model_fits(client, customer, messages, options, says):
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="auto", messages=messages, **options)

    error = refused.value.body
    assert error["code"] == "no_model_fits"
    assert error["param"] == "model"
    assert says in error["message"]
    assert not UsageRecord.objects.exists()
    assert_books_balance(customer.account)


def test_a_key_allowed_none_of_the_routers_models_is_told_so(
    live_server_url, make_customer, catalog
):
    limited = make_customer(allowed_models=["no-profile"])
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(live_server_url, limited.secret).chat.completions.create(model="auto", messages=HELLO)

    assert refused.value.body["code"] == "no_model_fits"
    assert "not allowed for this key" in refused.value.body["message"]


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"extra_body": {"route": "cheap"}}, "route"),
        ({"extra_body": {"route": {"fastest": True}}}, "route.fastest"),
        ({"extra_body": {"route": {"max_price_per_mtok": -1}}}, "route.max_price_per_mtok"),
        ({"extra_body": {"route": {"max_price_per_mtok": "lots"}}}, "route.max_price_per_mtok"),
        ({"extra_body": {"route": {"max_price_per_mtok": True}}}, "route.max_price_per_mtok"),
        ({"extra_body": {"route": {"max_price_per_mtok": [1]}}}, "route.max_price_per_mtok"),
        ({"extra_headers": {"X-Route-Max-Price": "cheap"}}, "X-Route-Max-Price"),
        ({"extra_headers": {"X-Route-Max-Price": "NaN"}}, "X-Route-Max-Price"),
        ({"extra_headers": {"X-Route-Max-Price": "-2"}}, "X-Route-Max-Price"),
    ],
)
def test_a_bad_route_option_is_a_400_naming_it(client, customer, options, param):
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="auto", messages=HELLO, **options)

    assert refused.value.body["code"] == "invalid_route"
    assert refused.value.body["param"] == param
    assert not UsageRecord.objects.exists()


def test_route_options_on_a_named_model_are_read_and_never_sent_upstream(client, catalog):
    reply = client.chat.completions.create(
        model="mid-coder", messages=HELLO, extra_body={"route": {"max_price_per_mtok": 1}}
    )

    assert reply.model == "mid-coder"
    assert "route" not in catalog.requests[-1].json
    assert UsageRecord.objects.get().requested_model == ""


def test_the_generation_and_the_usage_page_show_what_was_asked_and_what_served(
    client, customer, live_server_url
):
    _model, record = routed(client, CODE)

    found = httpx.get(
        f"{live_server_url}/v1/generation/{record.request_id}",
        headers={"Authorization": f"Bearer {customer.secret}"},
    ).json()
    assert (found["model"], found["requested_model"]) == ("mid-coder", "auto")
    browser = Client()
    browser.force_login(customer.user)
    page = browser.get(f"/billing/usage/{record.request_id}/").content.decode()
    assert "<code>mid-coder</code>" in page
    assert "(asked for <code>auto</code>)" in page
