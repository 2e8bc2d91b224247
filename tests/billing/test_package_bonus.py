"""Bonus credit on packages: granted with the purchase by the Stripe webhook, once, as its
own ledger entry, and shown as bonus tiers on the billing page."""

from __future__ import annotations

from typing import Any

import pytest

from billing.models import CreditPackage, LedgerEntry, Purchase
from tests.billing.fake_stripe import charge, event

pytestmark = pytest.mark.django_db


@pytest.fixture
def bought_plus(customer_client, fake_stripe, plus) -> dict[str, Any]:
    """A paid Checkout Session for Plus: pay $20, get $20 of credit and a $1 bonus."""
    customer_client.post("/billing/checkout/", {"package": plus.pk})
    return fake_stripe.paid(next(iter(fake_stripe.sessions)))


def entries(customer) -> list[tuple[str, int, str]]:
    return list(
        customer.account.entries.filter(
            kind__in=[LedgerEntry.Kind.PURCHASE, LedgerEntry.Kind.BONUS]
        )
        .order_by("id")
        .values_list("kind", "amount_micro_usd", "idempotency_key")
    )


def balance(customer) -> int:
    customer.account.refresh_from_db()
    return customer.account.balance_micro_usd


def test_the_purchase_and_its_bonus_are_two_entries_granted_together(
    post_webhook, bought_plus, customer
) -> None:
    response = post_webhook(event("checkout.session.completed", bought_plus))

    assert response.json()["outcome"] == "credited"
    key = f"stripe:checkout:{bought_plus['id']}"
    assert entries(customer) == [
        ("purchase", 20_000_000, key),
        ("bonus", 1_000_000, f"{key}:bonus"),
    ]
    assert customer.account.entries.get(kind="bonus").memo == "Bonus with the Plus package"
    assert balance(customer) == 10_000_000 + 21_000_000
    assert customer.account.ledger_sum() == balance(customer)


@pytest.mark.parametrize(
    "second", ["checkout.session.completed", "checkout.session.async_payment_succeeded"]
)
def test_a_second_delivery_grants_neither_again(
    post_webhook, bought_plus, customer, second
) -> None:
    post_webhook(event("checkout.session.completed", bought_plus))
    post_webhook(event(second, bought_plus))
    post_webhook(event("checkout.session.completed", bought_plus, event_id="evt_same"))
    post_webhook(event("checkout.session.completed", bought_plus, event_id="evt_same"))

    assert [kind for kind, _, _ in entries(customer)] == ["purchase", "bonus"]
    assert balance(customer) == 31_000_000


def test_the_bonus_is_the_one_offered_at_checkout_even_if_the_package_changed(
    post_webhook, bought_plus, customer, plus
) -> None:
    CreditPackage.objects.filter(pk=plus.pk).update(bonus_micro_usd=9_000_000)

    post_webhook(event("checkout.session.completed", bought_plus))

    assert customer.account.entries.get(kind="bonus").amount_micro_usd == 1_000_000
    assert Purchase.objects.get().bonus_micro_usd == 1_000_000


def test_a_package_without_a_bonus_writes_no_bonus_entry(
    customer_client, fake_stripe, starter, post_webhook, customer
) -> None:
    customer_client.post("/billing/checkout/", {"package": starter.pk})
    session = fake_stripe.paid(next(iter(fake_stripe.sessions)))

    post_webhook(event("checkout.session.completed", session))

    assert [kind for kind, _, _ in entries(customer)] == ["purchase"]


def test_a_full_refund_takes_back_the_bonus_too_in_one_entry(
    post_webhook, bought_plus, customer
) -> None:
    post_webhook(event("checkout.session.completed", bought_plus))
    refund = charge(payment_intent=bought_plus["payment_intent"], amount=2000, refunded=2000)

    post_webhook(event("charge.refunded", refund))

    assert customer.account.entries.get(kind="refund").amount_micro_usd == -21_000_000
    assert balance(customer) == 10_000_000


def test_the_billing_page_shows_the_bonus_tiers(customer_client, fake_stripe, default_packages):
    body = customer_client.get("/billing/").content.decode()

    assert "<caption>Bonus tiers:" in body
    tiers = body[body.index('<table class="bonus-tiers">') :]
    tiers = tiers[: tiers.index("</table>")]
    assert tiers.count("<tr>") == 4  # the header and Plus, Pro, Ultra: Starter has no bonus
    assert '<th scope="row">Plus</th>' in tiers
    assert '<meter min="0" max="15.0" value="5.0" aria-hidden="true"></meter> +5% ($1.00)' in tiers
    assert '<meter min="0" max="15.0" value="15.0" aria-hidden="true"></meter> +15% ($15.00)' in (
        tiers
    )
    assert '<td class="num" data-label="You get">$115.00</td>' in tiers
    assert "Starter" not in tiers


def test_without_bonuses_there_are_no_tiers(customer_client, fake_stripe, default_packages):
    CreditPackage.objects.update(bonus_micro_usd=0)

    assert "bonus-tiers" not in customer_client.get("/billing/").content.decode()
