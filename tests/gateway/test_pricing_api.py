"""GET /v1/pricing (per key: what each model costs) and GET /v1/pricing/public (no key:
packages, bonuses, the credit unit and its exchange rate)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.models import Model, Provider, Route
from tests.billing.conftest import default_packages

__all__ = ["default_packages"]

pytestmark = pytest.mark.django_db(transaction=True)


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def priced_catalog(db, warm_catalog) -> None:
    provider = Provider.objects.create(name="up", kind="openai", base_url="http://127.0.0.1:9")
    for model_id, fields in {
        "budget": {"input_price": 100_000, "output_price": 400_000, "request_price": 9_000},
        "premium": {
            "input_price": 3_000_000,
            "output_price": 15_000_000,
            "cached_input_price": 300_000,
            "cache_write_price": 3_750_000,
            "cache_write_1h_price": 6_000_000,
            "request_price": 49_000,
        },
        "per-message": {"input_price": None, "output_price": None, "request_price": 19_000},
    }.items():
        model = Model.objects.create(id=model_id, title=model_id.title(), **fields)
        Route.objects.create(model=model, provider=provider, upstream_model=model_id)
    Model.objects.create(id="unrouted", input_price=1, output_price=1)
    Model.objects.create(id="unpriced", input_price=None, output_price=None)
    warm_catalog()


def money(micro: int, units: float | None = None) -> dict[str, Any]:
    return {"micro_usd": micro, "usd": micro / 1_000_000, "units": units}


def test_it_lists_what_each_callable_model_costs_the_key(client, priced_catalog, customer):
    response = client.get("/v1/pricing", headers=auth(customer.secret))

    assert response.status_code == 200
    data = response.json()
    assert data["object"] == "list"
    assert data["credit_unit"] is None
    assert [m["id"] for m in data["data"]] == ["budget", "per-message", "premium"]
    budget = data["data"][0]
    assert budget["object"] == "model.pricing"
    assert budget["title"] == "Budget"
    assert budget["per_million_tokens"] == {
        "input": money(100_000),
        "output": money(400_000),
        "cache_read": money(100_000),
        "cache_write": money(100_000),
        "cache_write_1h": money(100_000),
    }
    assert budget["per_request"] == money(9_000)
    assert data["data"][1]["per_million_tokens"]["input"] == money(0)
    assert data["data"][1]["per_request"] == money(19_000)


def test_prices_are_marked_up_and_given_in_the_credit_unit(
    client, settings, priced_catalog, customer, warm_catalog
):
    settings.PRICE_MARKUP_PERCENT = 10
    settings.CREDIT_UNIT_NAME = "ICO"
    settings.CREDIT_UNIT_MICRO_USD = 1000
    warm_catalog()

    response = client.get("/v1/pricing?model=Premium", headers=auth(customer.secret))

    data = response.json()
    assert data["credit_unit"] == {"name": "ICO", "micro_usd": 1000}
    [premium] = data["data"]
    assert premium["per_million_tokens"] == {
        "input": money(3_300_000, 3300.0),
        "output": money(16_500_000, 16500.0),
        "cache_read": money(330_000, 330.0),
        "cache_write": money(4_125_000, 4125.0),
        "cache_write_1h": money(6_600_000, 6600.0),
    }
    assert premium["per_request"] == money(53_900, 53.9)


def test_a_key_sees_only_the_models_its_allowlist_permits(client, priced_catalog, make_customer):
    customer = make_customer(allowed_models=["budget"])

    data = client.get("/v1/pricing", headers=auth(customer.secret)).json()

    assert [m["id"] for m in data["data"]] == ["budget"]


@pytest.mark.parametrize(
    ("query", "status", "code", "param"),
    [
        ("?model=", 400, None, "model"),
        ("?model=%20", 400, None, "model"),
        ("?model=nope", 404, "model_not_found", "model"),
        ("?model=unrouted", 404, "model_not_found", "model"),
        ("?model=unpriced", 400, "model_not_priced", "model"),
        ("?model=premium", 403, "model_not_allowed", "model"),
    ],
)
def test_bad_queries_get_the_openai_error_object(
    client, priced_catalog, make_customer, query, status, code, param
):
    customer = make_customer(allowed_models=["budget"])

    response = client.get(f"/v1/pricing{query}", headers=auth(customer.secret))

    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["code"], error["param"]) == (code, param)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer sk-sb-wrong"}])
def test_it_needs_a_valid_key(client, priced_catalog, headers):
    response = client.get("/v1/pricing", headers=headers)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize("path", ["/v1/pricing", "/v1/pricing/public"])
def test_other_methods_are_refused(client, customer, path):
    response = client.post(path, headers=auth(customer.secret))

    assert response.status_code == 405
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_the_public_offer_needs_no_key(client, default_packages):
    response = client.get("/v1/pricing/public")

    assert response.status_code == 200
    data = response.json()
    assert data["object"] == "pricing.public"
    assert data["currency"] == "usd"
    assert data["credit_unit"] is None
    assert data["exchange_rate"] == {"micro_usd_per_usd": 1_000_000, "units_per_usd": None}
    assert data["signup_grant"] == money(1_000_000)
    assert [p["id"] for p in data["packages"]] == ["starter", "plus", "pro", "ultra"]
    assert data["packages"][1] == {
        "id": "plus",
        "object": "credit_package",
        "name": "Plus",
        "price": money(20_000_000),
        "credit": money(20_000_000),
        "bonus": money(1_000_000),
        "total_credit": money(21_000_000),
        "bonus_percent": 5.0,
    }
    assert data["bonus_tiers"] == [
        {"package": "plus", "min_price": money(20_000_000), "bonus_percent": 5.0},
        {"package": "pro", "min_price": money(50_000_000), "bonus_percent": 10.0},
        {"package": "ultra", "min_price": money(100_000_000), "bonus_percent": 15.0},
    ]


def test_the_public_offer_gives_the_exchange_rate_of_the_credit_unit(
    client, settings, default_packages
):
    settings.CREDIT_UNIT_NAME = "ICO"
    settings.CREDIT_UNIT_MICRO_USD = 1000

    data = client.get("/v1/pricing/public").json()

    assert data["credit_unit"] == {"name": "ICO", "micro_usd": 1000}
    assert data["exchange_rate"] == {"micro_usd_per_usd": 1_000_000, "units_per_usd": 1000.0}
    assert data["packages"][3]["total_credit"] == money(115_000_000, 115_000.0)


def test_inactive_packages_are_not_offered(client, default_packages):
    from billing.models import CreditPackage

    CreditPackage.objects.filter(slug="ultra").update(active=False)

    data = client.get("/v1/pricing/public").json()

    assert [p["id"] for p in data["packages"]] == ["starter", "plus", "pro"]
    assert [t["package"] for t in data["bonus_tiers"]] == ["plus", "pro"]
