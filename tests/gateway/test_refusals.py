"""Refused calls leave a usage record (status refused, the HTTP status and error code,
no cost, no hold), through the real server and the official SDKs."""

from __future__ import annotations

import dataclasses
import time

import anthropic
import openai
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.models import Hold, LedgerEntry, UsageRecord
from gateway import refusals
from gateway.models import Model, Provider, Route

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = [{"role": "user", "content": "Hello"}]


@pytest.fixture
def catalog(fake_upstream):
    provider = Provider.objects.create(
        name="primary", kind="openai", base_url=fake_upstream.url + "/v1", api_key="k"
    )
    prices = {"input_price": 2_000_000, "output_price": 8_000_000}
    for model_id in ("gpt-test", "other-test"):
        model = Model.objects.create(
            id=model_id, context_length=8_000, max_output_tokens=1_000, **prices
        )
        Route.objects.create(model=model, provider=provider, upstream_model="up")
    return fake_upstream


def sdk(live_server_url, secret):
    return openai.OpenAI(
        base_url=live_server_url + "/v1", api_key=secret, max_retries=0, timeout=10
    )


def refused_record(request_id: str) -> UsageRecord:
    """Refusals are written by the worker just after the answer: wait for it."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if record := UsageRecord.objects.filter(request_id=request_id).first():
            return record
        time.sleep(0.05)
    raise AssertionError(f"no record of the refused request {request_id}")


def assert_refusal_cost_nothing(customer, record, status, code):
    assert record.status == UsageRecord.Status.REFUSED
    assert (record.http_status, record.error_code) == (status, code)
    assert record.cost_micro_usd == 0 and record.reserved_micro_usd == 0
    assert record.api_key_id == customer.api_key.pk
    balance = customer.account.balance_micro_usd
    customer.account.refresh_from_db()
    assert customer.account.balance_micro_usd == balance
    assert customer.account.held_micro_usd == 0
    assert not Hold.objects.exists()
    assert not LedgerEntry.objects.filter(kind="usage").exists()
    assert UsageRecord.objects.filter(request_id=record.request_id).count() == 1


@pytest.mark.parametrize(
    ("key_fields", "credit", "call", "status", "code"),
    [
        ({}, 10, {"model": "gpt-test"}, 402, "insufficient_credits"),
        ({}, 10_000_000, {"model": "nope-model"}, 404, "model_not_found"),
        (
            {"allowed_models": ["other-test"]},
            10_000_000,
            {"model": "gpt-test"},
            403,
            "model_not_allowed",
        ),
        ({"spend_cap_micro_usd": 5}, 10_000_000, {"model": "gpt-test"}, 402, "spend_cap_exceeded"),
        ({}, 10_000_000, {"model": "gpt-test", "max_tokens": 999_999}, 400, "invalid_value"),
    ],
    ids=["no-credit", "unknown-model", "not-allowed", "spend-cap", "too-many-tokens"],
)
def test_a_refused_call_is_logged_once_and_costs_nothing(
    live_server_url, catalog, make_customer, key_fields, credit, call, status, code
):
    customer = make_customer(credit_micro_usd=credit, **key_fields)

    with pytest.raises(openai.APIStatusError) as refused:
        sdk(live_server_url, customer.secret).chat.completions.create(messages=MESSAGES, **call)

    assert refused.value.status_code == status
    record = refused_record(refused.value.response.headers["x-request-id"])
    assert_refusal_cost_nothing(customer, record, status, code)
    assert record.model == call["model"]
    assert record.source == UsageRecord.Source.API
    assert catalog.requests == []


def test_a_rate_limited_call_is_logged_with_its_429(live_server_url, catalog, make_customer):
    customer = make_customer(rpm_limit=1)
    client = sdk(live_server_url, customer.secret)
    client.chat.completions.create(model="gpt-test", messages=MESSAGES)

    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True)

    record = refused_record(refused.value.response.headers["x-request-id"])
    assert record.stream is True
    assert record.status == UsageRecord.Status.REFUSED
    assert (record.http_status, record.error_code) == (429, "rate_limit_exceeded")
    assert record.cost_micro_usd == 0
    assert UsageRecord.objects.filter(status="ok").count() == 1


def test_a_refusal_through_the_messages_door_is_logged_with_its_protocol(
    live_server_url, catalog, customer
):
    client = anthropic.Anthropic(
        base_url=live_server_url, api_key=customer.secret, max_retries=0, timeout=10
    )

    with pytest.raises(anthropic.NotFoundError) as refused:
        client.messages.create(model="nope-model", max_tokens=50, messages=MESSAGES)

    record = refused_record(refused.value.response.headers["x-request-id"])
    assert record.source == UsageRecord.Source.MESSAGES
    assert (record.http_status, record.error_code) == (404, "model_not_found")


def test_a_flood_of_refusals_logs_at_most_the_limit_per_key_a_minute(
    live_server_url, catalog, make_customer, settings
):
    settings.REFUSALS_LOGGED_PER_KEY_PER_MINUTE = 3
    customer = make_customer()
    client = sdk(live_server_url, customer.secret)
    answered = []
    for _ in range(8):
        with pytest.raises(openai.NotFoundError) as refused:
            client.chat.completions.create(model="nope-model", messages=MESSAGES)
        answered.append(refused.value.response.headers["x-request-id"])

    refused_record(answered[2])
    time.sleep(refusals.FLUSH_SECONDS * 3)  # anything more would have been written by now
    logged = set(UsageRecord.objects.values_list("request_id", flat=True))
    assert logged == set(answered[:3])


def test_refusals_are_written_in_one_statement_per_batch(customer):
    info = _key_info(customer)
    error = refusals.GatewayError(404, "no such model", code="model_not_found")
    for n in range(5):
        refusals.note(
            key=info, body={"model": "m"}, request_id=f"req_{n}", source="api", error=error
        )

    # note() outside an event loop writes at once; each call here flushed its own row.
    assert UsageRecord.objects.filter(status="refused").count() == 5
    refusals._queue.extend(
        UsageRecord(request_id=f"req_b{n}", account_id=customer.account.pk, model="m")
        for n in range(5)
    )
    with CaptureQueriesContext(connection) as queries:
        assert refusals.flush() == 5

    inserts = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("INSERT")]
    assert len(inserts) == 1
    assert UsageRecord.objects.filter(request_id__startswith="req_b").count() == 5


def test_a_second_refusal_with_the_same_request_id_is_ignored(customer):
    info = _key_info(customer)
    error = refusals.GatewayError(404, "no such model", code="model_not_found")

    refusals.note(key=info, body={"model": "m"}, request_id="req_same", source="api", error=error)
    refusals.note(key=info, body={"model": "m"}, request_id="req_same", source="api", error=error)

    assert UsageRecord.objects.filter(request_id="req_same").count() == 1


def test_a_refusal_that_cannot_be_written_never_raises(customer):
    info = _key_info(customer)
    error = refusals.GatewayError(404, "no such model", code="model_not_found")
    info_of_a_deleted_account = dataclasses.replace(info, account_id=999_999)

    refusals.note(
        key=info_of_a_deleted_account, body=[], request_id="req_x", source="api", error=error
    )

    assert not UsageRecord.objects.filter(request_id="req_x").exists()


def _key_info(customer):
    from gateway.auth import _load

    info = _load(customer.api_key.prefix)
    assert info is not None
    return info


def test_a_refused_request_can_be_looked_up_by_its_id(live_server_url, catalog, customer):
    import httpx

    refused = httpx.post(
        live_server_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {customer.secret}"},
        json={"model": "nope-model", "messages": MESSAGES},
        timeout=10,
    )
    request_id = refused.headers["x-request-id"]
    refused_record(request_id)

    found = httpx.get(
        f"{live_server_url}/v1/generation/{request_id}",
        headers={"Authorization": f"Bearer {customer.secret}"},
        timeout=10,
    )

    assert found.status_code == 200
    assert (found.json()["status"], found.json()["cost_micro_usd"]) == ("refused", 0)
