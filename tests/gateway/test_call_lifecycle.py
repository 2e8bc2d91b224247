"""Every path a call can take ends in one settlement that bills what was done.

Through the live server and the fake upstream: clients that leave, streams that break in
unexpected ways, routes that fail after their role chunk, work after the commit that
fails, and upstreams whose usage cannot be trusted.
"""

from __future__ import annotations

import time

import httpx
import orjson
import pytest
from django.db import OperationalError

from billing.ledger import credit_account
from billing.models import Account, LedgerEntry, UsageRecord
from gateway import calls, metering
from gateway.tokens import count_prompt, count_text
from tests.fakes.upstream import Cut, ErrorEvent, Ok, Stall, default_text, pieces
from tests.gateway.test_chat_completions_sdk import (
    MESSAGES,
    assert_books_balance,
    catalog,
    client,
    expected_cost,
    wait_for_record,
)

__all__ = ["catalog", "client"]

pytestmark = pytest.mark.django_db(transaction=True)

PROMPT = count_prompt(MESSAGES)


def only_record(account: Account) -> UsageRecord:
    """The account's one usage record, once the server has settled it."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        records = list(UsageRecord.objects.filter(account=account))
        if records:
            assert len(records) == 1, records
            return records[0]
        time.sleep(0.02)
    raise AssertionError("no usage record")


def post(url: str, secret: str, body: dict, timeout: float = 10) -> httpx.Response:
    return httpx.post(
        url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {secret}"},
        json=body,
        timeout=timeout,
    )


def sse_events(response: httpx.Response) -> list[object]:
    return [
        line[6:] if line == "data: [DONE]" else orjson.loads(line[6:])
        for line in response.text.splitlines()
        if line.startswith("data: ")
    ]


@pytest.mark.parametrize(
    ("stream", "stall"),
    [
        (False, Stall(3.0)),
        (True, Stall(3.0)),
        (True, Stall(3.0, after_chunks=1)),  # only the role chunk came
    ],
    ids=["plain", "stream", "stream-after-role-chunk"],
)
def test_a_client_that_leaves_before_the_first_chunk_pays_for_its_prompt(
    live_server_url, catalog, customer, stream, stall
):
    catalog.script("primary-model", stall)

    with pytest.raises(httpx.ReadTimeout):
        post(
            live_server_url,
            customer.secret,
            {"model": "gpt-test", "messages": MESSAGES, "stream": stream},
            timeout=0.5,
        )

    record = only_record(customer.account)
    assert record.status == UsageRecord.Status.CANCELLED
    assert (record.prompt_tokens, record.completion_tokens) == (PROMPT, 0)
    assert record.cost_micro_usd == expected_cost(PROMPT, 0) > 0
    assert_books_balance(customer.account)


@pytest.mark.parametrize("failure", [Cut(after_chunks=1), ErrorEvent(after_chunks=1)])
def test_a_route_that_fails_after_only_its_role_chunk_falls_back(
    client, catalog, customer, failure
):
    catalog.script("primary-model", failure)

    raw = client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=MESSAGES, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)

    assert text == "".join(pieces(default_text("mirror-model")))
    assert len(catalog.requests_for("primary-model")) == 1
    record = wait_for_record(raw.headers["x-request-id"])
    assert (record.status, record.provider, record.attempts) == ("ok", "mirror", 2)
    assert record.cost_micro_usd == expected_cost(record.prompt_tokens, record.completion_tokens)
    assert_books_balance(customer.account)


def test_a_stream_that_breaks_on_any_exception_is_an_error_billed_for_what_was_relayed(
    live_server_url, catalog, customer, monkeypatch
):
    catalog.script("primary-model", Ok(text="one two three four five six"))
    real = metering.chunk_text
    seen = {"chunks": 0}

    def breaks_on_the_fourth_chunk(chunk):
        seen["chunks"] += 1
        if seen["chunks"] == 4:
            raise RuntimeError("a bug in the relay")
        return real(chunk)

    monkeypatch.setattr(metering, "chunk_text", breaks_on_the_fourth_chunk)

    response = post(
        live_server_url,
        customer.secret,
        {"model": "gpt-test", "messages": MESSAGES, "stream": True},
    )

    events = sse_events(response)
    assert events[-1]["error"]["code"] == "internal_error"
    relayed = "".join(
        e["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e.get("choices")
    )
    assert relayed == "one two "
    record = wait_for_record(response.headers["x-request-id"])
    assert record.status == UsageRecord.Status.ERROR
    assert record.completion_tokens == count_text(relayed)
    assert record.cost_micro_usd == expected_cost(PROMPT, count_text(relayed))
    assert_books_balance(customer.account)


@pytest.mark.parametrize("stream", [False, True])
def test_work_after_the_commit_that_fails_never_turns_a_billed_answer_into_an_error(
    live_server_url, catalog, customer, monkeypatch, stream
):
    def broken(record):
        raise RuntimeError("metrics are down")

    monkeypatch.setattr(calls.metrics, "completion_settled", broken)
    calls._last_used_written.clear()
    monkeypatch.setattr(
        calls.ApiKey.objects, "filter", lambda **kw: (_ for _ in ()).throw(RuntimeError("no db"))
    )

    response = post(
        live_server_url,
        customer.secret,
        {"model": "gpt-test", "messages": MESSAGES, "stream": stream},
    )

    assert response.status_code == 200
    if stream:
        assert sse_events(response)[-1] == "[DONE]"
    else:
        assert int(response.headers["X-Request-Cost-Micro-Usd"]) > 0
    record = wait_for_record(response.headers["x-request-id"])
    assert record.status == UsageRecord.Status.OK
    assert record.cost_micro_usd > 0
    assert_books_balance(customer.account)


@pytest.mark.parametrize("stream", [False, True])
def test_usage_of_zero_while_text_was_delivered_is_replaced_by_our_count(
    client, catalog, customer, stream
):
    text = "counted by the gateway itself"
    catalog.script("primary-model", Ok(text=text, prompt_tokens=0, completion_tokens=0))

    raw = client.chat.completions.with_raw_response.create(
        model="gpt-test",
        messages=MESSAGES,
        stream=stream,
        **({"stream_options": {"include_usage": True}} if stream else {}),
    )
    answer = list(raw.parse()) if stream else raw.parse()

    usage = answer[-1].usage if stream else answer.usage
    record = wait_for_record(raw.headers["x-request-id"])
    assert (record.prompt_tokens, record.completion_tokens) == (PROMPT, count_text(text))
    assert usage.completion_tokens == record.completion_tokens
    assert record.cost_micro_usd == expected_cost(PROMPT, count_text(text))
    assert_books_balance(customer.account)


def test_an_x_max_cost_header_cannot_raise_the_keys_own_cap(
    live_server_url, catalog, make_customer
):
    capped = make_customer(max_cost_per_request_micro_usd=100)

    response = httpx.post(
        live_server_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {capped.secret}", "X-Max-Cost-Micro-Usd": "999999999"},
        json={"model": "gpt-test", "messages": MESSAGES, "max_tokens": 500},
        timeout=10,
    )

    assert response.status_code == 402
    assert response.json()["error"]["code"] == "max_cost_exceeded"
    assert "cap of 100 micro-USD" in response.json()["error"]["message"]
    assert not UsageRecord.objects.settled().filter(account=capped.account).exists()


def test_an_x_max_cost_header_can_lower_the_keys_cap(live_server_url, catalog, make_customer):
    capped = make_customer(max_cost_per_request_micro_usd=1_000_000)

    response = httpx.post(
        live_server_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {capped.secret}", "X-Max-Cost-Micro-Usd": "10"},
        json={"model": "gpt-test", "messages": MESSAGES, "max_tokens": 500},
        timeout=10,
    )

    assert response.status_code == 402
    assert "cap of 10 micro-USD" in response.json()["error"]["message"]


def test_a_client_that_leaves_a_plain_request_the_upstream_answered_late_is_billed_once(
    live_server_url, catalog, customer
):
    catalog.script("primary-model", Ok(delay=1.0))

    with pytest.raises(httpx.ReadTimeout):
        post(live_server_url, customer.secret, {"model": "gpt-test", "messages": MESSAGES}, 0.3)

    record = only_record(customer.account)
    assert record.status == UsageRecord.Status.CANCELLED
    assert record.cost_micro_usd == expected_cost(PROMPT, 0)
    assert_books_balance(customer.account)


def test_requests_refused_for_money_do_not_use_up_the_rate_limit(
    live_server_url, catalog, make_customer
):
    poor = make_customer(credit_micro_usd=0, rpm_limit=2, tpm_limit=100_000)
    body = {"model": "gpt-test", "messages": MESSAGES, "max_tokens": 10}

    refused = [post(live_server_url, poor.secret, body) for _ in range(4)]

    assert [r.status_code for r in refused] == [402] * 4
    assert refused[-1].headers["x-ratelimit-remaining-requests"] == "2"
    credit_account(
        account=poor.account, amount=1_000_000, kind="adjustment", idempotency_key="top-up"
    )
    assert [post(live_server_url, poor.secret, body).status_code for _ in range(3)] == [
        200,
        200,
        429,
    ]


@pytest.fixture
def database_refuses_settlements(monkeypatch, settings, tmp_path):
    """settle() raises OperationalError for the next `refusals["left"]` calls, as it does
    while PostgreSQL is away; the journal lives in this test's directory."""
    from billing import journal

    settings.SETTLEMENT_JOURNAL_DIR = tmp_path / "journal"
    monkeypatch.setattr(journal, "RETRY_DELAYS", (0.01, 0.01, 0.01))
    refusals = {"left": 0}
    real = journal.settle

    def refusing(**kwargs):
        if refusals["left"] > 0:
            refusals["left"] -= 1
            raise OperationalError("the database is away")
        return real(**kwargs)

    monkeypatch.setattr(journal, "settle", refusing)
    return refusals


