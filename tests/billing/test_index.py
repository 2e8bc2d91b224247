"""GET /billing/: balance, packages, redemption, daily spend and the transaction history."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from billing.ledger import credit_account
from billing.models import LedgerEntry

pytestmark = pytest.mark.django_db


def spend(account, amount: int, *, days_ago: int, key: str) -> None:
    LedgerEntry.objects.create(
        account=account,
        kind=LedgerEntry.Kind.USAGE,
        amount_micro_usd=-amount,
        idempotency_key=key,
        memo="demo",
        created_at=timezone.now() - timedelta(days=days_ago),
    )


def test_the_billing_page_shows_the_balance_and_the_packages(
    customer_client, fake_stripe, default_packages
):
    body = customer_client.get("/billing/").content.decode()

    assert '<p class="stat" data-testid="balance">$10.00</p>' in body
    for name in ("Starter", "Plus", "Pro", "Ultra"):
        assert f"Buy {name}</button>" in body
    assert '<p class="badge">+15% bonus</p>' in body
    assert "Card purchases are off" not in body
    assert 'data-testid="low-balance"' not in body


def test_purchases_are_off_without_stripe_keys(customer_client, stripe_off, default_packages):
    body = customer_client.get("/billing/").content.decode()

    assert "Card purchases are off on this server" in body
    assert 'disabled aria-describedby="purchases-off"' in body


def test_a_low_balance_shows_a_warning(make_customer, client):
    poor = make_customer(credit_micro_usd=400_000)
    client.force_login(poor.user)

    body = client.get("/billing/").content.decode()

    assert 'data-testid="low-balance"' in body
    assert "$0.40" in body


def test_inactive_packages_are_not_offered(customer_client, starter):
    starter.active = False
    starter.save()

    assert "Buy Starter" not in customer_client.get("/billing/").content.decode()


def test_usage_is_rolled_up_per_day_in_the_history(customer_client, customer):
    spend(customer.account, 100_000, days_ago=0, key="a")
    spend(customer.account, 250_000, days_ago=0, key="b")
    spend(customer.account, 50_000, days_ago=1, key="c")

    history = customer_client.get("/billing/").context["history"]

    usage = [row for row in history if row.kind == "usage"]
    assert [(row.amount_micro_usd, row.count) for row in usage] == [(-350_000, 2), (-50_000, 1)]
    assert {row.kind for row in history} == {"usage", "grant", "adjustment"}


def test_the_history_lists_grants_purchases_refunds_and_adjustments(customer_client, customer):
    credit_account(
        account=customer.account,
        amount=-1_000_000,
        kind="refund",
        idempotency_key="r",
        memo="Stripe refund",
    )

    body = customer_client.get("/billing/").content.decode()

    assert "Sign-up credit" in body
    assert "Stripe refund" in body
    assert "-$1.00" in body


def test_the_history_is_paginated_and_pages_load_with_htmx(customer_client, customer):
    for n in range(25):
        credit_account(
            account=customer.account,
            amount=10_000,
            kind="grant",
            idempotency_key=f"g{n}",
            memo=f"grant {n}",
        )

    first = customer_client.get("/billing/")
    assert len(first.context["history"]) == 20
    assert "Page 1 of 2" in first.content.decode()

    second = customer_client.get(
        "/billing/?page=2", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="history"
    )
    body = second.content.decode()
    assert body.startswith('<section id="history"')
    assert "Page 2 of 2" in body
    assert "<html" not in body


def test_the_daily_spend_chart_draws_a_bar_per_day(customer_client, customer):
    spend(customer.account, 2_000_000, days_ago=0, key="a")
    spend(customer.account, 1_000_000, days_ago=3, key="b")

    response = customer_client.get("/billing/")
    chart = response.context["chart"]

    assert len(chart.bars) == 30
    assert chart.total_micro_usd == 3_000_000
    assert chart.bars[-1].height == 2 * chart.bars[-4].height
    assert chart.bars[-1].y == chart.baseline - chart.bars[-1].height
    assert [bar.height for bar in chart.bars[:-4]] == [0] * 26
    assert '<svg class="spend-chart"' in response.content.decode()


def test_without_usage_the_chart_says_so(customer_client):
    body = customer_client.get("/billing/").content.decode()

    assert "No usage in this period yet" in body
    assert "<svg" not in body


def test_a_cancelled_checkout_says_nothing_was_charged(customer_client):
    body = customer_client.get("/billing/?checkout=cancelled").content.decode()

    assert "Checkout was cancelled; nothing was charged." in body


def test_the_balance_partial_refreshes_alone(customer_client):
    body = customer_client.get("/billing/balance/").content.decode()

    assert body.startswith('<section id="balance"')
    assert "$10.00" in body


def test_the_billing_page_needs_a_signed_in_user(client):
    response = client.get("/billing/")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_the_usage_page_still_works(customer_client):
    assert customer_client.get("/billing/usage/").status_code == 200


def test_the_sign_up_grant_alone_shows_no_low_balance_warning(client, settings):
    from accounts.models import User
    from billing.ledger import account_for

    settings.SIGNUP_GRANT_MICRO_USD = settings.LOW_BALANCE_WARNING_MICRO_USD
    user = User.objects.create_user("fresh@example.com", "pw-123-secret")
    assert account_for(user).balance_micro_usd == settings.LOW_BALANCE_WARNING_MICRO_USD
    client.force_login(user)

    assert 'data-testid="low-balance"' not in client.get("/billing/").content.decode()
