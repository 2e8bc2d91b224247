"""`Idempotency-Key` on POST /v1: a retry is answered from the first call, never billed twice.

Through the live server with the official `openai` SDK and httpx, against the fake
upstream: the upstream is called once per key, the account is charged once, and the
retry gets the first answer byte for byte.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta

import httpx
import openai
import orjson
import pytest
from django.utils import timezone

from billing.ledger import credit_account
from billing.models import LedgerEntry, UsageRecord
from gateway.models import IdempotentRequest, Model, Provider, Route
from tests.fakes.upstream import Ok, Stall

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = [{"role": "user", "content": "Say something deterministic."}]
BODY = {"model": "gpt-test", "messages": MESSAGES, "max_tokens": 50}
STREAM_BODY = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
UPSTREAM = "primary-model"


@pytest.fixture
def catalog(fake_upstream):
    provider = Provider.objects.create(
        name="primary",
        kind="openai",
        base_url=fake_upstream.url + "/v1",
        api_key="k",
        timeout_seconds=5,
    )
    model = Model.objects.create(
        id="gpt-test",
        context_length=8_000,
        max_output_tokens=1_000,
        input_price=2_000_000,
        output_price=8_000_000,
    )
    Route.objects.create(model=model, provider=provider, upstream_model=UPSTREAM)
    return fake_upstream


@pytest.fixture
def client(live_server_url, customer, catalog):
    return openai.OpenAI(
        base_url=live_server_url + "/v1", api_key=customer.secret, max_retries=0, timeout=10
    )


def post(url: str, secret: str, body: dict | bytes, key: str | None = "key-1") -> httpx.Response:
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return httpx.post(url + "/v1/chat/completions", content=content, headers=headers, timeout=10)


def charges(account) -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(account=account, kind=LedgerEntry.Kind.USAGE))


def wait_until_stored(account, key: str) -> IdempotentRequest:
    """A stream is stored as its last byte leaves; the client may have it a moment sooner."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        entry = IdempotentRequest.objects.filter(account=account, key=key).first()
        if entry is not None and entry.state == IdempotentRequest.State.DONE:
            return entry
        time.sleep(0.02)
    raise AssertionError(f"idempotency key {key!r} was never stored as done")


def wait_until_claimed(account, key: str) -> None:
    deadline = time.monotonic() + 5
    while not IdempotentRequest.objects.filter(account=account, key=key).exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"idempotency key {key!r} was never claimed")
        time.sleep(0.01)


def test_a_retry_with_the_same_key_is_answered_from_the_first_call_and_billed_once(
    client, customer, catalog
):
    key = {"Idempotency-Key": "retry-1"}
    first = client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=MESSAGES, max_tokens=50, extra_headers=key
    )
    second = client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=MESSAGES, max_tokens=50, extra_headers=key
    )

    assert len(catalog.requests_for(UPSTREAM)) == 1
    assert second.http_response.content == first.http_response.content
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert second.headers["x-request-id"] == first.headers["x-request-id"]
    cost = first.headers["x-request-cost-micro-usd"]
    assert second.headers["x-request-cost-micro-usd"] == cost
    record = UsageRecord.objects.get(account=customer.account)
    assert record.request_id == first.headers["x-request-id"]
    assert [e.amount_micro_usd for e in charges(customer.account)] == [-int(cost)]
    balance = customer.account.balance_micro_usd
    customer.account.refresh_from_db()
    assert customer.account.balance_micro_usd == balance - int(cost)
    assert customer.account.held_micro_usd == 0


def test_a_streamed_retry_gets_the_same_stream_and_is_billed_once(client, customer, catalog):
    def streamed() -> list[dict]:
        stream = client.chat.completions.create(
            model="gpt-test",
            messages=MESSAGES,
            max_tokens=50,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"Idempotency-Key": "stream-1"},
        )
        return [chunk.model_dump() for chunk in stream]

    first = streamed()
    wait_until_stored(customer.account, "stream-1")
    second = streamed()

    assert second == first
    assert first[-1]["usage"]["cost_micro_usd"] > 0
    assert len(catalog.requests_for(UPSTREAM)) == 1
    assert UsageRecord.objects.filter(account=customer.account).count() == 1
    assert [e.amount_micro_usd for e in charges(customer.account)] == [
        -first[-1]["usage"]["cost_micro_usd"]
    ]


def test_a_streamed_replay_is_the_same_bytes(live_server_url, customer, catalog):
    first = post(live_server_url, customer.secret, STREAM_BODY)
    wait_until_stored(customer.account, "key-1")
    second = post(live_server_url, customer.secret, STREAM_BODY)

    assert first.status_code == second.status_code == 200
    assert first.content.endswith(b"data: [DONE]\n\n")
    assert second.content == first.content
    assert second.headers["content-type"].startswith("text/event-stream")
    assert second.headers["idempotent-replayed"] == "true"
    assert second.headers["x-request-id"] == first.headers["x-request-id"]
    assert len(catalog.requests_for(UPSTREAM)) == 1
    assert len(charges(customer.account)) == 1


