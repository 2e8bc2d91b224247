"""A large new prompt is held for by its bound, not counted (gateway.tokens.PromptSize).

Through the live server and the fake upstream (whose prompt tokens are characters // 4
+ 1, so they differ from o200k's count and from the bound): the hold, what is billed,
and each reason the gateway counts after all (the context check, credit it cannot
spare, the per-request cap, a TPM limit the bound does not fit, an upstream that
reports no usage, a client that leaves), every time billed once, never past the hold.

The live server runs in this process, so the tests count prompts without keeping their
counts (tests/gateway/prompts.py), and check that each prompt is new to the gateway when
it is sent.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import anthropic
import httpx
import pytest

from billing.models import Hold, UsageRecord
from gateway import calls, tokens
from gateway.catalog import get_catalog
from gateway.models import Model, Provider, Route, RouterProfile, RouterRule
from gateway.tokens import count_prompt
from tests.fakes.upstream import Ok, Stall
from tests.fakes.wire import prompt_tokens_for
from tests.gateway.prompts import bound_of, count_unkept, fresh_text
from tests.gateway.test_call_lifecycle import only_record
from tests.gateway.test_chat_completions_sdk import assert_books_balance, catalog, wait_for_record

__all__ = ["catalog"]

pytestmark = pytest.mark.django_db(transaction=True)

MAX_TOKENS = 500
INPUT_PRICE, OUTPUT_PRICE = 2_000_000, 8_000_000


@pytest.fixture
def wide(catalog: Any) -> Any:
    """wide-test: a 200k-token window on the fake upstream's OpenAI protocol."""
    model = Model.objects.create(
        id="wide-test",
        title="Wide Test",
        context_length=200_000,
        max_output_tokens=4_000,
        input_price=INPUT_PRICE,
        output_price=OUTPUT_PRICE,
    )
    Route.objects.create(
        model=model, provider=Provider.objects.get(name="primary"), upstream_model="wide-up"
    )
    return catalog


def wide_body(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """A chat completions body for wide-test with MAX_TOKENS of output."""
    return {"model": "wide-test", "messages": messages, "max_tokens": MAX_TOKENS}


def worst_case(model_id: str, prompt: int, output: int = MAX_TOKENS) -> int:
    return calls.worst_case_cost(get_catalog().resolve(model_id), prompt, output)


def assert_never_counted(body: dict[str, Any]) -> None:
    """The prompt is new to the gateway (no test counted it in this process first)."""
    assert all(tokens._kept_count(message["content"]) is None for message in body["messages"])


def post(url: str, secret: str, body: dict[str, Any], timeout: float = 10) -> httpx.Response:
    assert_never_counted(body)
    return httpx.post(
        url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {secret}"},
        json=body,
        timeout=timeout,
    )


def answered_with_its_hold(url: str, customer: Any, body: dict[str, Any]) -> tuple[Any, int]:
    """The response to `body` (whose upstream stalls first) and the hold it had meanwhile."""
    assert_never_counted(body)
    answer: dict[str, httpx.Response] = {}
    sending = threading.Thread(
        target=lambda: answer.setdefault("response", post(url, customer.secret, body))
    )
    sending.start()
    held = None
    deadline = time.monotonic() + 5
    while held is None and time.monotonic() < deadline:
        held = (
            Hold.objects.filter(account=customer.account)
            .values_list("amount_micro_usd", flat=True)
            .first()
        )
        time.sleep(0.01)
    sending.join(10)
    assert held is not None, "no hold was seen while the upstream stalled"
    return answer["response"], held


def assert_refused(
    upstream: Any, response: httpx.Response, status: int, code: str, says: str
) -> None:
    """Refused with `status` and `code`, a message that `says` so, before any upstream."""
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert says in error["message"]
    assert upstream.requests_for("wide-up") == []


def cost(prompt: int, completion: int) -> int:
    return -(-(prompt * INPUT_PRICE + completion * OUTPUT_PRICE) // 1_000_000)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_large_new_prompt_is_held_by_its_bound_and_billed_once_by_the_upstreams_usage(
    live_server_url, wide, customer, stream
):
    text = fresh_text(60_000)
    messages = [{"role": "user", "content": text}]
    bound = bound_of(messages)
    wide.script("wide-up", Stall(0.5))
    body = wide_body(messages)
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})

    response, held = answered_with_its_hold(live_server_url, customer, body)

    assert response.status_code == 200, response.text
    assert held == worst_case("wide-test", bound)
    assert tokens._kept_count(text) is None, "the prompt was tokenized"
    record = wait_for_record(response.headers["x-request-id"])
    assert record.prompt_tokens == prompt_tokens_for(messages) < bound
    assert record.flags == ""
    assert record.cost_micro_usd == cost(record.prompt_tokens, record.completion_tokens) < held
    assert UsageRecord.objects.filter(account=customer.account).count() == 1
    assert_books_balance(customer.account)


