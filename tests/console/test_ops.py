"""The operator page (/ops/): staff only, money per day, providers, holds, the books."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from billing.ledger import credit_account, reserve_credits, settle
from billing.models import BooksCheck, LedgerEntry, Purchase
from gateway.models import Provider
from gateway.routing import cool_down

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(make_customer) -> Any:
    operator = make_customer()
    operator.user.is_staff = True
    operator.user.save()
    return operator


def call(customer: Any, request_id: str, cost: int, **fields: Any) -> None:
    reservation = reserve_credits(
        account_id=customer.account.pk, amount=cost, request_id=request_id, api_key=None
    )
    usage = {"model": "gpt-test", "provider": "primary", "latency_ms": 700, "status": "ok"}
    settle(reservation=reservation, cost=cost, usage={**usage, **fields})


def test_anonymous_visitors_are_sent_to_sign_in(client):
    response = client.get("/ops/")

    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


@pytest.mark.parametrize("path", ["/ops/", "/ops/check-books/"])
def test_customers_get_a_404(client, customer, path):
    client.force_login(customer.user)

    response = client.get(path) if path == "/ops/" else client.post(path)

    assert response.status_code == 404
    assert not BooksCheck.objects.exists()


def test_staff_see_money_per_day_with_the_margin(client, staff, customer, settings):
    settings.PRICE_MARKUP_PERCENT = 25
    now = timezone.now()
    Purchase.objects.create(
        account=customer.account,
        stripe_session_id="cs_test_1",
        price_micro_usd=20_000_000,
        credit_micro_usd=20_000_000,
        status=Purchase.Status.PAID,
        paid_at=now,
    )
    credit_account(
        account=customer.account,
        amount=-5_000_000,
        kind=LedgerEntry.Kind.REFUND,
        idempotency_key="refund:1",
    )
    call(customer, "req_1", 1_000_000)
    call(staff, "req_2", 250_000, model="claude-test")
    client.force_login(staff.user)

    response = client.get("/ops/")

    assert response.status_code == 200
    today = response.context["days"][-1]
    assert (today.revenue, today.refunds, today.charged) == (20_000_000, 5_000_000, 1_250_000)
    assert today.upstream_cost == 1_000_000  # the charge without the 25% markup
    assert today.margin == 14_000_000
    assert today.active_accounts == 2
    assert [row["model"] for row in response.context["top_models"]] == ["gpt-test", "claude-test"]
    assert response.context["top_accounts"][0]["email"] == customer.user.email
    assert len(response.context["chart_data"]["labels"]) == 30


def test_providers_show_last_hours_errors_and_cooldowns(client, staff, customer):
    primary = Provider.objects.create(name="primary", kind=Provider.Kind.OPENAI)
    Provider.objects.create(name="mirror", kind=Provider.Kind.OPENAI)
    call(customer, "req_ok", 1_000, ttft_ms=200)
    call(customer, "req_bad", 1_000, status="error", latency_ms=30_000)
    cool_down(primary.pk, 30)
    client.force_login(staff.user)

    response = client.get("/ops/")

    health = {p.name: p for p in response.context["providers"]}
    assert health["primary"].tally.requests == 2
    assert health["primary"].tally.error_rate == 0.5
    assert health["primary"].status == "cooling down"
    assert health["primary"].tally.ttft_p50 is not None
    assert (health["mirror"].status, health["mirror"].tally.requests) == ("healthy", 0)


def test_old_calls_do_not_count_toward_provider_health(client, staff, customer):
    Provider.objects.create(name="primary", kind=Provider.Kind.OPENAI)
    call(customer, "req_old", 1_000, created_at=timezone.now() - timedelta(hours=2))
    client.force_login(staff.user)

    response = client.get("/ops/")

    assert response.context["providers"][0].tally.requests == 0


def test_credit_held_now_is_the_holds_in_flight(client, staff, customer):
    reserve_credits(account_id=customer.account.pk, amount=70_000, request_id="req_running")
    client.force_login(staff.user)

    response = client.get("/ops/")

    assert response.context["held"] == {
        "holds": 1,
        "hold_total": 70_000,
        "held": 70_000,
        "accounts": 1,
    }


def test_staff_check_the_books_and_see_when_they_were_checked(client, staff):
    client.force_login(staff.user)
    assert b"Never checked" in client.get("/ops/").content

    response = client.post("/ops/check-books/", headers={"HX-Request": "true"})

    assert response.templates[0].name == "console/_books.html"
    check = BooksCheck.objects.get()
    assert (check.errors, check.is_clean) == (0, True)
    assert b"Balanced" in response.content
    assert response.context["books"] == check


def test_an_unbalanced_account_shows_on_the_page(client, staff, customer):
    from billing.models import Account

    Account.objects.filter(pk=customer.account.pk).update(balance_micro_usd=1)
    client.force_login(staff.user)

    response = client.post("/ops/check-books/")

    assert b"1 error" in response.content
    assert "billing.E001" in BooksCheck.objects.get().findings[0]


def test_checking_the_books_needs_a_post(client, staff):
    client.force_login(staff.user)

    assert client.get("/ops/check-books/").status_code == 405
