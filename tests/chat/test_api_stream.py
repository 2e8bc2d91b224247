"""POST /chat/stream and GET /chat/models through the live server and the fake upstream.

The chat API is a front door on the one call lifecycle: every test here checks the books
(billed once, never zero, never past the hold) as well as the events.
"""

from __future__ import annotations

import time

import httpx
import orjson
import pytest
from django.test import Client

from accounts.models import ApiKey
from billing.models import LedgerEntry, UsageRecord
from gateway.tokens import count_prompt, count_text
from tests.fakes.upstream import Cut, Fail, Ok, default_text, pieces
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
CSRF = "a" * 32


def post(url: str, body: object, *, secret: str | None = None, **headers: str) -> httpx.Response:
    if secret is not None:
        headers["Authorization"] = f"Bearer {secret}"
    return httpx.post(url + "/chat/stream", json=body, headers=headers, timeout=10)


def events(response: httpx.Response) -> list[object]:
    assert response.headers["content-type"].startswith("text/event-stream")
    return [
        line[6:] if line == "data: [DONE]" else orjson.loads(line[6:])
        for line in response.text.splitlines()
        if line.startswith("data: ")
    ]


def content(received: list[object]) -> str:
    return "".join(e["content"] for e in received if isinstance(e, dict) and "content" in e)


def only_ledger_debit(request_id: str) -> LedgerEntry:
    [entry] = LedgerEntry.objects.filter(idempotency_key=f"usage:{request_id}")
    return entry


def test_it_streams_content_events_then_the_cost_then_done_billed_once(
    live_server_url, catalog, customer
):
    response = post(
        live_server_url, {"model": "gpt-test", "messages": MESSAGES}, secret=customer.secret
    )

    assert response.status_code == 200
    received = events(response)
    assert received[-1] == "[DONE]"
    assert content(received) == default_text("primary-model")
    assert all(set(e) == {"content"} for e in received[:-2])
    summary = received[-2]
    record = wait_for_record(response.headers["x-request-id"])
    cost = expected_cost(record.prompt_tokens, record.completion_tokens)
    assert summary == {
        "done": True,
        "model": "gpt-test",
        "requestId": record.request_id,
        "usage": {
            "promptTokens": record.prompt_tokens,
            "completionTokens": record.completion_tokens,
            "totalTokens": record.prompt_tokens + record.completion_tokens,
        },
        "cost": {"microUsd": cost, "usd": f"{cost / 1_000_000:.6f}"},
    }
    assert cost > 0
    assert record.completion_tokens == len(pieces(default_text("primary-model")))
    assert (record.source, record.status, record.stream) == ("chat_stream", "ok", True)
    assert record.cost_micro_usd == cost <= record.reserved_micro_usd
    assert only_ledger_debit(record.request_id).amount_micro_usd == -cost
    assert_books_balance(customer.account)


def test_the_fields_are_translated_to_the_chat_completions_shape(
    live_server_url, catalog, customer
):
    body = {
        "model": "GPT Test",
        "messages": [{"role": "system", "content": "Be brief."}, *MESSAGES],
        "temperature": 0.5,
        "maxTokens": 64,
        "topP": 0.9,
        "stopSequences": ["END", "STOP"],
    }

    response = post(live_server_url, body, secret=customer.secret)

    assert response.status_code == 200
    sent = catalog.requests_for("primary-model")[-1].json
    assert sent["messages"] == body["messages"]
    assert (sent["temperature"], sent["top_p"], sent["max_tokens"]) == (0.5, 0.9, 64)
    assert sent["stop"] == ["END", "STOP"]
    assert sent["stream"] is True
    record = wait_for_record(response.headers["x-request-id"])
    assert record.model == "gpt-test"
    assert record.reserved_micro_usd == expected_cost(
        int(count_prompt(body["messages"]) * 1.1) + 16, 64
    )


def test_without_a_model_it_uses_the_operators_default(
    live_server_url, catalog, customer, settings
):
    settings.CHAT_API_DEFAULT_MODEL = "claude-test"

    response = post(live_server_url, {"messages": MESSAGES}, secret=customer.secret)

    assert response.status_code == 200
    assert content(events(response)) == default_text("claude-up")
    assert wait_for_record(response.headers["x-request-id"]).model == "claude-test"