@pytest.mark.parametrize("stream", [False, True])
def test_a_settlement_the_database_refuses_once_is_retried_and_billed_as_answered(
    live_server_url, catalog, customer, database_refuses_settlements, stream
):
    database_refuses_settlements["left"] = 1

    response = post(
        live_server_url,
        customer.secret,
        {"model": "gpt-test", "messages": MESSAGES, "stream": stream},
    )

    assert response.status_code == 200
    record = wait_for_record(response.headers["x-request-id"])
    assert record.status == UsageRecord.Status.OK
    assert record.cost_micro_usd == expected_cost(record.prompt_tokens, record.completion_tokens)
    assert record.cost_micro_usd > 0
    assert_books_balance(customer.account)


@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_settled_during_a_database_outage_is_delivered_and_billed_once_it_is_back(
    live_server_url, catalog, customer, database_refuses_settlements, stream
):
    from billing.journal import replay_journal

    database_refuses_settlements["left"] = 4  # the first try and every retry

    response = post(
        live_server_url,
        customer.secret,
        {"model": "gpt-test", "messages": MESSAGES, "stream": stream},
    )

    assert response.status_code == 200
    if stream:
        assert sse_events(response)[-1] == "[DONE]"
    else:
        assert response.json()["usage"]["cost_micro_usd"] > 0
    request_id = response.headers["x-request-id"]
    assert not UsageRecord.objects.filter(request_id=request_id).exists()
    deadline = time.monotonic() + 10
    while not UsageRecord.objects.filter(request_id=request_id).exists():
        assert time.monotonic() < deadline, "the journal was never replayed"
        time.sleep(0.05)
    assert replay_journal() == 0
    record = UsageRecord.objects.get(request_id=request_id)
    assert record.status == UsageRecord.Status.OK
    assert record.cost_micro_usd == expected_cost(record.prompt_tokens, record.completion_tokens)
    assert LedgerEntry.objects.filter(idempotency_key=f"usage:{request_id}").count() == 1
    assert_books_balance(customer.account)


@pytest.mark.parametrize("stream", [False, True])
def test_usage_far_above_what_was_relayed_is_capped_at_the_hold_and_flagged(
    live_server_url, catalog, customer, stream
):
    catalog.script("primary-model", Ok(text="short", completion_tokens=5_000_000))

    response = post(
        live_server_url,
        customer.secret,
        {"model": "gpt-test", "messages": MESSAGES, "max_tokens": 50, "stream": stream},
    )

    assert response.status_code == 200
    record = wait_for_record(response.headers["x-request-id"])
    assert record.cost_micro_usd == record.reserved_micro_usd > 0
    uncharged = expected_cost(record.prompt_tokens, 5_000_000) - record.cost_micro_usd
    assert record.uncharged_micro_usd == uncharged
    assert {"usage_suspect", "capped"} <= set(record.flags.split())
    assert_books_balance(customer.account)
