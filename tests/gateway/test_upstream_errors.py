"""Upstream errors reach the customer as Switchboard's own, with nothing of the operator's.

An upstream that refuses Switchboard itself (its key, its account, a model it does not
have) is the operator's problem: the customer sees an unavailable upstream, the provider
cools down and fallback applies. An upstream that refuses the customer's request is a
400 in the upstream's words, masked. The operator's key is never in a response, a usage
record, /v1/generation or any log line, and Retry-After says when a route is tried again.
"""

from __future__ import annotations

import logging

import httpx
import pytest

from billing.models import UsageRecord
from gateway.catalog import get_catalog
from gateway.models import Model, Provider, Route
from tests.fakes.upstream import ErrorEvent, Fail
from tests.gateway.test_chat_completions_sdk import MESSAGES, assert_books_balance

pytestmark = pytest.mark.django_db(transaction=True)

OPERATOR_KEY = "sk-operator-Zx81kQ3vT0pLmN5wR7yU"


@pytest.fixture
def keyed_catalog(fake_upstream):
    """guarded-model → primary, then mirror; both with the operator's real-looking key."""
    primary, mirror = (
        Provider.objects.create(
            name=name,
            kind="openai",
            base_url=fake_upstream.url + "/v1",
            api_key=OPERATOR_KEY,
            timeout_seconds=2,
        )
        for name in ("primary", "mirror")
    )
    model = Model.objects.create(
        id="guarded-model",
        context_length=8_000,
        max_output_tokens=1_000,
        input_price=1_000_000,
        output_price=2_000_000,
    )
    Route.objects.create(model=model, provider=primary, upstream_model="primary-up", priority=0)
    Route.objects.create(model=model, provider=mirror, upstream_model="mirror-up", priority=1)
    return fake_upstream


def chat(url: str, secret: str, **headers: str) -> httpx.Response:
    return httpx.post(
        url + "/v1/chat/completions",
        json={"model": "guarded-model", "messages": MESSAGES},
        headers={"Authorization": f"Bearer {secret}", **headers},
        timeout=10,
    )


@pytest.fixture
def every_log_line(caplog):
    caplog.set_level(logging.DEBUG)
    return caplog


def assert_key_nowhere(response: httpx.Response, logs: pytest.LogCaptureFixture) -> None:
    assert OPERATOR_KEY not in response.text
    assert OPERATOR_KEY not in str(dict(response.headers))
    for record in UsageRecord.objects.all():
        assert OPERATOR_KEY not in record.error
    assert OPERATOR_KEY not in logs.text
    assert OPERATOR_KEY[:16] not in logs.text


@pytest.mark.parametrize("status", [401, 403, 404])
def test_an_upstream_that_refuses_the_operator_falls_back_and_shows_no_key(
    live_server_url, keyed_catalog, customer, every_log_line, status
):
    keyed_catalog.script(
        "primary-up", Fail(status, message=f"Incorrect API key provided: {OPERATOR_KEY}.")
    )

    response = chat(live_server_url, customer.secret)

    assert response.status_code == 200
    assert keyed_catalog.requests_for("mirror-up")
    record = UsageRecord.objects.get(request_id=response.headers["x-request-id"])
    assert (record.provider, record.attempts) == ("mirror", 2)
    assert_key_nowhere(response, every_log_line)
    assert "HTTP " + str(status) in every_log_line.text, "the operator's log says what failed"


def test_without_a_fallback_the_customer_gets_a_503_not_the_upstreams_401(
    live_server_url, keyed_catalog, customer, every_log_line
):
    keyed_catalog.script("primary-up", Fail(401, message=f"Bad key {OPERATOR_KEY}"))

    response = chat(live_server_url, customer.secret, **{"X-Fallback": "off"})

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "upstream_unavailable"
    assert int(response.headers["Retry-After"]) >= 1
    generation = httpx.get(
        f"{live_server_url}/v1/generation/{response.headers['x-request-id']}",
        headers={"Authorization": f"Bearer {customer.secret}"},
    )
    assert generation.status_code == 200
    assert OPERATOR_KEY not in generation.text
    assert_key_nowhere(response, every_log_line)
    assert_books_balance(customer.account)


def test_an_upstream_refusal_of_the_request_is_a_400_in_its_words_masked(
    live_server_url, keyed_catalog, customer, every_log_line
):
    keyed_catalog.script(
        "primary-up", Fail(400, message=f"messages[0] is too odd (key {OPERATOR_KEY})")
    )

    response = chat(live_server_url, customer.secret)

    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "messages[0] is too odd" in message
    assert "[redacted]" in message
    assert not keyed_catalog.requests_for("mirror-up")
    assert_key_nowhere(response, every_log_line)


def test_an_error_event_mid_stream_is_masked(
    live_server_url, keyed_catalog, customer, every_log_line
):
    keyed_catalog.script(
        "primary-up", ErrorEvent(after_chunks=3, message=f"overloaded; key={OPERATOR_KEY}")
    )

    response = httpx.post(
        live_server_url + "/v1/chat/completions",
        json={"model": "guarded-model", "messages": MESSAGES, "stream": True},
        headers={"Authorization": f"Bearer {customer.secret}"},
        timeout=10,
    )

    assert '"code":"upstream_error"' in response.text
    assert_key_nowhere(response, every_log_line)


@pytest.mark.parametrize(
    ("cooldown", "probe", "wait"),
    [(30, 8, 8), (5, 60, 5)],
    ids=["the-probe-comes-first", "the-cooldown-ends-first"],
)
def test_retry_after_says_when_a_cooling_provider_is_tried_again(
    live_server_url, keyed_catalog, customer, settings, cooldown, probe, wait
):
    settings.PROVIDER_COOLDOWN_SECONDS = cooldown
    settings.PROVIDER_PROBE_SECONDS = probe
    keyed_catalog.script("primary-up", Fail(500))
    keyed_catalog.script("mirror-up", Fail(503))

    failed = chat(live_server_url, customer.secret)
    refused = chat(live_server_url, customer.secret)

    assert (failed.status_code, refused.status_code) == (503, 503)
    assert wait - 1 <= int(failed.headers["Retry-After"]) <= wait
    assert wait - 1 <= int(refused.headers["Retry-After"]) <= wait
    assert len(keyed_catalog.requests) == 2


def test_a_providers_key_is_not_in_its_repr(keyed_catalog):
    snapshot = get_catalog()
    provider = snapshot.resolve("guarded-model").routes[0].provider

    assert OPERATOR_KEY not in repr(provider)
    assert OPERATOR_KEY not in repr(snapshot.resolve("guarded-model"))
