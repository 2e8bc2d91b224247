"""GET / signed in: the dashboard (balance, checklist, this week, recent requests,
notices); signed out: the product page. And the header's balance on every page."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import ApiKey, period_starts
from billing.models import UsageRecord

pytestmark = pytest.mark.django_db


def record(account: Any, request_id: str, *, cost: int = 1000, key: Any = None, **fields: Any):
    return UsageRecord.objects.create(
        request_id=request_id,
        account=account,
        api_key=key,
        model="demo",
        cost_micro_usd=cost,
        **fields,
    )


@pytest.fixture
def fresh(make_customer, client) -> Any:
    """A customer with only the sign-up grant and no key, signed in."""
    from accounts.models import User
    from billing.ledger import account_for

    user = User.objects.create_user("fresh@example.com", "pw-123-secret")
    account_for(user)
    client.force_login(user)
    return user


def test_a_visitor_gets_the_product_page(client, demo_catalog):
    body = client.get("/").content.decode()

    assert "One API key for every model" in body
    assert 'data-testid="checklist"' not in body
    assert 'data-testid="header-balance"' not in body


def test_a_new_customer_sees_the_balance_the_sign_up_credit_and_two_steps_to_do(
    client, fresh, settings
):
    response = client.get("/")
    body = response.content.decode()

    assert response.templates[0].name == "console/dashboard.html"
    assert '<p class="stat" data-testid="dashboard-balance">$1.00</p>' in body
    assert "Your account started with $1.00 of sign-up credit." in body
    assert "0 of 2 done" in body
    assert [step.done for step in response.context["steps"]] == [False, False]


def test_a_key_ticks_the_first_step(client, fresh):
    ApiKey.objects.mint(user=fresh, name="laptop")

    response = client.get("/")

    assert [step.done for step in response.context["steps"]] == [True, False]
    assert "1 of 2 done" in response.content.decode()


def test_a_web_chat_message_is_not_a_first_call_but_an_api_request_is(client, fresh):
    key, _ = ApiKey.objects.mint(user=fresh, name="laptop")
    record(fresh.account, "req_web", source=UsageRecord.Source.WEB)
    assert [s.done for s in client.get("/").context["steps"]] == [True, False]

    record(fresh.account, "req_api", key=key)
    body = client.get("/").content.decode()

    assert 'data-testid="checklist"' not in body


def test_this_week_counts_only_this_weeks_own_requests(client, customer, make_customer):
    client.force_login(customer.user)
    week_start = period_starts()["week"]
    record(customer.account, "req_now", cost=250_000, key=customer.api_key)
    record(
        customer.account, "req_old", cost=9_000_000, created_at=week_start - timedelta(seconds=1)
    )
    other = make_customer()
    record(other.account, "req_theirs", cost=7_000_000)

    response = client.get("/")
    body = response.content.decode()

    assert response.context["week"]["requests"] == 1
    assert '<p class="stat" data-testid="week-spend">$0.25</p>' in body
    assert "req_theirs" not in body


def test_recent_requests_are_the_newest_five_linking_to_their_pages(client, customer):
    client.force_login(customer.user)
    now = timezone.now()
    for n in range(7):
        record(customer.account, f"req_{n}", created_at=now - timedelta(minutes=n))

    body = client.get("/").content.decode()

    for n in range(5):
        assert f'href="/billing/usage/req_{n}/"' in body
    assert "req_5" not in body and "req_6" not in body


def test_a_low_balance_and_a_nearly_spent_cap_are_noticed(make_customer, client):
    poor = make_customer(credit_micro_usd=300_000, spend_cap_micro_usd=1_000_000)
    client.force_login(poor.user)
    record(poor.account, "req_cap", cost=850_000, key=poor.api_key)

    body = client.get("/").content.decode()

    assert 'data-testid="low-balance"' in body
    assert 'data-testid="cap-notice"' in body
    assert "has spent $0.85 of its $1.00 cap per month" in body


def test_a_cap_far_from_spent_is_not_noticed(make_customer, client):
    rich = make_customer(spend_cap_micro_usd=10_000_000)
    client.force_login(rich.user)
    record(rich.account, "req_small", cost=100_000, key=rich.api_key)

    assert 'data-testid="cap-notice"' not in client.get("/").content.decode()


@pytest.mark.parametrize("path", ["/docs/", "/pricing/", "/account/keys/", "/billing/"])
def test_the_header_shows_the_balance_and_the_account_menu_on_every_page(client, customer, path):
    client.force_login(customer.user)

    body = client.get(path).content.decode()

    assert (
        'data-testid="header-balance"><span class="visually-hidden">Balance: </span>$10.00' in body
    )
    assert 'class="user-menu"' in body
    assert 'action="/accounts/logout/"' in body
    assert 'aria-controls="site-menu"' in body


def test_spend_of_the_last_two_weeks_is_drawn_once_there_is_some(client, customer):
    client.force_login(customer.user)
    assert "spend-chart" not in client.get("/").content.decode()

    record(customer.account, "req_chart", cost=420_000, key=customer.api_key)
    body = client.get("/").content.decode()

    assert 'class="spend-chart"' in body
    assert "Last 14 days: $0.42" in body


def test_a_refused_call_is_not_a_first_call_nor_a_request_of_the_week(client, fresh):
    key, _ = ApiKey.objects.mint(user=fresh, name="laptop")
    record(fresh.account, "req_refused", cost=0, key=key, status=UsageRecord.Status.REFUSED)

    response = client.get("/")

    assert [step.done for step in response.context["steps"]] == [True, False]
    assert response.context["week"]["requests"] == 0
