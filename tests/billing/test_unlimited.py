"""Unlimited mode: a toggle on the Billing page that turns itself off below the floor."""

from __future__ import annotations

import pytest

from billing.ledger import credit_account, reserve_credits, settle
from billing.models import Account

pytestmark = pytest.mark.django_db


def unlimited(account) -> bool:
    account.refresh_from_db()
    return account.unlimited


def test_the_toggle_turns_unlimited_mode_on_and_off(customer_client, customer):
    on = customer_client.post("/billing/unlimited/", {"enabled": "on"}, HTTP_HX_REQUEST="true")
    assert on.status_code == 200
    assert "Your keys are not rate limited" in on.content.decode()
    assert unlimited(customer.account)

    off = customer_client.post("/billing/unlimited/", {}, HTTP_HX_REQUEST="true")
    assert "Off." in off.content.decode()
    assert not unlimited(customer.account)


def test_unlimited_mode_cannot_be_turned_on_below_the_floor(make_customer, client, settings):
    settings.UNLIMITED_MODE_FLOOR_MICRO_USD = 5_000_000
    poor = make_customer(credit_micro_usd=4_000_000)
    client.force_login(poor.user)

    response = client.post("/billing/unlimited/", {"enabled": "on"}, HTTP_HX_REQUEST="true")

    assert "needs a balance of at least $5.00" in response.content.decode()
    assert not unlimited(poor.account)


def test_without_htmx_the_toggle_redirects_back(customer_client, customer):
    response = customer_client.post("/billing/unlimited/", {"enabled": "on"})

    assert response.status_code == 303
    assert response["Location"] == "/billing/"
    assert unlimited(customer.account)


def test_settling_below_the_floor_turns_unlimited_mode_off(make_customer, settings):
    settings.UNLIMITED_MODE_FLOOR_MICRO_USD = 2_000_000
    spender = make_customer(credit_micro_usd=3_000_000)
    Account.objects.filter(pk=spender.account.pk).update(unlimited=True)

    reservation = reserve_credits(account_id=spender.account.pk, amount=1_500_000, request_id="r1")
    settle(reservation=reservation, cost=1_500_000, usage={"model": "demo"})

    assert not unlimited(spender.account)


def test_settling_above_the_floor_keeps_unlimited_mode_on(make_customer, settings):
    settings.UNLIMITED_MODE_FLOOR_MICRO_USD = 2_000_000
    spender = make_customer(credit_micro_usd=3_000_000)
    Account.objects.filter(pk=spender.account.pk).update(unlimited=True)

    reservation = reserve_credits(account_id=spender.account.pk, amount=500_000, request_id="r2")
    settle(reservation=reservation, cost=500_000, usage={"model": "demo"})

    assert unlimited(spender.account)


def test_a_debit_below_the_floor_turns_unlimited_mode_off(customer, settings):
    Account.objects.filter(pk=customer.account.pk).update(unlimited=True)

    credit_account(
        account=customer.account, amount=-9_500_000, kind="adjustment", idempotency_key="k"
    )

    assert not unlimited(customer.account)


def test_below_the_floor_the_switch_is_disabled_and_says_why(make_customer, client, settings):
    settings.UNLIMITED_MODE_FLOOR_MICRO_USD = 5_000_000
    poor = make_customer(credit_micro_usd=4_000_000)
    client.force_login(poor.user)

    body = client.get("/billing/").content.decode()

    assert 'disabled aria-describedby="unlimited-floor unlimited-help"' in body
    assert "needs a balance of at least $5.00; yours is $4.00" in body


def test_at_the_floor_the_switch_is_enabled(make_customer, client, settings):
    settings.UNLIMITED_MODE_FLOOR_MICRO_USD = 5_000_000
    client.force_login(make_customer(credit_micro_usd=5_000_000).user)

    body = client.get("/billing/").content.decode()

    assert 'data-testid="unlimited-floor"' not in body
    assert 'disabled aria-describedby="unlimited-floor' not in body