def test_without_a_model_or_a_default_it_uses_the_first_model_the_key_may_call(
    live_server_url, catalog, make_customer, settings
):
    settings.CHAT_API_DEFAULT_MODEL = ""
    narrow = make_customer(allowed_models=["gpt-test", "gemini-test"])

    response = post(live_server_url, {"messages": MESSAGES}, secret=narrow.secret)

    assert response.status_code == 200
    assert wait_for_record(response.headers["x-request-id"]).model == "gemini-test"


def test_it_falls_back_to_the_mirror_and_bills_the_one_answer(live_server_url, catalog, customer):
    catalog.script("primary-model", Fail(status=503))

    response = post(
        live_server_url, {"model": "gpt-test", "messages": MESSAGES}, secret=customer.secret
    )

    assert content(events(response)) == default_text("mirror-model")
    record = wait_for_record(response.headers["x-request-id"])
    assert (record.status, record.provider, record.attempts) == ("ok", "mirror", 2)
    assert (
        record.cost_micro_usd == expected_cost(record.prompt_tokens, record.completion_tokens) > 0
    )
    assert UsageRecord.objects.filter(account=customer.account).count() == 1
    only_ledger_debit(record.request_id)
    assert_books_balance(customer.account)


def test_no_healthy_route_is_a_503_with_retry_after_and_nothing_billed(
    live_server_url, catalog, customer
):
    catalog.script("primary-model", Fail(status=503))

    response = post(
        live_server_url,
        {"model": "gpt-test", "messages": MESSAGES},
        secret=customer.secret,
        **{"X-Fallback": "off"},
    )

    assert response.status_code == 503
    body = response.json()
    assert set(body) == {"error", "retryAfter"}
    assert body["retryAfter"] == int(response.headers["Retry-After"]) >= 1
    record = wait_for_record(response.headers["x-request-id"])
    assert (record.status, record.cost_micro_usd) == ("error", 0)
    assert_books_balance(customer.account)


def test_a_stream_cut_mid_answer_ends_with_an_error_event_billed_for_what_was_relayed(
    live_server_url, catalog, customer
):
    catalog.script("primary-model", Cut(after_chunks=3))

    response = post(
        live_server_url, {"model": "gpt-test", "messages": MESSAGES}, secret=customer.secret
    )

    received = events(response)
    assert "[DONE]" not in received
    assert set(received[-1]) == {"error"}
    relayed = content(received)
    assert relayed
    record = wait_for_record(response.headers["x-request-id"])
    assert record.status == UsageRecord.Status.ERROR
    assert record.completion_tokens == count_text(relayed)
    assert record.cost_micro_usd == expected_cost(PROMPT, count_text(relayed)) > 0
    assert_books_balance(customer.account)


def test_a_client_that_leaves_mid_stream_pays_for_what_was_relayed(
    live_server_url, catalog, customer
):
    catalog.script("primary-model", Ok(text="word " * 200, delay=0.05))

    with httpx.stream(
        "POST",
        live_server_url + "/chat/stream",
        json={"model": "gpt-test", "messages": MESSAGES},
        headers={"Authorization": f"Bearer {customer.secret}"},
        timeout=10,
    ) as response:
        request_id = response.headers["x-request-id"]
        seen = 0
        for line in response.iter_lines():
            if line.startswith("data: "):
                seen += 1
            if seen == 3:
                break

    assert catalog.wait_for_disconnects(1)
    record = wait_for_record(request_id)
    assert record.status == UsageRecord.Status.CANCELLED
    assert 3 <= record.completion_tokens < 200
    assert record.cost_micro_usd == expected_cost(PROMPT, record.completion_tokens) > 0
    assert record.cost_micro_usd <= record.reserved_micro_usd
    assert_books_balance(customer.account)


def test_usage_far_above_the_hold_is_charged_at_the_hold_never_more(
    live_server_url, catalog, customer
):
    catalog.script("primary-model", Ok(text="short", completion_tokens=5_000_000))

    response = post(
        live_server_url,
        {"model": "gpt-test", "messages": MESSAGES, "maxTokens": 50},
        secret=customer.secret,
    )

    summary = events(response)[-2]
    record = wait_for_record(response.headers["x-request-id"])
    assert record.cost_micro_usd == record.reserved_micro_usd == summary["cost"]["microUsd"] > 0
    assert_books_balance(customer.account)


