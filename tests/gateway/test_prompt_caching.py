"""Prompt caching priced right: cache reads and writes (5-minute and 1-hour) each at
their own price, counted once, kept on the usage record and shown as line items.
"""

from __future__ import annotations

import httpx
import pytest
from django.core.management import call_command

from billing.models import UsageRecord
from gateway.models import Model, Provider, Route
from tests.fakes.upstream import Ok
from tests.gateway.test_chat_completions_sdk import assert_books_balance

pytestmark = pytest.mark.django_db(transaction=True)

# micro-USD per million tokens: input 3, output 15, read 0.3, write 3.75, 1-hour write 6.
PRICES = {
    "input_price": 3_000_000,
    "output_price": 15_000_000,
    "cached_input_price": 300_000,
    "cache_write_price": 3_750_000,
    "cache_write_1h_price": 6_000_000,
}


@pytest.fixture
def cached_catalog(fake_upstream):
    for kind, path in (("anthropic", "/v1"), ("openai", "/v1"), ("gemini", "/v1beta")):
        provider = Provider.objects.create(
            name=kind, kind=kind, base_url=fake_upstream.url + path, api_key="k"
        )
        model = Model.objects.create(
            id=f"{kind}-cached", context_length=200_000, max_output_tokens=8_000, **PRICES
        )
        Route.objects.create(model=model, provider=provider, upstream_model=f"{kind}-up")
    return fake_upstream


# About 10,000 tokens, so the hold covers the prompts the fake upstream reports.
LONG = [{"role": "user", "content": "word " * 10_000}]


def chat(url: str, secret: str, model: str, **body: object) -> httpx.Response:
    return httpx.post(
        url + "/v1/chat/completions",
        json={"model": model, "messages": LONG, "max_tokens": 100, **body},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=10,
    )


def cost(*, plain=0, read=0, write=0, write_1h=0, output=0) -> int:
    total = (
        plain * 3_000_000
        + read * 300_000
        + write * 3_750_000
        + write_1h * 6_000_000
        + output * 15_000_000
    )
    return -(-total // 1_000_000)


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_cache_reads_and_writes_are_each_billed_at_their_price(
    live_server_url, cached_catalog, customer, stream
):
    cached_catalog.script(
        "anthropic-up",
        Ok(
            prompt_tokens=10_000,
            cached_tokens=8_000,
            cache_creation_tokens=1_500,
            cache_creation_1h_tokens=500,
            completion_tokens=40,
        ),
    )

    response = chat(live_server_url, customer.secret, "anthropic-cached", stream=stream)

    assert response.status_code == 200
    record = UsageRecord.objects.get(request_id=response.headers["x-request-id"])
    assert (record.prompt_tokens, record.cached_tokens) == (10_000, 8_000)
    assert (record.cache_write_tokens, record.cache_write_1h_tokens) == (1_500, 500)
    expected = cost(plain=500, read=8_000, write=1_000, write_1h=500, output=40)
    assert record.cost_micro_usd == expected
    assert [(i.label, i.tokens, i.price) for i in record.line_items()] == [
        ("Input", 500, 3_000_000),
        ("Cache reads", 8_000, 300_000),
        ("Cache writes (5 min)", 1_000, 3_750_000),
        ("Cache writes (1 h)", 500, 6_000_000),
        ("Output", 40, 15_000_000),
    ]
    assert sum(i.micro_usd for i in record.line_items()) <= expected
    assert_books_balance(customer.account)


@pytest.mark.parametrize("kind", ["openai", "gemini"])
def test_cache_reads_of_other_vendors_are_billed_at_the_read_price(
    live_server_url, cached_catalog, customer, kind
):
    cached_catalog.script(
        f"{kind}-up", Ok(prompt_tokens=4_000, cached_tokens=3_000, completion_tokens=10)
    )

    response = chat(live_server_url, customer.secret, f"{kind}-cached")

    record = UsageRecord.objects.get(request_id=response.headers["x-request-id"])
    assert (record.cached_tokens, record.cache_write_tokens) == (3_000, 0)
    assert record.cost_micro_usd == cost(plain=1_000, read=3_000, output=10)
    assert int(response.headers["X-Request-Cost-Micro-Usd"]) == record.cost_micro_usd


def test_the_hold_covers_a_prompt_written_to_the_cache_for_an_hour(
    live_server_url, cached_catalog, make_customer
):
    """A whole prompt written for an hour costs twice the input price: the hold must
    cover it, or the charge is capped below what the upstream bills."""
    customer = make_customer()
    cached_catalog.script(
        "anthropic-up",
        Ok(cache_creation_tokens=10_000, cache_creation_1h_tokens=10_000, prompt_tokens=10_000),
    )
    response = chat(live_server_url, customer.secret, "anthropic-cached")

    record = UsageRecord.objects.get(request_id=response.headers["x-request-id"])
    assert record.uncharged_micro_usd == 0
    assert "capped" not in record.flags
    assert record.cost_micro_usd == cost(write_1h=10_000, output=record.completion_tokens)


def test_the_catalog_and_the_pricing_page_show_cache_prices(
    live_server_url, cached_catalog, client
):
    entry = next(
        m
        for m in httpx.get(live_server_url + "/v1/catalog").json()["data"]
        if m["id"] == "anthropic-cached"
    )

    assert entry["pricing"]["cached_input"]["micro_usd"] == 300_000
    assert entry["pricing"]["cache_write"]["micro_usd"] == 3_750_000
    assert entry["pricing"]["cache_write_1h"]["micro_usd"] == 6_000_000
    page = client.get("/pricing/?q=anthropic-cached").content.decode()
    assert "read $0.30" in page
    assert "write $3.75" in page
    assert "(1 h $6.00)" in page


def test_synccatalog_seeds_cache_write_prices_from_genai_prices(db):
    call_command("synccatalog", "--vendors", "anthropic", verbosity=0)

    model = Model.objects.get(id="claude-3-5-sonnet")
    assert model.cached_input_price == 300_000
    assert model.cache_write_price == 3_750_000
    assert model.cache_write_1h_price == 6_000_000
