"""GET/POST /v1/estimate: the cost of a request before making it; no API key needed."""

from __future__ import annotations

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
        "cost_micro_usd": 2_000,
        "cost_usd": 0.002,
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
