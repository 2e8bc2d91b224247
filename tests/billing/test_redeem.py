"""POST /billing/redeem/: a code credits each account once, never beyond its uses."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from billing.models import LedgerEntry, Redemption, RedemptionCode
from billing.redemption import RedemptionError, redeem_code

pytestmark = pytest.mark.django_db


@pytest.fixture
def code(db) -> RedemptionCode:
    return RedemptionCode.objects.create(
        code="WELCOME-2026", amount_micro_usd=2_500_000, max_uses=2
    )


def balance(account) -> int:
    account.refresh_from_db()
    return account.balance_micro_usd


def test_redeeming_a_code_credits_the_account(customer_client, customer, code):
    response = customer_client.post(
        "/billing/redeem/", {"code": "WELCOME-2026"}, HTTP_HX_REQUEST="true"
    )

    assert response.status_code == 200
    assert "Added $2.50 to your balance" in response.content.decode()
    assert response["HX-Trigger"] == '{"balance-changed": {}}'
    assert balance(customer.account) == 12_500_000
    entry = customer.account.entries.get(kind=LedgerEntry.Kind.REDEMPTION)
    assert entry.memo == "Code WELCOME-2026"
    code.refresh_from_db()
    assert code.uses == 1


def test_codes_are_matched_without_case_or_spaces(customer, code):
    redeem_code(account=customer.account, code="  welcome-2026 ")

    assert balance(customer.account) == 12_500_000


def test_a_second_redemption_by_the_same_account_is_refused(customer_client, customer, code):
    customer_client.post("/billing/redeem/", {"code": "WELCOME-2026"}, HTTP_HX_REQUEST="true")
    response = customer_client.post(
        "/billing/redeem/", {"code": "WELCOME-2026"}, HTTP_HX_REQUEST="true"
    )

    assert "You have already redeemed this code." in response.content.decode()
    assert "HX-Trigger" not in response
    assert balance(customer.account) == 12_500_000
    code.refresh_from_db()
    assert code.uses == 1


def test_an_exhausted_code_is_refused(make_customer, code):
    first, second, third = make_customer(), make_customer(), make_customer()
    redeem_code(account=first.account, code=code.code)
    redeem_code(account=second.account, code=code.code)

    with pytest.raises(RedemptionError, match="fully redeemed"):
        redeem_code(account=third.account, code=code.code)

    assert balance(third.account) == 10_000_000
    assert not Redemption.objects.filter(account=third.account).exists()


def test_an_expired_code_is_refused(customer, code):
    code.expires_at = timezone.now() - timedelta(minutes=1)
    code.save()

    with pytest.raises(RedemptionError, match="expired"):
        redeem_code(account=customer.account, code=code.code)

    assert balance(customer.account) == 10_000_000
    code.refresh_from_db()
    assert code.uses == 0


def test_a_code_that_has_not_expired_yet_works(customer, code):
    code.expires_at = timezone.now() + timedelta(days=1)
    code.save()

    redeem_code(account=customer.account, code=code.code)

    assert balance(customer.account) == 12_500_000


def test_a_deactivated_code_is_refused(customer, code):
    code.active = False
    code.save()

    with pytest.raises(RedemptionError, match="no longer valid"):
        redeem_code(account=customer.account, code=code.code)


def test_an_unknown_code_is_refused(customer_client, customer, code):
    response = customer_client.post("/billing/redeem/", {"code": "NOPE"}, HTTP_HX_REQUEST="true")

    body = response.content.decode()
    assert "That code does not exist." in body
    assert 'aria-invalid="true"' in body
    assert balance(customer.account) == 10_000_000


def test_without_htmx_redeeming_redirects_with_a_message(customer_client, code):
    response = customer_client.post("/billing/redeem/", {"code": "WELCOME-2026"}, follow=True)

    assert response.redirect_chain == [("/billing/", 303)]
    assert "Code redeemed" in response.content.decode()


def test_redeeming_needs_a_signed_in_user(client, code):
    response = client.post("/billing/redeem/", {"code": "WELCOME-2026"})

    assert response.status_code == 302
    code.refresh_from_db()
    assert code.uses == 0


def run_concurrently(count: int, target) -> list[str]:
    barrier = threading.Barrier(count)
    results: list[str] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            results.append(target(index))
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def attempt(account, code: str) -> str:
    try:
        redeem_code(account=account, code=code)
    except RedemptionError as exc:
        return str(exc)
    return "ok"


@pytest.mark.django_db(transaction=True)
def test_concurrent_redemptions_never_exceed_the_uses(make_customer, code):
    customers = [make_customer() for _ in range(5)]

    results = run_concurrently(5, lambda i: attempt(customers[i].account, code.code))

    assert results.count("ok") == 2
    assert results.count("This code has been fully redeemed.") == 3
    code.refresh_from_db()
    assert code.uses == 2
    assert Redemption.objects.count() == 2
    assert sum(balance(c.account) for c in customers) == 5 * 10_000_000 + 2 * 2_500_000


@pytest.mark.django_db(transaction=True)
def test_concurrent_redemptions_by_one_account_credit_once(customer, code):
    results = run_concurrently(3, lambda i: attempt(customer.account, code.code))

    assert sorted(results) == ["You have already redeemed this code."] * 2 + ["ok"]
    assert balance(customer.account) == 12_500_000
    code.refresh_from_db()
    assert code.uses == 1