def test_credit_that_cannot_spare_the_bound_holds_the_count(live_server_url, wide, make_customer):
    text = fresh_text(60_000)
    messages = [{"role": "user", "content": text}]
    exact = count_unkept(messages)
    bound_hold = worst_case("wide-test", bound_of(messages))
    customer = make_customer(credit_micro_usd=2 * bound_hold)
    wide.script("wide-up", Stall(0.5))
    body = wide_body(messages)

    response, held = answered_with_its_hold(live_server_url, customer, body)

    assert response.status_code == 200, response.text
    assert held == worst_case("wide-test", exact) < bound_hold
    record = wait_for_record(response.headers["x-request-id"])
    assert record.cost_micro_usd == cost(record.prompt_tokens, record.completion_tokens) <= held
    assert_books_balance(customer.account)


def test_a_large_prompt_short_of_credit_is_refused_for_its_count(
    live_server_url, wide, make_customer
):
    messages = [{"role": "user", "content": fresh_text(60_000)}]
    exact_hold = worst_case("wide-test", count_unkept(messages))
    customer = make_customer(credit_micro_usd=exact_hold - 1)

    response = post(live_server_url, customer.secret, wide_body(messages))

    assert_refused(wide, response, 402, "insufficient_credits", f"({exact_hold} micro-USD)")
    assert not Hold.objects.filter(account=customer.account).exists()
    customer.account.refresh_from_db()
    assert customer.account.held_micro_usd == 0


def test_the_per_request_cap_is_checked_against_the_count(live_server_url, wide, customer):
    text = fresh_text(60_000)
    messages = [{"role": "user", "content": text}]
    exact_hold = worst_case("wide-test", count_unkept(messages))
    bound_hold = worst_case("wide-test", bound_of(messages))
    assert exact_hold < bound_hold
    body = wide_body(messages)
    headers = {"Authorization": f"Bearer {customer.secret}"}
    assert_never_counted(body)

    allowed = httpx.post(
        live_server_url + "/v1/chat/completions",
        json=body,
        headers={**headers, "X-Max-Cost-Micro-Usd": str(exact_hold)},
        timeout=10,
    )
    refused = httpx.post(
        live_server_url + "/v1/chat/completions",
        json=body,
        headers={**headers, "X-Max-Cost-Micro-Usd": str(exact_hold - 1)},
        timeout=10,
    )

    assert allowed.status_code == 200, allowed.text
    assert refused.status_code == 402
    assert refused.json()["error"]["code"] == "max_cost_exceeded"
    assert f"is {exact_hold} micro-USD" in refused.json()["error"]["message"]
    assert UsageRecord.objects.filter(account=customer.account).settled().count() == 1
    assert_books_balance(customer.account)


def test_the_context_check_counts_only_the_longest_texts_it_needs(live_server_url, wide, customer):
    """A 120k-character prompt in a 100k-token window: its bound does not fit, but the
    count of its longest text is enough to show that the whole does."""
    Model.objects.filter(id="wide-test").update(context_length=100_000)
    long, short = fresh_text(90_000), fresh_text(30_000)
    messages = [{"role": "system", "content": short}, {"role": "user", "content": long}]
    assert bound_of(messages) + MAX_TOKENS > 100_000

    response = post(live_server_url, customer.secret, wide_body(messages))

    assert response.status_code == 200, response.text
    assert tokens._kept_count(long) is not None
    assert tokens._kept_count(short) is None
    assert_books_balance(customer.account)


def test_a_prompt_too_long_for_the_window_is_refused_for_its_count(live_server_url, wide, customer):
    Model.objects.filter(id="wide-test").update(context_length=20_000)
    messages = [
        {"role": "system", "content": fresh_text(50_000)},
        {"role": "user", "content": fresh_text(50_000)},
    ]
    exact = count_unkept(messages)
    assert exact + MAX_TOKENS > 20_000

    response = post(live_server_url, customer.secret, wide_body(messages))

    says = f"you requested {exact + MAX_TOKENS} tokens ({exact} in the messages"
    assert_refused(wide, response, 400, "context_length_exceeded", says)