def test_a_different_body_under_the_same_key_is_refused_with_422_and_not_billed(
    client, customer, catalog
):
    key = {"Idempotency-Key": "reused"}
    client.chat.completions.create(model="gpt-test", messages=MESSAGES, extra_headers=key)

    with pytest.raises(openai.UnprocessableEntityError) as refused:
        client.chat.completions.create(
            model="gpt-test",
            messages=[{"role": "user", "content": "Something else entirely."}],
            extra_headers=key,
        )

    assert refused.value.status_code == 422
    assert refused.value.code == "idempotency_key_reused"
    assert refused.value.body["type"] == "invalid_request_error"
    assert refused.value.body["param"] == "Idempotency-Key"
    assert len(catalog.requests_for(UPSTREAM)) == 1
    assert len(charges(customer.account)) == 1


def test_a_retry_while_the_first_still_streams_gets_409_then_the_first_answer(
    live_server_url, client, customer, catalog
):
    catalog.script(UPSTREAM, Stall(1.0, after_chunks=2))
    url = live_server_url + "/v1/chat/completions"
    headers = {"Authorization": f"Bearer {customer.secret}", "Idempotency-Key": "busy"}
    body = orjson.dumps(STREAM_BODY)
    with httpx.stream("POST", url, content=body, headers=headers, timeout=10) as first:
        assert first.status_code == 200
        parts = first.iter_bytes()
        received = next(parts)
        busy = post(live_server_url, customer.secret, STREAM_BODY, key="busy")
        received += b"".join(parts)

    assert busy.status_code == 409
    assert busy.headers["retry-after"] == "1"
    error = busy.json()["error"]
    assert error["code"] == "idempotency_key_in_use"
    assert error["param"] == "Idempotency-Key"
    assert busy.headers["x-request-id"] != first.headers["x-request-id"]
    wait_until_stored(customer.account, "busy")
    replay = post(live_server_url, customer.secret, STREAM_BODY, key="busy")
    assert replay.content == received
    assert len(catalog.requests_for(UPSTREAM)) == 1
    assert len(charges(customer.account)) == 1


async def test_concurrent_first_tries_run_the_upstream_once(live_server_url, customer, catalog):
    catalog.script(UPSTREAM, Ok(delay=1.5))
    headers = {
        "Authorization": f"Bearer {customer.secret}",
        "Content-Type": "application/json",
        "Idempotency-Key": "race",
    }
    body = orjson.dumps(BODY)
    async with httpx.AsyncClient(base_url=live_server_url, timeout=10) as http:
        answers = await asyncio.gather(
            *(http.post("/v1/chat/completions", content=body, headers=headers) for _ in range(6))
        )

    fresh = [a for a in answers if a.status_code == 200 and "idempotent-replayed" not in a.headers]
    busy = [a for a in answers if a.status_code == 409]
    replayed = [a for a in answers if a.headers.get("idempotent-replayed") == "true"]
    assert len(fresh) == 1
    assert busy, "no try arrived while the first was running"
    assert len(fresh) + len(busy) + len(replayed) == len(answers)
    assert all(a.json()["error"]["code"] == "idempotency_key_in_use" for a in busy)
    assert len(catalog.requests_for(UPSTREAM)) == 1
    count = await UsageRecord.objects.filter(account=customer.account).acount()
    assert count == 1


def test_a_non_streamed_retry_while_the_first_runs_gets_409(live_server_url, customer, catalog):
    catalog.script(UPSTREAM, Ok(delay=1.0))
    answers: list[httpx.Response] = []
    first = threading.Thread(
        target=lambda: answers.append(post(live_server_url, customer.secret, BODY, key="slow"))
    )
    first.start()
    try:
        wait_until_claimed(customer.account, "slow")
        busy = post(live_server_url, customer.secret, BODY, key="slow")
    finally:
        first.join(timeout=10)

    assert busy.status_code == 409
    assert busy.json()["error"]["code"] == "idempotency_key_in_use"
    assert answers[0].status_code == 200
    replay = post(live_server_url, customer.secret, BODY, key="slow")
    assert replay.content == answers[0].content
    assert len(catalog.requests_for(UPSTREAM)) == 1


def test_another_accounts_same_key_is_independent(live_server_url, make_customer, catalog):
    alice, bob = make_customer(), make_customer()

    to_alice = post(live_server_url, alice.secret, BODY, key="shared")
    to_bob = post(live_server_url, bob.secret, BODY, key="shared")

    assert to_alice.status_code == to_bob.status_code == 200
    assert "idempotent-replayed" not in to_bob.headers
    assert to_bob.headers["x-request-id"] != to_alice.headers["x-request-id"]
    assert len(catalog.requests_for(UPSTREAM)) == 2
    assert len(charges(alice.account)) == len(charges(bob.account)) == 1


