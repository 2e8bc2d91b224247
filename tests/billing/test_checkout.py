"""POST /billing/checkout/: a Stripe Checkout Session made on the server, nothing credited."""

from __future__ import annotations

import pytest

from billing.models import Purchase

pytestmark = pytest.mark.django_db


def test_buying_a_package_redirects_to_stripe_checkout(
    customer_client, customer, fake_stripe, starter
):
    response = customer_client.post("/billing/checkout/", {"package": starter.pk})

    session = next(iter(fake_stripe.sessions.values()))
    assert response.status_code == 303
    assert response["Location"] == session["url"]
    purchase = Purchase.objects.get(stripe_session_id=session["id"])
    assert purchase.account == customer.account
    assert purchase.status == Purchase.Status.PENDING
    assert purchase.credit_micro_usd == starter.total_credit_micro_usd


def test_the_session_is_a_payment_for_the_package_with_the_account_in_metadata(
    customer_client, customer, fake_stripe, plus
):
    customer_client.post("/billing/checkout/", {"package": plus.pk})

    (request,) = fake_stripe.requests
    form = request["form"]
    assert request["auth"] == "Bearer sk_test_switchboard"
    assert form["mode"] == "payment"
    assert form["line_items[0][price_data][currency]"] == "usd"
    assert form["line_items[0][price_data][unit_amount]"] == "2000"
    assert form["line_items[0][quantity]"] == "1"
    assert form["metadata[account_id]"] == str(customer.account.pk)
    assert form["metadata[package_id]"] == str(plus.pk)
    assert form["client_reference_id"] == str(customer.account.pk)
    assert form["success_url"] == (
        "http://testserver/billing/checkout/success/?session_id={CHECKOUT_SESSION_ID}"
    )
    assert form["cancel_url"] == "http://testserver/billing/?checkout=cancelled"


def test_starting_checkout_credits_nothing(customer_client, customer, fake_stripe, starter):
    customer_client.post("/billing/checkout/", {"package": starter.pk})

    customer.account.refresh_from_db()
    assert customer.account.balance_micro_usd == 10_000_000
    assert customer.account.entries.filter(kind="purchase").count() == 0


def test_an_htmx_buy_answers_with_a_client_redirect(customer_client, fake_stripe, starter):
    response = customer_client.post(
        "/billing/checkout/", {"package": starter.pk}, HTTP_HX_REQUEST="true"
    )

    session = next(iter(fake_stripe.sessions.values()))
    assert response.status_code == 200
    assert response["HX-Redirect"] == session["url"]


def test_buying_is_refused_when_stripe_is_not_configured(customer_client, stripe_off, starter):
    response = customer_client.post("/billing/checkout/", {"package": starter.pk}, follow=True)

    assert response.redirect_chain == [("/billing/", 303)]
    assert "Card purchases are turned off" in response.content.decode()
    assert not Purchase.objects.exists()


def test_a_stripe_failure_shows_an_error_and_records_no_purchase(
    customer_client, fake_stripe, starter
):
    fake_stripe.fail_with = 400

    response = customer_client.post("/billing/checkout/", {"package": starter.pk}, follow=True)

    assert response.redirect_chain == [("/billing/", 303)]
    assert "could not reach the payment provider" in response.content.decode()
    assert not Purchase.objects.exists()


def test_an_inactive_package_cannot_be_bought(customer_client, fake_stripe, starter):
    starter.active = False
    starter.save()

    response = customer_client.post("/billing/checkout/", {"package": starter.pk})

    assert response.status_code == 404
    assert fake_stripe.requests == []


def test_checkout_needs_a_signed_in_user(client, fake_stripe, starter):
    response = client.post("/billing/checkout/", {"package": starter.pk})

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert fake_stripe.requests == []


def test_checkout_only_accepts_post(customer_client, fake_stripe):
    assert customer_client.get("/billing/checkout/").status_code == 405


def test_a_package_id_that_is_not_a_number_is_not_found(customer_client, fake_stripe):
    response = customer_client.post("/billing/checkout/", {"package": "starter"})

    assert response.status_code == 404
    assert fake_stripe.requests == []
