"""The ledger: the sign-up grant lands once, and every balance is the sum of its entries."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from accounts.models import User
from billing.checks import check_books
from billing.ledger import (
    account_for,
    credit_account,
    pay_pending_signup_grant,
    release_expired_holds,
    reserve_credits,
    settle,
)
from billing.models import Account, LedgerEntry, RedemptionCode
from billing.redemption import redeem_code
from billing.signals import GRANT_AFTER_VERIFICATION

pytestmark = pytest.mark.django_db


def test_a_new_user_gets_an_account_with_the_signup_grant_once(settings: Any) -> None:
    user = User.objects.create_user("new@example.com", "pw-123-secret")

    first = account_for(user)
    again = account_for(user)

    assert first.pk == again.pk == user.account.pk
    grants = LedgerEntry.objects.filter(account=first, kind=LedgerEntry.Kind.GRANT)
    assert list(grants.values_list("amount_micro_usd", flat=True)) == [
        settings.SIGNUP_GRANT_MICRO_USD
    ]
    first.refresh_from_db()
    assert first.balance_micro_usd == settings.SIGNUP_GRANT_MICRO_USD == first.ledger_sum()


def test_account_for_opens_a_missing_account_with_the_grant(settings: Any) -> None:
    settings.SIGNUP_GRANT_MICRO_USD = 250_000
    (user,) = User.objects.bulk_create([User(email="raw@example.com")])
    assert not Account.objects.filter(user=user).exists()

    account = account_for(user)
    account_for(user)

    assert account.balance_micro_usd == 250_000 == account.ledger_sum()
    assert account.entries.count() == 1


def test_there_is_no_grant_when_it_is_set_to_zero(settings: Any) -> None:
    settings.SIGNUP_GRANT_MICRO_USD = 0

    account = account_for(User.objects.create_user("free@example.com"))

    assert account.balance_micro_usd == 0 and not account.entries.exists()


@contextlib.contextmanager
def ledger_refusing_writes() -> Iterator[None]:
    """A database trigger refuses every new ledger entry while the block runs: the
    grant's write fails in the database itself, the way a real failure would."""
    table = connection.ops.quote_name(LedgerEntry._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE FUNCTION refuse_ledger_write() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'the ledger refuses this write'; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                f"CREATE TRIGGER refuse_ledger_write BEFORE INSERT ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION refuse_ledger_write()"
            )
        else:
            cursor.execute(
                f"CREATE TRIGGER refuse_ledger_write BEFORE INSERT ON {table} "
                "BEGIN SELECT RAISE(ABORT, 'the ledger refuses this write'); END"
            )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(f"DROP TRIGGER refuse_ledger_write ON {table}")
                cursor.execute("DROP FUNCTION refuse_ledger_write()")
            else:
                cursor.execute("DROP TRIGGER refuse_ledger_write")


def test_an_account_whose_grant_cannot_be_paid_is_not_opened(settings: Any) -> None:
    settings.SIGNUP_GRANT_MICRO_USD = 250_000
    (user,) = User.objects.bulk_create([User(email="unlucky@example.com")])

    with ledger_refusing_writes(), pytest.raises(DatabaseError, match="refuses this write"):
        account_for(user)

    assert not Account.objects.filter(user=user).exists()
    account = account_for(user)
    assert account.balance_micro_usd == 250_000 == account.ledger_sum()
    assert account.entries.get().kind == LedgerEntry.Kind.GRANT


@pytest.mark.django_db(transaction=True)
def test_concurrent_first_calls_open_one_account_with_one_grant(settings: Any) -> None:
    settings.SIGNUP_GRANT_MICRO_USD = 250_000
    (user,) = User.objects.bulk_create([User(email="racer@example.com")])
    racers = 6
    barrier = threading.Barrier(racers, timeout=10)

    def open_account(_: int) -> int:
        try:
            # Connected and holding the user before the start, so the calls overlap.
            own_user = User.objects.get(pk=user.pk)
            barrier.wait()
            return account_for(own_user).pk
        finally:
            connection.close()

    with ThreadPoolExecutor(racers) as pool:
        opened = list(pool.map(open_account, range(racers), timeout=60))

    account = Account.objects.get(user=user)
    assert opened == [account.pk] * racers
    assert list(account.entries.values_list("kind", "amount_micro_usd")) == [
        (LedgerEntry.Kind.GRANT, 250_000)
    ]
    assert account.balance_micro_usd == 250_000


