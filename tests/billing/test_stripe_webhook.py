"""POST /billing/stripe/webhook: signed, idempotent on the event id, credits once."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test import Client

from billing.models import LedgerEntry, Purchase, StripeEvent
from tests.billing.fake_stripe import charge, event, signed

pytestmark = pytest.mark.django_db


@pytest.fixture
def checkout(customer_client, fake_stripe, starter):
    """A started purchase of the starter package ($5): returns the paid session."""
    customer_client.post("/billing/checkout/", {"package": starter.pk})
    session_id = next(iter(fake_stripe.sessions))
    return fake_stripe.paid(session_id)


def balance(customer) -> int:
    customer.account.refresh_from_db()
    return customer.account.balance_micro_usd


def test_a_completed_checkout_credits_the_package(post_webhook, checkout, customer):
    response = post_webhook(event("checkout.session.completed", checkout))

    assert response.status_code == 200
    assert response.json()["outcome"] == "credited"
    assert balance(customer) == 15_000_000
    entry = customer.account.entries.get(kind="purchase")
    assert entry.amount_micro_usd == 5_000_000
    assert entry.idempotency_key == f"stripe:checkout:{checkout['id']}"
    purchase = Purchase.objects.get(stripe_session_id=checkout["id"])
    assert purchase.status == Purchase.Status.PAID
    assert purchase.payment_intent_id == checkout["payment_intent"]


def test_a_bonus_is_credited_with_the_package(
    customer_client, fake_stripe, plus, post_webhook, customer
):
    customer_client.post("/billing/checkout/", {"package": plus.pk})
    session = fake_stripe.paid(next(iter(fake_stripe.sessions)))

    post_webhook(event("checkout.session.completed", session))

    assert balance(customer) == 10_000_000 + 21_000_000


def test_a_replayed_event_credits_once(post_webhook, checkout, customer):
    payload = event("checkout.session.completed", checkout)

    first = post_webhook(payload)
    second = post_webhook(payload)

    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["outcome"] == "duplicate"
    assert balance(customer) == 15_000_000
    assert customer.account.entries.filter(kind="purchase").count() == 1


def test_two_events_for_the_same_session_credit_once(post_webhook, checkout, customer):
    post_webhook(event("checkout.session.completed", checkout))
    response = post_webhook(event("checkout.session.async_payment_succeeded", checkout))

    assert response.json()["outcome"] == "already credited"
    assert balance(customer) == 15_000_000


def test_an_unpaid_completion_waits_for_the_async_payment(post_webhook, checkout, customer):
    unpaid = {**checkout, "payment_status": "unpaid"}

    waiting = post_webhook(event("checkout.session.completed", unpaid))
    assert waiting.json()["outcome"] == "awaiting payment"
    assert balance(customer) == 10_000_000

    paid = post_webhook(event("checkout.session.async_payment_succeeded", checkout))
    assert paid.json()["outcome"] == "credited"
    assert balance(customer) == 15_000_000


def test_a_bad_signature_gets_400_and_no_credit(post_webhook, checkout, customer):
    response = post_webhook(event("checkout.session.completed", checkout), secret="whsec_wrong")

    assert response.status_code == 400
    assert balance(customer) == 10_000_000
    assert not StripeEvent.objects.exists()


def test_a_tampered_body_gets_400(client, checkout, customer):
    body, signature = signed(event("checkout.session.completed", checkout))

    response = client.post(
        "/billing/stripe/webhook",
        data=body.replace("5", "9"),
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=signature,
    )

    assert response.status_code == 400
    assert balance(customer) == 10_000_000


def test_a_missing_signature_gets_400(client, checkout, customer):
    body, _ = signed(event("checkout.session.completed", checkout))

    response = client.post("/billing/stripe/webhook", data=body, content_type="application/json")

    assert response.status_code == 400
    assert balance(customer) == 10_000_000


def test_webhooks_are_refused_without_a_webhook_secret(post_webhook, checkout, customer, settings):
    settings.STRIPE_WEBHOOK_SECRET = ""

    response = post_webhook(event("checkout.session.completed", checkout))

    assert response.status_code == 400
    assert balance(customer) == 10_000_000


def test_an_unknown_event_gets_200_and_changes_nothing(post_webhook, checkout, customer):
    response = post_webhook(event("customer.created", {"id": "cus_1", "object": "customer"}))

    assert response.status_code == 200
    assert response.json()["outcome"] == "ignored"
    assert balance(customer) == 10_000_000
    assert not StripeEvent.objects.exists()
    assert Purchase.objects.get().status == Purchase.Status.PENDING


def test_a_session_that_is_not_ours_is_acknowledged_and_ignored(post_webhook, customer):
    foreign = {"id": "cs_elsewhere", "object": "checkout.session", "payment_status": "paid"}

    response = post_webhook(event("checkout.session.completed", foreign))

    assert response.status_code == 200
    assert response.json()["outcome"] == "not a Switchboard purchase"
    assert balance(customer) == 10_000_000


def test_a_session_whose_purchase_row_is_missing_is_credited_from_its_metadata(
    post_webhook, checkout, customer
):
    Purchase.objects.all().delete()

    response = post_webhook(event("checkout.session.completed", checkout))

    assert response.json()["outcome"] == "credited"
    assert balance(customer) == 15_000_000
    assert Purchase.objects.get().status == Purchase.Status.PAID


def test_a_refund_debits_the_refunded_credit(post_webhook, checkout, customer):
    post_webhook(event("checkout.session.completed", checkout))
    refund = charge(payment_intent=checkout["payment_intent"], amount=500, refunded=500)

    response = post_webhook(event("charge.refunded", refund))

    assert response.status_code == 200
    assert balance(customer) == 10_000_000
    entry = customer.account.entries.get(kind="refund")
    assert entry.amount_micro_usd == -5_000_000
    assert not entry.flagged
    assert Purchase.objects.get().status == Purchase.Status.REFUNDED


def test_partial_refunds_debit_their_share_once_each(post_webhook, checkout, customer):
    post_webhook(event("checkout.session.completed", checkout))
    pi = checkout["payment_intent"]

    post_webhook(event("charge.refunded", charge(payment_intent=pi, amount=500, refunded=200)))
    second = event("charge.refunded", charge(payment_intent=pi, amount=500, refunded=500))
    post_webhook(second)
    post_webhook(second)

    debits = list(
        customer.account.entries.filter(kind="refund").values_list("amount_micro_usd", flat=True)
    )
    assert sorted(debits) == [-3_000_000, -2_000_000]
    assert balance(customer) == 10_000_000


def test_a_refund_of_spent_credit_is_flagged_below_zero(post_webhook, checkout, customer):
    from billing.ledger import credit_account

    post_webhook(event("checkout.session.completed", checkout))
    credit_account(
        account=customer.account,
        amount=-13_000_000,
        kind="usage",
        idempotency_key="spent",
    )

    post_webhook(
        event(
            "charge.refunded",
            charge(payment_intent=checkout["payment_intent"], amount=500, refunded=500),
        )
    )

    assert balance(customer) == -3_000_000
    assert customer.account.entries.get(kind="refund").flagged


def test_a_refund_for_an_unknown_payment_changes_nothing(post_webhook, customer):
    response = post_webhook(
        event("charge.refunded", charge(payment_intent="pi_x", amount=500, refunded=500))
    )

    assert response.status_code == 200
    assert response.json()["outcome"] == "no matching purchase"
    assert balance(customer) == 10_000_000


def test_the_ledger_still_matches_the_balance(post_webhook, checkout, customer):
    post_webhook(event("checkout.session.completed", checkout))
    post_webhook(
        event(
            "charge.refunded",
            charge(payment_intent=checkout["payment_intent"], amount=500, refunded=300),
        )
    )

    customer.account.refresh_from_db()
    assert customer.account.ledger_sum() == customer.account.balance_micro_usd == 12_000_000


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_deliveries_of_one_event_credit_once(checkout, customer):
    """Real concurrency on PostgreSQL (the unique event id blocks the second insert until
    the first commits); SQLite serialises the two transactions, and the assertion holds."""
    body, signature = signed(event("checkout.session.completed", checkout))
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def deliver() -> None:
        try:
            barrier.wait()
            response = Client().post(
                "/billing/stripe/webhook",
                data=body,
                content_type="application/json",
                HTTP_STRIPE_SIGNATURE=signature,
            )
            outcomes.append(f"{response.status_code} {response.json()['outcome']}")
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == ["200 credited", "200 duplicate"]
    assert balance(customer) == 15_000_000
    assert LedgerEntry.objects.filter(kind="purchase").count() == 1
    assert StripeEvent.objects.count() == 1