def test_rag_enabled_asks_the_lifecycle_for_rag_and_streams_the_sources(
    live_server_url, catalog, customer
):
    response = post(
        live_server_url,
        {"model": "gpt-test", "messages": MESSAGES, "ragEnabled": True},
        secret=customer.secret,
    )

    assert response.status_code == 200
    received = events(response)
    # No documents uploaded: nothing was retrieved, and the stream says so.
    assert received[-3] == {"sources": []}
    assert received[-1] == "[DONE]"
    record = wait_for_record(response.headers["x-request-id"])
    assert record.cost_micro_usd == received[-2]["cost"]["microUsd"] > 0
    assert_books_balance(customer.account)


def test_rag_disabled_is_a_plain_call(live_server_url, catalog, customer):
    response = post(
        live_server_url,
        {"model": "gpt-test", "messages": MESSAGES, "ragEnabled": False},
        secret=customer.secret,
    )

    assert response.status_code == 200
    assert "rag" not in catalog.requests_for("primary-model")[-1].json


# --- signed in through the console ---------------------------------------------------


def signed_in(user: object) -> dict[str, str]:
    client = Client()
    client.force_login(user)
    return {"sessionid": client.cookies["sessionid"].value, "csrftoken": CSRF}


def test_a_signed_in_page_is_billed_through_the_users_web_key(live_server_url, catalog, customer):
    response = httpx.post(
        live_server_url + "/chat/stream",
        json={"model": "gpt-test", "messages": MESSAGES},
        cookies=signed_in(customer.user),
        headers={"X-CSRFToken": CSRF},
        timeout=10,
    )

    assert response.status_code == 200
    assert content(events(response)) == default_text("primary-model")
    record = wait_for_record(response.headers["x-request-id"])
    assert record.api_key.kind == ApiKey.Kind.WEB
    assert record.api_key.user_id == customer.user.pk
    assert record.source == "chat_stream"
    assert record.cost_micro_usd > 0
    assert_books_balance(customer.account)


def test_a_signed_in_post_without_the_csrf_token_is_refused(live_server_url, catalog, customer):
    response = httpx.post(
        live_server_url + "/chat/stream",
        json={"model": "gpt-test", "messages": MESSAGES},
        cookies=signed_in(customer.user),
        timeout=10,
    )

    assert response.status_code == 403
    assert set(response.json()) == {"error"}
    assert "X-CSRFToken" in response.json()["error"]
    assert catalog.requests == []
    assert not UsageRecord.objects.exists()


def test_a_key_needs_no_csrf_token_even_beside_a_session(live_server_url, catalog, customer):
    response = httpx.post(
        live_server_url + "/chat/stream",
        json={"model": "gpt-test", "messages": MESSAGES},
        cookies=signed_in(customer.user),
        headers={"Authorization": f"Bearer {customer.secret}"},
        timeout=10,
    )

    assert response.status_code == 200
    record = wait_for_record(response.headers["x-request-id"])
    assert record.api_key_id == customer.api_key.pk


# --- errors ------------------------------------------------------------------------


def test_a_rate_limited_key_gets_the_seed_shape_and_retry_after(
    live_server_url, catalog, make_customer
):
    limited = make_customer(rpm_limit=1)
    assert (
        post(
            live_server_url, {"model": "gpt-test", "messages": MESSAGES}, secret=limited.secret
        ).status_code
        == 200
    )

    response = post(
        live_server_url, {"model": "gpt-test", "messages": MESSAGES}, secret=limited.secret
    )

    assert response.status_code == 429
    retry_after = int(response.headers["Retry-After"])
    assert response.json() == {"error": "Rate limit exceeded", "retryAfter": retry_after}
    assert retry_after >= 1


def test_a_request_larger_than_the_keys_token_limit_is_a_400_not_a_429(
    live_server_url, catalog, make_customer
):
    limited = make_customer(tpm_limit=100)

    response = post(
        live_server_url,
        {"model": "gpt-test", "messages": MESSAGES, "maxTokens": 500},
        secret=limited.secret,
    )

    assert response.status_code == 400
    assert "tokens per minute" in response.json()["error"]
    assert set(response.json()) == {"error"}


def test_an_unknown_model_lists_the_models_the_key_may_use(live_server_url, catalog, make_customer):
    narrow = make_customer(allowed_models=["gpt-test", "claude-test"])

    response = post(live_server_url, {"model": "nope", "messages": MESSAGES}, secret=narrow.secret)

    assert response.status_code == 404
    assert response.json() == {
        "error": "Model not found",
        "availableModels": ["claude-test", "gpt-test"],
    }