def balanced(account: Account) -> int:
    account.refresh_from_db()
    assert account.ledger_sum() == account.balance_micro_usd
    assert account.held_micro_usd >= 0
    return account.balance_micro_usd


USAGE = {"model": "demo", "prompt_tokens": 3, "completion_tokens": 4, "status": "ok"}


def test_the_ledger_sums_to_the_balance_after_a_mix_of_operations(customer: Any) -> None:
    account = customer.account
    start = balanced(account)

    credit_account(
        account=account, amount=5_000_000, kind=LedgerEntry.Kind.PURCHASE, idempotency_key="cs_1"
    )
    credit_account(
        account=account, amount=5_000_000, kind=LedgerEntry.Kind.PURCHASE, idempotency_key="cs_1"
    )
    assert balanced(account) == start + 5_000_000

    code = RedemptionCode.objects.create(amount_micro_usd=300_000)
    redeem_code(account=account, code=code.code)
    assert balanced(account) == start + 5_300_000

    held = reserve_credits(account_id=account.pk, amount=40_000, request_id="req_a")
    assert balanced(account) == start + 5_300_000
    settle(reservation=held, cost=25_000, usage=USAGE)
    settle(reservation=held, cost=25_000, usage=USAGE)
    assert balanced(account) == start + 5_275_000

    stale = reserve_credits(account_id=account.pk, amount=10_000, request_id="req_b")
    release_expired_holds(now=timezone.now() + timedelta(days=1))
    settle(reservation=stale, cost=6_000, usage=USAGE)
    assert balanced(account) == start + 5_269_000

    credit_account(
        account=account, amount=-2_000_000, kind=LedgerEntry.Kind.REFUND, idempotency_key="re_1"
    )
    assert balanced(account) == start + 3_269_000
    assert account.held_micro_usd == 0
    assert check_books(databases=["default"]) == []


def test_a_refund_below_zero_is_applied_and_flagged(make_customer: Any) -> None:
    customer = make_customer(credit_micro_usd=1_000)

    entry = credit_account(
        account=customer.account,
        amount=-5_000,
        kind=LedgerEntry.Kind.REFUND,
        idempotency_key="re_big",
    )

    assert entry.flagged
    assert balanced(customer.account) == -4_000
    assert LedgerEntry.objects.get(pk=entry.pk).flagged


def test_held_credit_can_never_be_negative(customer: Any) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Account.objects.filter(pk=customer.account.pk).update(held_micro_usd=-1)


def test_a_grant_that_waits_for_the_e_mail_is_paid_once(db, settings):
    user = User(email="waits@example.com")
    setattr(user, GRANT_AFTER_VERIFICATION, True)
    user.save()
    assert user.account.balance_micro_usd == 0
    assert user.account.signup_grant_pending

    first = pay_pending_signup_grant(user)
    second = pay_pending_signup_grant(user)

    assert first is not None and first.amount_micro_usd == settings.SIGNUP_GRANT_MICRO_USD
    assert second is None
    user.account.refresh_from_db()
    assert user.account.balance_micro_usd == settings.SIGNUP_GRANT_MICRO_USD
    assert not user.account.signup_grant_pending
    assert user.account.ledger_sum() == user.account.balance_micro_usd


def test_an_account_granted_at_sign_up_is_owed_nothing_more(db):
    user = User.objects.create_user("browser@example.com", "pw-123-secret")

    assert pay_pending_signup_grant(user) is None
    assert user.account.entries.filter(kind="grant").count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_verifications_pay_the_waiting_grant_once(settings: Any) -> None:
    user = User(email="racing@example.com")
    setattr(user, GRANT_AFTER_VERIFICATION, True)
    user.save()
    racers = 4
    barrier = threading.Barrier(racers, timeout=10)

    def verify(_: int) -> bool:
        try:
            own_user = User.objects.get(pk=user.pk)
            barrier.wait()
            return pay_pending_signup_grant(own_user) is not None
        finally:
            connection.close()

    with ThreadPoolExecutor(racers) as pool:
        paid = list(pool.map(verify, range(racers), timeout=60))

    assert sorted(paid) == [False] * (racers - 1) + [True]
    account = Account.objects.get(user=user)
    assert list(account.entries.values_list("kind", "amount_micro_usd")) == [
        (LedgerEntry.Kind.GRANT, settings.SIGNUP_GRANT_MICRO_USD)
    ]
    assert account.balance_micro_usd == settings.SIGNUP_GRANT_MICRO_USD
    assert not account.signup_grant_pending
