"""Per-request prices (Botstrapp's Budget 9 / Standard 19 / Premium 49 ICO a message):
charged once per call that reached an upstream, on top of (or instead of) the tokens,
held before the call and shown everywhere the token prices are.
"""

from __future__ import annotations

import io

import httpx
import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from billing.models import LedgerEntry, UsageRecord
from gateway.models import Model
from gateway.tokens import count_prompt
from tests.fakes.upstream import Fail, Ok, Stall
from tests.gateway.test_call_lifecycle import only_record, post, sse_events
from tests.gateway.test_chat_completions_sdk import (
    MESSAGES,
    assert_books_balance,
    catalog,
    expected_cost,
    wait_for_record,
)

__all__ = ["catalog"]

pytestmark = pytest.mark.django_db(transaction=True)

PROMPT = count_prompt(MESSAGES)
STANDARD = 19_000  # 19 ICO at $0.001


@pytest.fixture
def priced(catalog):
    """gpt-test at 19,000 micro-USD a request on top of its token prices."""
    Model.objects.filter(id="gpt-test").update(request_price=STANDARD)
    return catalog


def usage_debits(account) -> list[int]:
    return list(
        LedgerEntry.objects.filter(account=account, kind=LedgerEntry.Kind.USAGE).values_list(
            "amount_micro_usd", flat=True
        )
    )


def test_a_plain_answer_pays_the_request_price_and_its_tokens_once(
    live_server_url, priced, customer
):
    priced.script("primary-model", Ok(text="Hi there", prompt_tokens=PROMPT, completion_tokens=3))

    response = post(live_server_url, customer.secret, {"model": "gpt-test", "messages": MESSAGES})

    assert response.status_code == 200
    cost = STANDARD + expected_cost(PROMPT, 3)
    assert response.headers["x-request-cost-micro-usd"] == str(cost)
    assert response.json()["usage"]["cost_micro_usd"] == cost
    record = wait_for_record(response.headers["x-request-id"])
    assert record.cost_micro_usd == cost
    assert record.reserved_micro_usd >= cost
    assert record.unit_prices == {"request": STANDARD, "input": 2_000_000, "output": 8_000_000}
    assert [(i.label, i.tokens, i.price, i.per_request) for i in record.line_items()] == [
        ("Per request", 1, STANDARD, True),
        ("Input", PROMPT, 2_000_000, False),
        ("Output", 3, 8_000_000, False),
    ]
    assert usage_debits(customer.account) == [-cost]
    assert_books_balance(customer.account)