def test_a_token_limit_takes_the_bound_then_keeps_what_the_upstream_reported(
    live_server_url, wide, make_customer
):
    customer = make_customer(tpm_limit=10_000_000)
    text = fresh_text(60_000)
    messages = [{"role": "user", "content": text}]
    bound = bound_of(messages)
    wide.script("wide-up", Stall(0.5))

    response, held = answered_with_its_hold(live_server_url, customer, wide_body(messages))

    assert response.status_code == 200, response.text
    assert held == worst_case("wide-test", bound)
    assert tokens._kept_count(text) is None, "the prompt was tokenized"
    remaining = int(response.headers["x-ratelimit-remaining-tokens"])
    assert remaining == 10_000_000 - bound - MAX_TOKENS
    record = wait_for_record(response.headers["x-request-id"])
    used = record.prompt_tokens + record.completion_tokens
    headers = {"Authorization": f"Bearer {customer.secret}"}
    for _ in range(50):
        models = httpx.get(live_server_url + "/v1/models", headers=headers, timeout=10)
        remaining = int(models.headers["x-ratelimit-remaining-tokens"])
        if remaining >= 10_000_000 - used:
            break
        time.sleep(0.02)
    assert remaining >= 10_000_000 - used


def test_a_token_limit_below_the_bound_admits_the_prompt_by_its_count(
    live_server_url, wide, make_customer
):
    text = fresh_text(60_000)
    messages = [{"role": "user", "content": text}]
    exact = count_unkept(messages)
    limit = exact + MAX_TOKENS + 10
    assert limit < bound_of(messages)
    customer = make_customer(tpm_limit=limit, rpm_limit=5)
    wide.script("wide-up", Stall(0.5))

    response, held = answered_with_its_hold(live_server_url, customer, wide_body(messages))

    assert response.status_code == 200, response.text
    assert int(response.headers["x-ratelimit-remaining-tokens"]) == 10
    # The request the bound's refusal had counted was given back: one request, once.
    assert response.headers["x-ratelimit-remaining-requests"] == "4"
    assert held == worst_case("wide-test", exact)
    assert_books_balance(customer.account)


def test_a_prompt_whose_count_is_over_the_token_limit_is_refused_for_its_count(
    live_server_url, wide, make_customer
):
    messages = [{"role": "user", "content": fresh_text(60_000)}]
    exact = count_unkept(messages)
    customer = make_customer(tpm_limit=exact + MAX_TOKENS - 1)

    response = post(live_server_url, customer.secret, wide_body(messages))

    says = f"Request too large: {exact + MAX_TOKENS} tokens"
    assert_refused(wide, response, 429, "rate_limit_exceeded", says)


def test_a_request_over_its_requests_limit_is_refused_without_counting_its_prompt(
    live_server_url, wide, make_customer
):
    """The bound would not fit the key's tokens per minute, but the requests limit
    refuses first: the prompt is not counted for a second try that cannot pass."""
    text = fresh_text(60_000)
    messages = [{"role": "user", "content": text}]
    customer = make_customer(rpm_limit=1, tpm_limit=count_unkept(messages) + MAX_TOKENS + 10)
    small = [{"role": "user", "content": fresh_text(40)}]  # new, so post() may send it
    assert post(live_server_url, customer.secret, wide_body(small)).status_code == 200

    response = post(live_server_url, customer.secret, wide_body(messages))

    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert "requests per minute" in response.json()["error"]["message"]
    assert len(wide.requests_for("wide-up")) == 1
    assert tokens._kept_count(text) is None, "the prompt was counted"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_an_upstream_that_reports_no_usage_is_billed_the_count_not_the_bound(
    live_server_url, wide, customer, stream
):
    messages = [{"role": "user", "content": fresh_text(60_000)}]
    wide.script("wide-up", Ok(usage=False))
    body = wide_body(messages)
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})

    response = post(live_server_url, customer.secret, body)

    assert response.status_code == 200, response.text
    record = wait_for_record(response.headers["x-request-id"])
    assert record.prompt_tokens == count_prompt(messages)
    assert "usage_counted" in record.flags
    assert record.cost_micro_usd == cost(record.prompt_tokens, record.completion_tokens)
    assert_books_balance(customer.account)


