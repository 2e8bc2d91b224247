"""GET/POST /v1/estimate: the cost of a request before making it; no API key needed."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from gateway.tokens import count_prompt

pytestmark = pytest.mark.django_db

# The demo model: $1 per million input tokens, $2 per million output tokens.


def test_get_prices_token_counts(client, demo_priced):
    response = client.get("/v1/estimate?model=demo&input_tokens=1000&output_tokens=500")

    assert response.status_code == 200
    assert response.json() == {
        "object": "estimate",
        "model": "demo",
        "input_tokens": 1000,
        "output_tokens": 500,
        "input_price_micro_usd_per_mtok": 1_000_000,
        "output_price_micro_usd_per_mtok": 2_000_000,
        "request_price_micro_usd": 0,
        "cost_micro_usd": 2_000,
        "cost_usd": 0.002,
        "cost_units": None,
        "credit_unit": None,
    }


def test_prices_include_the_markup(client, demo_priced, settings, warm_catalog):
    settings.PRICE_MARKUP_PERCENT = 10
    warm_catalog()

    response = client.get("/v1/estimate?model=demo&input_tokens=1000000&output_tokens=0")

    assert response.json()["cost_micro_usd"] == 1_100_000


def test_models_are_found_by_alias_and_title(client, demo_priced):
    by_alias = client.get("/v1/estimate?model=demo-model&input_tokens=1&output_tokens=0")
    by_title = client.get("/v1/estimate?model=Switchboard%20Demo&input_tokens=1&output_tokens=0")

    assert by_alias.json()["model"] == by_title.json()["model"] == "demo"
    assert by_alias.json()["cost_micro_usd"] == 1


def test_without_an_output_budget_the_estimate_is_the_worst_case(client, demo_priced):
    response = client.get("/v1/estimate?model=demo&input_tokens=0")

    assert response.json()["output_tokens"] == 1_024
    assert response.json()["cost_micro_usd"] == 2_048


def test_post_counts_the_messages_itself(client, demo_priced):
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "How many tokens is this sentence, roughly?"},
    ]

    response = client.post(
        "/v1/estimate",
        {"model": "demo", "messages": messages, "max_tokens": 100},
        content_type="application/json",
    )

    expected_input = count_prompt(messages)
    assert response.status_code == 200
    assert response.json()["input_tokens"] == expected_input
    assert response.json()["output_tokens"] == 100
    assert response.json()["cost_micro_usd"] == -(
        -(expected_input * 1_000_000 + 100 * 2_000_000) // 1_000_000
    )


def test_an_unknown_model_is_404_model_not_found(client, demo_priced):
    response = client.get("/v1/estimate?model=gpt-17&input_tokens=1&output_tokens=1")

    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "model_not_found"
    assert error["param"] == "model"
    assert "demo" in error["message"]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("input_tokens=1&output_tokens=1", "model"),
        ("model=demo&input_tokens=lots&output_tokens=1", "input_tokens"),
        ("model=demo&input_tokens=-5&output_tokens=1", "input_tokens"),
        ("model=demo&input_tokens=1&output_tokens=1.5", "output_tokens"),
    ],
)
def test_bad_parameters_are_400_naming_the_param(client, demo_priced, query, param):
    response = client.get(f"/v1/estimate?{query}")

    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_post_without_messages_is_400(client, demo_priced):
    response = client.post("/v1/estimate", {"model": "demo"}, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages"


def test_post_with_broken_json_is_400(client, demo_priced):
    response = client.post("/v1/estimate", "{nope", content_type="application/json")

    assert response.status_code == 400


def test_other_methods_are_refused_as_an_openai_error(client, demo_priced):
    response = client.delete("/v1/estimate")

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.django_db(transaction=True)
def test_the_live_server_answers_without_an_api_key(live_server_url, demo_catalog):
    import httpx

    response = httpx.get(
        f"{live_server_url}/v1/estimate",
        params={"model": "demo", "input_tokens": 10, "output_tokens": 10},
    )

    assert response.status_code == 200
    assert response.json()["cost_micro_usd"] == 30


def test_a_model_without_a_price_is_400_model_not_priced(client, demo_priced, warm_catalog):
    from gateway.models import Model

    Model.objects.create(id="free-lunch", title="Free Lunch")
    warm_catalog()

    response = client.get("/v1/estimate?model=free-lunch&input_tokens=1&output_tokens=1")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "model_not_priced"


def test_a_disabled_model_is_not_found(client, demo_priced, warm_catalog):
    from gateway.models import Model

    Model.objects.filter(id="demo").update(enabled=False)
    warm_catalog()

    response = client.get("/v1/estimate?model=demo&input_tokens=1&output_tokens=1")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


def chat_body(size: int) -> bytes:
    """A valid estimate body of about `size` bytes."""
    text = "lorem ipsum " * (size // 12)
    return orjson.dumps({"model": "demo", "messages": [{"role": "user", "content": text}]})


def test_a_body_over_the_estimate_limit_is_413(client, demo_priced):
    body = chat_body(300 * 1024)

    response = client.post("/v1/estimate", body, content_type="application/json")

    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "request_too_large"
    assert error["type"] == "invalid_request_error"
    assert str(256 * 1024) in error["message"]


def test_the_estimate_limit_is_a_setting_of_its_own(client, demo_priced, settings):
    settings.ESTIMATE_MAX_BYTES = 2_000

    small = client.post("/v1/estimate", chat_body(1_000), content_type="application/json")
    large = client.post("/v1/estimate", chat_body(3_000), content_type="application/json")

    assert small.status_code == 200
    assert large.status_code == 413
    assert "2000 bytes" in large.json()["error"]["message"]


def test_the_prompt_is_counted_off_the_event_loop(client, demo_priced, monkeypatch):
    from gateway import estimate

    counted_on_a_loop: list[bool] = []
    real = estimate.count_prompt

    def recording(*args: Any) -> int:
        try:
            asyncio.get_running_loop()
            counted_on_a_loop.append(True)
        except RuntimeError:
            counted_on_a_loop.append(False)
        return real(*args)

    monkeypatch.setattr(estimate, "count_prompt", recording)

    response = client.post("/v1/estimate", chat_body(1_000), content_type="application/json")

    assert response.status_code == 200
    assert counted_on_a_loop == [False]


def test_estimates_are_rate_limited_per_client_address(client, demo_priced, settings):
    settings.ESTIMATE_REQUESTS_PER_MINUTE = 3
    url = "/v1/estimate?model=demo&input_tokens=1&output_tokens=1"

    first = [client.get(url, REMOTE_ADDR="198.51.100.7").status_code for _ in range(3)]
    refused = client.get(url, REMOTE_ADDR="198.51.100.7")
    posted = client.post(
        "/v1/estimate", chat_body(100), content_type="application/json", REMOTE_ADDR="198.51.100.7"
    )
    elsewhere = client.get(url, REMOTE_ADDR="198.51.100.8")

    assert first == [200, 200, 200]
    assert refused.status_code == posted.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert elsewhere.status_code == 200


def test_an_ipv6_client_is_counted_by_its_64_block(client, demo_priced, settings):
    settings.ESTIMATE_REQUESTS_PER_MINUTE = 2
    url = "/v1/estimate?model=demo&input_tokens=1&output_tokens=1"

    answers = [client.get(url, REMOTE_ADDR=f"2001:db8:1:2::{n}").status_code for n in range(1, 4)]
    other_block = client.get(url, REMOTE_ADDR="2001:db8:1:3::1")

    assert answers == [200, 200, 429]
    assert other_block.status_code == 200


@pytest.mark.django_db(transaction=True)
def test_behind_the_proxy_the_forwarded_address_is_the_client(
    live_server_url, demo_catalog, settings
):
    import httpx

    settings.ESTIMATE_REQUESTS_PER_MINUTE = 2
    params = {"model": "demo", "input_tokens": 1, "output_tokens": 1}

    def status(forwarded_for: str) -> int:
        headers = {"X-Forwarded-For": forwarded_for}
        response = httpx.get(f"{live_server_url}/v1/estimate", params=params, headers=headers)
        return response.status_code

    assert [status("203.0.113.5") for _ in range(3)] == [200, 200, 429]
    assert status("203.0.113.6") == 200
