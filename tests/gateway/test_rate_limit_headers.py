"""Every /v1 answer to an authenticated key says where its rate limits stand.

Through the official `openai` SDK against the live server: successes, refusals after
authentication (400, 402, 403, 404, 429) and the reading endpoints (which report the
limits without counting against them) all carry OpenAI's six `x-ratelimit-*` headers.
A key without limits of its own gets the operator's defaults; a limit of 0, or an
account in unlimited mode, is reported as UNLIMITED requests and tokens.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from gateway.ratelimit import UNLIMITED

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = [{"role": "user", "content": "Hi"}]
HEADERS = [
    f"x-ratelimit-{what}-{kind}"
    for kind in ("requests", "tokens")
    for what in ("limit", "remaining", "reset")
]
DURATION = re.compile(r"^(\d+ms|\d+(\.\d+)?s|\d+m\d+s)$")


@pytest.fixture(autouse=True)
def fast_demo(settings: Any, demo_catalog: None) -> None:
    settings.DEMO_TOKEN_DELAY_MS = 1


@pytest.fixture
def sdk(live_server_url: str) -> Callable[[str], openai.OpenAI]:
    def make(secret: str) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=live_server_url + "/v1", api_key=secret, max_retries=0, timeout=10
        )

    return make


def limits(headers: httpx.Headers) -> dict[str, str]:
    """The six headers, each present, limits and remainders integers, resets durations."""
    found = {name: headers.get(name) for name in HEADERS}
    assert all(value is not None for value in found.values()), found
    for name, value in found.items():
        if "-reset-" in name:
            assert DURATION.match(value), (name, value)
        else:
            assert int(value) >= 0, (name, value)
    return found


def chat(client: openai.OpenAI, **fields: Any) -> httpx.Headers:
    raw = client.chat.completions.with_raw_response.create(
        **{"model": "demo", "messages": MESSAGES, "max_tokens": 10, **fields}
    )
    answer = raw.parse()
    if fields.get("stream"):
        assert [chunk for chunk in answer]
    return raw.headers


def refused(call: Callable[[], Any]) -> httpx.Headers:
    with pytest.raises(openai.APIStatusError) as caught:
        call()
    return caught.value.response.headers


REFUSALS: dict[str, tuple[dict[str, Any], dict[str, Any], int]] = {
    # name: (key fields, request fields, status)
    "bad-request": ({}, {"temperature": 5}, 400),
    "unknown-model": ({}, {"model": "no-such-model"}, 404),
    "model-not-allowed": ({"allowed_models": ["another-model"]}, {}, 403),
    "max-cost": ({}, {"extra_headers": {"X-Max-Cost-Micro-Usd": "0"}}, 402),
    "no-credit": ({"credit_micro_usd": 0}, {}, 402),
    "spend-cap": ({"spend_cap_micro_usd": 1}, {}, 402),
}


@pytest.mark.parametrize(("key_fields", "fields", "status"), REFUSALS.values(), ids=REFUSALS)
def test_a_refusal_after_authentication_carries_the_headers(
    sdk, make_customer, key_fields, fields, status
):
    customer = make_customer(rpm_limit=5, tpm_limit=100_000, **key_fields)
    client = sdk(customer.secret)

    with pytest.raises(openai.APIStatusError) as caught:
        chat(client, **fields)

    assert caught.value.status_code == status
    found = limits(caught.value.response.headers)
    assert (found["x-ratelimit-limit-requests"], found["x-ratelimit-limit-tokens"]) == (
        "5",
        "100000",
    )


def test_a_rate_limited_request_carries_the_headers_of_both_limits(sdk, make_customer):
    customer = make_customer(rpm_limit=1, tpm_limit=100_000)
    client = sdk(customer.secret)
    chat(client)

    headers = refused(lambda: chat(client))

    found = limits(headers)
    assert found["x-ratelimit-remaining-requests"] == "0"
    assert found["x-ratelimit-limit-tokens"] == "100000"
    assert 0 < int(found["x-ratelimit-remaining-tokens"]) < 100_000
    assert int(headers["retry-after"]) >= 1


def test_the_reading_endpoints_report_the_limits_without_counting(sdk, make_customer):
    customer = make_customer(rpm_limit=5, tpm_limit=100_000)
    client = sdk(customer.secret)
    first = limits(chat(client))
    assert first["x-ratelimit-remaining-requests"] == "4"
    request_id = chat(client)["x-request-id"]

    answers = [
        client.models.with_raw_response.list().headers,
        client.models.with_raw_response.list().headers,
        client.models.with_raw_response.retrieve("demo").headers,
        client.get(f"/generation/{request_id}", cast_to=httpx.Response).headers,
        refused(lambda: client.models.retrieve("no-such-model")),
        refused(lambda: client.get("/generation/req_unknown", cast_to=httpx.Response)),
    ]

    for headers in answers:
        found = limits(headers)
        assert found["x-ratelimit-remaining-requests"] == "3"
        assert found["x-ratelimit-limit-tokens"] == "100000"
    assert limits(chat(client))["x-ratelimit-remaining-requests"] == "2"


def test_a_key_without_limits_gets_the_operators_defaults(settings, sdk, make_customer):
    settings.DEFAULT_KEY_RPM = 2
    settings.DEFAULT_KEY_TPM = 50_000
    plain, own = make_customer(), make_customer(rpm_limit=5)
    client = sdk(plain.secret)

    first = limits(chat(client))
    chat(client)
    with pytest.raises(openai.RateLimitError):
        chat(client)

    assert (first["x-ratelimit-limit-requests"], first["x-ratelimit-remaining-requests"]) == (
        "2",
        "1",
    )
    assert first["x-ratelimit-limit-tokens"] == "50000"
    mine = limits(chat(sdk(own.secret)))
    assert (mine["x-ratelimit-limit-requests"], mine["x-ratelimit-limit-tokens"]) == (
        "5",
        "50000",
    )


def test_with_no_default_a_key_is_told_it_is_unlimited(settings, sdk, make_customer):
    settings.DEFAULT_KEY_RPM = 0
    settings.DEFAULT_KEY_TPM = 0
    customer = make_customer(tpm_limit=100_000)
    client = sdk(customer.secret)

    answers = [
        chat(client),
        chat(client, stream=True),
        client.models.with_raw_response.list().headers,
    ]

    for headers in answers:
        found = limits(headers)
        assert found["x-ratelimit-limit-requests"] == str(UNLIMITED)
        assert found["x-ratelimit-remaining-requests"] == str(UNLIMITED)
        assert found["x-ratelimit-reset-requests"] == "0s"
        assert found["x-ratelimit-limit-tokens"] == "100000"


def test_an_account_in_unlimited_mode_is_not_limited_and_says_so(sdk, make_customer):
    customer = make_customer(rpm_limit=1, tpm_limit=10)
    assert customer.account.set_unlimited(True)
    client = sdk(customer.secret)

    answers = [chat(client), chat(client), chat(client, stream=True)]

    for headers in answers:
        found = limits(headers)
        assert {found[name] for name in HEADERS if "-reset-" not in name} == {str(UNLIMITED)}