def test_a_client_that_leaves_mid_stream_pays_the_count_of_its_prompt(
    live_server_url, wide, customer
):
    messages = [{"role": "user", "content": fresh_text(60_000)}]
    wide.script("wide-up", Stall(3.0, after_chunks=3))
    body = {"model": "wide-test", "messages": messages, "max_tokens": MAX_TOKENS, "stream": True}

    with (
        httpx.Client(timeout=httpx.Timeout(10.0, read=0.5)) as client,
        pytest.raises(httpx.ReadTimeout),
        client.stream(
            "POST",
            live_server_url + "/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {customer.secret}"},
        ) as response,
    ):
        for _ in response.iter_lines():
            pass

    record = only_record(customer.account)
    assert record.status == UsageRecord.Status.CANCELLED
    assert record.prompt_tokens == count_prompt(messages)
    assert record.cost_micro_usd == cost(record.prompt_tokens, record.completion_tokens) > 0
    assert_books_balance(customer.account)


def test_the_messages_door_starts_its_stream_with_the_prompts_count(
    live_server_url, wide, customer
):
    text = fresh_text(60_000)
    client = anthropic.Anthropic(
        base_url=live_server_url, api_key=customer.secret, max_retries=0, timeout=10
    )
    request = {
        "model": "wide-test",
        "max_tokens": MAX_TOKENS,
        "messages": [{"role": "user", "content": text}],
    }

    with client.messages.stream(**request) as stream:
        first = next(iter(stream))
        stream.until_done()

    assert first.type == "message_start"
    assert first.message.usage.input_tokens == count_prompt([{"role": "user", "content": text}])
    counted = client.messages.count_tokens(model="wide-test", messages=request["messages"])
    assert first.message.usage.input_tokens == counted.input_tokens


@pytest.fixture
def routed(wide: Any) -> Any:
    """The router's choice between wide-test (200k tokens, cheaper) and wide-pricey (128k)."""
    RouterProfile.objects.create(model=Model.objects.get(id="wide-test"), tier=1)
    pricey = Model.objects.create(
        id="wide-pricey",
        context_length=128_000,
        max_output_tokens=4_000,
        input_price=INPUT_PRICE * 2,
        output_price=OUTPUT_PRICE * 2,
    )
    Route.objects.create(
        model=pricey, provider=Provider.objects.get(name="primary"), upstream_model="wide-up"
    )
    RouterProfile.objects.create(model=pricey, tier=1)
    RouterRule.objects.update_or_create(signal="default", defaults={"min_tier": 1})
    return wide


def test_the_router_compares_windows_with_the_bound_when_it_decides(
    live_server_url, routed, customer
):
    text = fresh_text(60_000)
    body = {"model": "auto", "messages": [{"role": "user", "content": text}], "max_tokens": 500}

    response = post(live_server_url, customer.secret, body)

    assert response.status_code == 200, response.text
    assert response.headers["x-routed-model"] == "wide-test"
    assert tokens._kept_count(text) is None, "the prompt was tokenized"
    record = wait_for_record(response.headers["x-request-id"])
    assert record.reserved_micro_usd == worst_case("wide-test", bound_of(body["messages"]))


def test_the_router_counts_a_prompt_whose_bound_a_window_cannot_decide(
    live_server_url, routed, customer
):
    """A cheaper 30k-token window: the bound (60k bytes) does not show whether the prompt
    fits it, its count (about 24k tokens) does."""
    narrow = Model.objects.create(
        id="narrow-cheap",
        context_length=30_000,
        max_output_tokens=4_000,
        input_price=INPUT_PRICE // 2,
        output_price=OUTPUT_PRICE // 2,
    )
    Route.objects.create(
        model=narrow, provider=Provider.objects.get(name="primary"), upstream_model="wide-up"
    )
    RouterProfile.objects.create(model=narrow, tier=1)
    text = fresh_text(60_000)
    messages = [{"role": "user", "content": text}]
    assert count_unkept(messages) + 500 <= 30_000 < bound_of(messages)

    response = post(
        live_server_url,
        customer.secret,
        {"model": "auto", "messages": messages, "max_tokens": 500},
    )

    assert response.status_code == 200, response.text
    assert response.headers["x-routed-model"] == "narrow-cheap"
    assert tokens._kept_count(text) is not None