def test_a_refused_call_is_in_the_request_log_under_this_api(live_server_url, catalog, customer):
    response = post(
        live_server_url, {"model": "nope", "messages": MESSAGES}, secret=customer.secret
    )

    assert response.status_code == 404
    deadline = time.monotonic() + 5
    while not (records := list(UsageRecord.objects.filter(account=customer.account))):
        assert time.monotonic() < deadline, "the refusal was not logged"
        time.sleep(0.05)
    [record] = records
    assert (record.status, record.source, record.cost_micro_usd) == ("refused", "chat_stream", 0)
    assert record.request_id == response.headers["x-request-id"]
    assert_books_balance(customer.account)


def test_a_prompt_beyond_the_context_length_says_both_lengths(live_server_url, catalog, customer):
    messages = [{"role": "user", "content": "word " * 7_990}]

    response = post(
        live_server_url,
        {"model": "gpt-test", "messages": messages, "maxTokens": 100},
        secret=customer.secret,
    )

    assert response.status_code == 400
    assert response.json() == {
        "error": "Context length exceeded",
        "maxLength": 8_000,
        "requestLength": count_prompt(messages) + 100,
    }


def test_out_of_credit_is_a_402_before_any_upstream_call(live_server_url, catalog, make_customer):
    broke = make_customer(credit_micro_usd=0)

    response = post(
        live_server_url, {"model": "gpt-test", "messages": MESSAGES}, secret=broke.secret
    )

    assert response.status_code == 402
    assert set(response.json()) == {"error"}
    assert "Insufficient credits" in response.json()["error"]
    assert catalog.requests == []


@pytest.mark.parametrize(
    ("headers", "cookies"),
    [
        ({}, {}),
        ({"Authorization": "Bearer sk-sb-wrong"}, {}),
        ({"Authorization": "Basic abc"}, {}),
        ({}, {"sessionid": "not-a-session", "csrftoken": CSRF}),
    ],
    ids=["nothing", "wrong-key", "not-bearer", "stale-session"],
)
def test_without_a_key_or_a_session_it_is_a_401(live_server_url, catalog, headers, cookies):
    response = httpx.post(
        live_server_url + "/chat/stream",
        json={"model": "gpt-test", "messages": MESSAGES},
        headers={"X-CSRFToken": CSRF, **headers},
        cookies=cookies,
        timeout=10,
    )

    assert response.status_code == 401
    assert set(response.json()) == {"error"}


# --- GET /chat/models ----------------------------------------------------------------


def test_models_lists_the_callable_models_with_prices_per_thousand_tokens(
    live_server_url, catalog, make_customer, settings
):
    settings.PRICE_MARKUP_PERCENT = 10
    narrow = make_customer(allowed_models=["gpt-test"])

    response = httpx.get(
        live_server_url + "/chat/models", headers={"Authorization": f"Bearer {narrow.secret}"}
    )

    assert response.status_code == 200
    # $2.20 / $8.80 per million tokens after the markup: exact decimal strings per 1K.
    assert response.json() == {
        "models": [
            {
                "id": "gpt-test",
                "name": "GPT Test",
                "contextLength": 8_000,
                "pricing": {"prompt": "0.0022", "completion": "0.0088"},
            }
        ]
    }


def test_models_without_a_caller_lists_every_callable_model(live_server_url, catalog):
    response = httpx.get(live_server_url + "/chat/models")

    assert [m["id"] for m in response.json()["models"]] == [
        "claude-test",
        "gemini-test",
        "gpt-test",
    ]


def test_models_for_a_signed_in_page_needs_no_csrf_token(live_server_url, catalog, customer):
    response = httpx.get(live_server_url + "/chat/models", cookies=signed_in(customer.user))

    assert response.status_code == 200
    assert len(response.json()["models"]) == 3


def test_models_with_a_wrong_key_is_a_401(live_server_url, catalog):
    response = httpx.get(
        live_server_url + "/chat/models", headers={"Authorization": "Bearer sk-sb-wrong"}
    )

    assert response.status_code == 401
    assert set(response.json()) == {"error"}


def test_the_web_chat_pages_still_route_beside_the_api(client, customer, demo_catalog):
    from chat.models import Conversation

    client.force_login(customer.user)
    conversation = Conversation.objects.create(user=customer.user, model="demo")

    assert client.get(f"/chat/{conversation.pk}/").status_code == 200
    assert client.get("/chat/").status_code == 200