def test_a_stream_carries_the_request_price_in_its_final_usage(live_server_url, priced, customer):
    priced.script("primary-model", Ok(text="Hi there", prompt_tokens=PROMPT, completion_tokens=3))

    response = post(
        live_server_url,
        customer.secret,
        {
            "model": "gpt-test",
            "messages": MESSAGES,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )

    cost = STANDARD + expected_cost(PROMPT, 3)
    usage = [e["usage"] for e in sse_events(response) if isinstance(e, dict) and e.get("usage")]
    assert usage[-1]["cost_micro_usd"] == cost
    assert wait_for_record(response.headers["x-request-id"]).cost_micro_usd == cost
    assert usage_debits(customer.account) == [-cost]
    assert_books_balance(customer.account)


def test_a_model_priced_only_per_request_is_served_and_never_billed_zero(
    live_server_url, priced, customer
):
    Model.objects.filter(id="gpt-test").update(input_price=None, output_price=None)
    priced.script("primary-model", Ok(text="Hi", prompt_tokens=PROMPT, completion_tokens=1))

    response = post(live_server_url, customer.secret, {"model": "gpt-test", "messages": MESSAGES})

    assert response.status_code == 200
    assert response.headers["x-request-cost-micro-usd"] == str(STANDARD)
    assert usage_debits(customer.account) == [-STANDARD]
    assert_books_balance(customer.account)


def test_a_client_that_leaves_before_the_first_token_pays_the_request_price_with_its_prompt(
    live_server_url, priced, customer
):
    priced.script("primary-model", Stall(3.0))

    with pytest.raises(httpx.ReadTimeout):
        post(
            live_server_url,
            customer.secret,
            {"model": "gpt-test", "messages": MESSAGES, "stream": True},
            timeout=0.5,
        )

    record = only_record(customer.account)
    assert record.status == UsageRecord.Status.CANCELLED
    assert record.cost_micro_usd == STANDARD + expected_cost(PROMPT, 0)
    assert usage_debits(customer.account) == [-record.cost_micro_usd]
    assert_books_balance(customer.account)


def test_a_call_no_route_answered_pays_nothing_not_even_the_request_price(
    live_server_url, priced, customer
):
    priced.script("primary-model", Fail(400, message="bad request"))

    response = post(live_server_url, customer.secret, {"model": "gpt-test", "messages": MESSAGES})

    assert response.status_code == 400
    assert only_record(customer.account).cost_micro_usd == 0
    assert sum(usage_debits(customer.account)) == 0
    customer.account.refresh_from_db()
    assert customer.account.balance_micro_usd == 10_000_000
    assert_books_balance(customer.account)


def test_a_fallback_pays_the_request_price_once(live_server_url, priced, customer):
    priced.script("primary-model", Fail(503))
    priced.script("mirror-model", Ok(text="Hi", prompt_tokens=PROMPT, completion_tokens=1))

    response = post(live_server_url, customer.secret, {"model": "gpt-test", "messages": MESSAGES})

    assert response.status_code == 200
    cost = STANDARD + expected_cost(PROMPT, 1)
    assert wait_for_record(response.headers["x-request-id"]).attempts == 2
    assert usage_debits(customer.account) == [-cost]
    assert_books_balance(customer.account)


def test_a_balance_below_the_request_price_is_refused_before_any_upstream_call(
    live_server_url, priced, make_customer
):
    poor = make_customer(credit_micro_usd=STANDARD - 1)

    response = post(
        live_server_url, poor.secret, {"model": "gpt-test", "messages": MESSAGES, "max_tokens": 1}
    )

    assert response.status_code == 402
    assert response.json()["error"]["code"] == "insufficient_credits"
    assert priced.requests == []
    # The refusal itself reaches the request log a moment later, at no cost.
    billed = UsageRecord.objects.filter(account=poor.account).exclude(
        status=UsageRecord.Status.REFUSED
    )
    assert not billed.exists()


def test_usage_far_above_the_hold_is_capped_at_the_hold_that_includes_the_request_price(
    live_server_url, priced, customer
):
    priced.script("primary-model", Ok(text="short", completion_tokens=5_000_000))

    response = post(
        live_server_url,
        customer.secret,
        {"model": "gpt-test", "messages": MESSAGES, "max_tokens": 5},
    )

    record = wait_for_record(response.headers["x-request-id"])
    assert record.cost_micro_usd == record.reserved_micro_usd > STANDARD
    assert usage_debits(customer.account) == [-record.cost_micro_usd]
    assert_books_balance(customer.account)


def test_the_estimate_adds_the_request_price(client, priced, warm_catalog) -> None:
    warm_catalog()

    data = client.get("/v1/estimate?model=gpt-test&input_tokens=1000&output_tokens=100").json()

    assert data["request_price_micro_usd"] == STANDARD
    assert data["cost_micro_usd"] == STANDARD + 2_000 + 800


def test_the_catalog_and_the_pricing_page_show_the_request_price(client, priced, warm_catalog):
    warm_catalog()

    entry = {e["id"]: e for e in client.get("/v1/catalog").json()["data"]}["gpt-test"]
    body = client.get("/pricing/").content.decode()

    assert entry["pricing"]["per_request"] == {"micro_usd": STANDARD, "usd": 0.019, "units": None}
    assert '<td class="num" data-label="Per request" data-micro-usd="19000">$0.019</td>' in body


def test_without_request_prices_the_pricing_page_has_no_such_column(client, catalog, warm_catalog):
    warm_catalog()

    assert "Per request" not in client.get("/pricing/").content.decode()


def test_the_request_price_is_marked_up_like_the_token_prices(
    client, settings, priced, warm_catalog
):
    settings.PRICE_MARKUP_PERCENT = 10
    warm_catalog()

    entry = {e["id"]: e for e in client.get("/v1/catalog").json()["data"]}["gpt-test"]

    assert entry["pricing"]["per_request"]["micro_usd"] == 20_900


def test_the_admin_edits_the_request_price(admin_client, catalog) -> None:
    response = admin_client.get("/admin/gateway/model/gpt-test/change/")

    assert response.status_code == 200
    assert b'name="request_price"' in response.content


def test_the_usage_page_lists_the_request_price_as_a_line_item(live_server_url, priced, customer):
    priced.script("primary-model", Ok(text="Hi", prompt_tokens=PROMPT, completion_tokens=1))
    response = post(live_server_url, customer.secret, {"model": "gpt-test", "messages": MESSAGES})
    request_id = response.headers["x-request-id"]
    wait_for_record(request_id)
    web = Client()
    web.force_login(customer.user)

    body = web.get(f"/billing/usage/{request_id}/").content.decode()

    assert '<th scope="row">Per request</th>' in body
    assert "$0.019 per request" in body


def test_loadcatalog_sets_the_request_price(tmp_path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(
        '[[provider]]\nname = "local"\nkind = "demo"\n\n'
        '[[model]]\nid = "standard"\nrequest_usd = 0.019\n'
        'routes = [{ provider = "local" }]\n'
    )

    call_command("loadcatalog", str(path), stdout=io.StringIO())

    model = Model.objects.get(id="standard")
    assert (model.request_price, model.input_price, model.is_priced) == (19_000, None, True)


@pytest.mark.parametrize("value", ["-0.01", '"cheap"', "true"])
def test_loadcatalog_refuses_a_bad_request_price(tmp_path, value: str) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(f'[[model]]\nid = "standard"\nrequest_usd = {value}\n')

    with pytest.raises(CommandError, match="request_usd must be a number >= 0"):
        call_command("loadcatalog", str(path), stdout=io.StringIO())

    assert not Model.objects.exists()


def test_the_chat_model_picker_names_the_price_per_message(settings) -> None:
    from chat.forms import price_label
    from gateway.catalog import ModelInfo

    settings.CREDIT_UNIT_NAME = "ICO"
    settings.CREDIT_UNIT_MICRO_USD = 1000
    model = ModelInfo(
        id="m",
        title="M",
        aliases=(),
        owned_by="",
        context_length=8192,
        max_output_tokens=1024,
        input_price=1_000_000,
        output_price=2_000_000,
        cached_input_price=None,
        enabled=True,
        price_version="",
        request_price=STANDARD,
    )

    assert price_label(model) == (
        "1,000 ICO ($1.00) in / 2,000 ICO ($2.00) out per 1M tokens + 19 ICO ($0.019) per message"
    )
