"""Money is shown by one rule everywhere, in USD or in the operator's credit unit too."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import run_checks

from accounts.models import ApiKey
from billing.money import format_money, format_usd
from gateway.models import Model, Provider, Route


@pytest.fixture
def ico(settings: Any) -> None:
    """Botstrapp's unit: 1 ICO = $0.001."""
    settings.CREDIT_UNIT_NAME = "ICO"
    settings.CREDIT_UNIT_MICRO_USD = 1000


@pytest.mark.parametrize(
    ("micro", "shown"),
    [
        (0, "$0.00"),
        (1, "$0.000001"),
        (90, "$0.00009"),
        (99, "$0.000099"),
        (10_000, "$0.01"),
        (12_345, "$0.012345"),
        (19_999, "$0.019999"),
        (1_000_000, "$1.00"),
        (1_200_000, "$1.20"),
        (1_234_567_890, "$1,234.56789"),
        (-1_000_000, "-$1.00"),
        (-99, "-$0.000099"),
    ],
)
def test_usd_is_exact_to_the_micro_dollar_with_at_least_cents(micro: int, shown: str) -> None:
    assert format_usd(micro) == shown
    assert format_money(micro) == shown


@pytest.mark.parametrize(
    ("micro", "shown"),
    [
        (0, "0 ICO ($0.00)"),
        (1, "0.001 ICO ($0.000001)"),
        (99, "0.099 ICO ($0.000099)"),
        (19_000, "19 ICO ($0.019)"),
        (1_000_000, "1,000 ICO ($1.00)"),
        (1_234_567_890, "1,234,567.89 ICO ($1,234.56789)"),
        (-1_000_000, "-1,000 ICO (-$1.00)"),
    ],
)
def test_with_a_credit_unit_amounts_show_the_unit_then_usd(ico: None, micro: int, shown: str):
    assert format_money(micro) == shown
    assert format_usd(micro) == shown[shown.index("(") + 1 : -1]


@pytest.mark.parametrize(
    ("name", "micro_usd", "check_id"),
    [
        ("", 1000, "console.E010"),
        ("<b>", 1000, "console.E011"),
        ("1CO", 1000, "console.E011"),
        ("ICO", 0, "console.E012"),
        ("ICO", -5, "console.E012"),
    ],
)
def test_a_bad_credit_unit_is_refused_by_a_system_check(
    settings: Any, name: str, micro_usd: int, check_id: str
) -> None:
    settings.CREDIT_UNIT_NAME = name
    settings.CREDIT_UNIT_MICRO_USD = micro_usd

    assert check_id in [issue.id for issue in run_checks()]


@pytest.mark.parametrize(("name", "micro_usd"), [("", 0), ("ICO", 1000), ("credits", 1)])
def test_a_good_credit_unit_passes_the_checks(settings: Any, name: str, micro_usd: int) -> None:
    settings.CREDIT_UNIT_NAME = name
    settings.CREDIT_UNIT_MICRO_USD = micro_usd

    assert not [i.id for i in run_checks() if i.id.startswith("console.E01")]


@pytest.mark.django_db
def test_the_billing_page_shows_the_balance_in_the_unit(client, ico, make_customer) -> None:
    customer = make_customer(credit_micro_usd=12_345_678)
    client.force_login(customer.user)

    body = client.get("/billing/").content.decode()

    assert '<p class="stat" data-testid="balance">12,345.678 ICO ($12.345678)</p>' in body


@pytest.mark.django_db
def test_package_prices_stay_in_dollars_and_their_credit_is_in_the_unit(
    client, ico, make_customer, default_packages
) -> None:
    client.force_login(make_customer().user)

    body = client.get("/billing/").content.decode()

    assert '<p class="package-price">$5.00</p>' in body
    assert '<p class="package-credit">5,000 ICO ($5.00) of credit</p>' in body


@pytest.mark.django_db(transaction=True)
def test_the_account_api_adds_the_unit_amounts(client, ico, make_customer) -> None:
    customer = make_customer(credit_micro_usd=2_500_000)
    _, secret = ApiKey.objects.mint(user=customer.user, name="ops", can_manage=True)

    data = client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).json()

    assert data["balance"] == {
        "micro_usd": 2_500_000,
        "available_micro_usd": 2_500_000,
        "display": "2,500 ICO ($2.50)",
        "units": 2500.0,
        "available_units": 2500.0,
    }
    assert data["credit_unit"] == {"name": "ICO", "micro_usd": 1000}


@pytest.mark.django_db(transaction=True)
def test_without_a_unit_the_account_api_says_so(client, make_customer) -> None:
    customer = make_customer(credit_micro_usd=2_500_000)
    _, secret = ApiKey.objects.mint(user=customer.user, name="ops", can_manage=True)

    data = client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).json()

    assert data["balance"]["display"] == "$2.50"
    assert data["balance"]["units"] is None
    assert data["credit_unit"] is None


@pytest.fixture
def priced_model(db, warm_catalog) -> None:
    provider = Provider.objects.create(name="up", kind="openai", base_url="http://127.0.0.1:9")
    model = Model.objects.create(
        id="gpt-mini", title="GPT Mini", input_price=150_000, output_price=600_000
    )
    Route.objects.create(model=model, provider=provider, upstream_model="gpt-mini")
    warm_catalog()


def test_the_catalog_api_gives_each_price_in_micro_usd_usd_and_the_unit(
    client, ico, priced_model
) -> None:
    data = client.get("/v1/catalog").json()

    assert data["credit_unit"] == {"name": "ICO", "micro_usd": 1000}
    pricing = data["data"][0]["pricing"]
    assert pricing["input"] == {"micro_usd": 150_000, "usd": 0.15, "units": 150.0}
    assert pricing["output"] == {"micro_usd": 600_000, "usd": 0.6, "units": 600.0}


def test_the_pricing_page_shows_prices_in_the_unit(client, ico, priced_model) -> None:
    body = client.get("/pricing/").content.decode()

    assert 'data-micro-usd="150000">150 ICO ($0.15)</td>' in body
    assert 'data-micro-usd="600000">600 ICO ($0.60)</td>' in body


@pytest.mark.django_db(transaction=True)
def test_the_generation_and_the_estimate_add_the_unit_amounts(
    client, ico, settings, demo_catalog, customer, warm_catalog
) -> None:
    settings.DEMO_TOKEN_DELAY_MS = 1
    warm_catalog()
    auth = {"Authorization": f"Bearer {customer.secret}"}
    answer = client.post(
        "/v1/chat/completions",
        data={"model": "demo", "messages": [{"role": "user", "content": "Hi"}]},
        content_type="application/json",
        headers=auth,
    )
    request_id = answer.headers["x-request-id"]

    generation = client.get(f"/v1/generation/{request_id}", headers=auth).json()
    estimate = client.get("/v1/estimate?model=demo&input_tokens=1000&output_tokens=500").json()

    cost = generation["cost_micro_usd"]
    assert cost > 0
    assert generation["cost_units"] == cost / 1000
    assert (estimate["cost_micro_usd"], estimate["cost_units"]) == (2_000, 2.0)
    assert estimate["credit_unit"] == {"name": "ICO", "micro_usd": 1000}