def test_after_24_hours_the_same_key_runs_again(live_server_url, customer, catalog):
    first = post(live_server_url, customer.secret, BODY, key="daily")
    IdempotentRequest.objects.filter(key="daily").update(
        created_at=timezone.now() - timedelta(hours=24, seconds=1)
    )

    again = post(live_server_url, customer.secret, BODY, key="daily")

    assert again.status_code == 200
    assert "idempotent-replayed" not in again.headers
    assert again.headers["x-request-id"] != first.headers["x-request-id"]
    assert len(catalog.requests_for(UPSTREAM)) == 2
    assert len(charges(customer.account)) == 2
    entry = IdempotentRequest.objects.get(key="daily")
    assert entry.request_id == again.headers["x-request-id"]
    replay = post(live_server_url, customer.secret, BODY, key="daily")
    assert replay.headers["x-request-id"] == again.headers["x-request-id"]
    assert len(catalog.requests_for(UPSTREAM)) == 2


def test_a_first_try_refused_for_money_lets_a_later_retry_run(
    live_server_url, make_customer, catalog
):
    poor = make_customer(credit_micro_usd=10)

    refused = post(live_server_url, poor.secret, BODY, key="top-up")
    assert refused.status_code == 402
    assert not IdempotentRequest.objects.filter(key="top-up").exists()
    credit_account(
        account=poor.account, amount=5_000_000, kind="adjustment", idempotency_key="top-up"
    )
    retried = post(live_server_url, poor.secret, BODY, key="top-up")

    assert retried.status_code == 200
    assert "idempotent-replayed" not in retried.headers
    assert len(catalog.requests_for(UPSTREAM)) == 1
    assert len(charges(poor.account)) == 1


def test_a_corrected_retry_after_a_400_runs_under_the_same_key(live_server_url, customer, catalog):
    wrong = post(live_server_url, customer.secret, {**BODY, "temperature": 9}, key="fix")
    assert wrong.status_code == 400

    fixed = post(live_server_url, customer.secret, BODY, key="fix")

    assert fixed.status_code == 200
    assert len(catalog.requests_for(UPSTREAM)) == 1


def test_a_client_that_leaves_mid_stream_gets_what_was_produced_on_retry(
    live_server_url, gateway_server, customer, catalog
):
    catalog.script(UPSTREAM, Stall(2.0, after_chunks=2))
    url = live_server_url + "/v1/chat/completions"
    headers = {"Authorization": f"Bearer {customer.secret}", "Idempotency-Key": "left"}
    with httpx.stream("POST", url, content=orjson.dumps(STREAM_BODY), headers=headers) as cut:
        received = next(cut.iter_bytes())
    assert catalog.wait_for_disconnects(1)
    gateway_server.wait_until_idle()

    replay = post(live_server_url, customer.secret, STREAM_BODY, key="left")

    assert replay.status_code == 200
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.content.startswith(received)
    assert b"[DONE]" not in replay.content
    record = UsageRecord.objects.get(account=customer.account)
    assert record.status == UsageRecord.Status.CANCELLED
    assert record.cost_micro_usd > 0
    assert len(charges(customer.account)) == 1
    assert len(catalog.requests_for(UPSTREAM)) == 1


@pytest.mark.parametrize("key", ["", "k" * 256])
def test_a_key_that_is_empty_or_longer_than_255_characters_is_refused(
    live_server_url, customer, catalog, key
):
    refused = post(live_server_url, customer.secret, BODY, key=key)

    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["param"] == "Idempotency-Key"
    assert error["code"] == "invalid_idempotency_key"
    assert catalog.requests == []


def test_a_key_of_255_characters_is_accepted(live_server_url, customer, catalog):
    accepted = post(live_server_url, customer.secret, BODY, key="k" * 255)

    assert accepted.status_code == 200
    assert IdempotentRequest.objects.get().key == "k" * 255


def test_without_the_header_every_request_runs_and_nothing_is_stored(
    live_server_url, customer, catalog
):
    first = post(live_server_url, customer.secret, BODY, key=None)
    second = post(live_server_url, customer.secret, BODY, key=None)

    assert first.status_code == second.status_code == 200
    assert len(catalog.requests_for(UPSTREAM)) == 2
    assert not IdempotentRequest.objects.exists()


def test_the_sdk_waits_out_a_409_and_gets_the_first_answer(live_server_url, customer, catalog):
    catalog.script(UPSTREAM, Ok(delay=0.5))
    retrying = openai.OpenAI(
        base_url=live_server_url + "/v1", api_key=customer.secret, max_retries=2, timeout=10
    )
    key = {"Idempotency-Key": "sdk-retry"}
    answers: list = []

    def ask() -> None:
        answers.append(
            retrying.chat.completions.with_raw_response.create(
                model="gpt-test", messages=MESSAGES, extra_headers=key
            )
        )

    first = threading.Thread(target=ask)
    first.start()
    try:
        wait_until_claimed(customer.account, "sdk-retry")
        second = retrying.chat.completions.with_raw_response.create(
            model="gpt-test", messages=MESSAGES, extra_headers=key
        )
    finally:
        first.join(timeout=10)

    assert second.retries_taken >= 1
    assert second.headers["idempotent-replayed"] == "true"
    assert second.http_response.content == answers[0].http_response.content
    assert len(catalog.requests_for(UPSTREAM)) == 1
    assert len(charges(customer.account)) == 1
