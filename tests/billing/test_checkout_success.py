"""GET /billing/checkout/success/: waits (polling) for the webhook; grants nothing itself."""

from __future__ import annotations

import pytest

from tests.billing.fake_stripe import event

pytestmark = pytest.mark.django_db


@pytest.fixture
def session(customer_client, fake_stripe, starter):
    customer_client.post("/billing/checkout/", {"package": starter.pk})
    return fake_stripe.paid(next(iter(fake_stripe.sessions)))


def test_the_success_page_waits_for_the_webhook_and_credits_nothing(
    customer_client, customer, session
):
    response = customer_client.get(f"/billing/checkout/success/?session_id={session['id']}")

    body = response.content.decode()
    assert response.status_code == 200
    assert "Waiting for Stripe to confirm your payment of $5.00" in body
    assert f'hx-get="/billing/checkout/status/?session_id={session["id"]}"' in body
    assert 'hx-trigger="load delay:1s"' in body
    customer.account.refresh_from_db()
    assert customer.account.balance_micro_usd == 10_000_000


def test_the_status_shows_the_new_balance_once_the_webhook_credited(
    customer_client, session, post_webhook
):
    post_webhook(event("checkout.session.completed", session))

    response = customer_client.get(f"/billing/checkout/status/?session_id={session['id']}")

    body = response.content.decode()
    assert "$5.00 was added to your account." in body
    assert '<strong data-testid="new-balance">$15.00</strong>' in body
    assert "hx-trigger" not in body


def test_another_users_session_is_not_found(client, make_customer, session):
    stranger = make_customer()
    client.force_login(stranger.user)

    assert client.get(f"/billing/checkout/success/?session_id={session['id']}").status_code == 404
    assert client.get(f"/billing/checkout/status/?session_id={session['id']}").status_code == 404


def test_an_unknown_session_is_not_found(customer_client):
    assert customer_client.get("/billing/checkout/success/?session_id=cs_nope").status_code == 404
