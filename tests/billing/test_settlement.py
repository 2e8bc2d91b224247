"""Settlement under concurrency: parallel settlements (threads, each with its own
connection) never take a key's spend past its cap."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, connections
from django.db.models import Sum
from django.utils import timezone

from billing.ledger import Reservation, SpendCapExceeded, reserve_credits, settle
from billing.models import Account, Hold, UsageRecord

USAGE = {"model": "demo", "prompt_tokens": 10, "completion_tokens": 20, "status": "ok"}


def balanced(account_id: int) -> Account:
    """The account, after proving its books: balance is the ledger, held is its holds."""
    account = Account.objects.get(pk=account_id)
    assert account.ledger_sum() == account.balance_micro_usd
    holds = Hold.objects.filter(account_id=account_id).aggregate(t=Sum("amount_micro_usd"))["t"]
    assert account.held_micro_usd == (holds or 0)
    return account


def reserve(customer: Any, amount: int, request_id: str, *, key: bool = True) -> Reservation:
    return reserve_credits(
        account_id=customer.account.pk,
        amount=amount,
        request_id=request_id,
        api_key=customer.api_key if key else None,
    )


# --- parallel settlements -----------------------------------------------------------------


def in_parallel(jobs: list[Callable[[], Any]]) -> list[Any]:
    """Run the jobs at once on threads, each with its own connection; their results or
    exceptions, in order (bounded: every thread is joined with a timeout)."""
    results: list[Any] = [None] * len(jobs)
    start = threading.Barrier(len(jobs))

    def run(index: int) -> None:
        try:
            start.wait(timeout=10)
            results[index] = jobs[index]()
        except Exception as exc:
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return results


SPEND_CAP_HOLD = 1_000


def spend_on_capped_key(customer: Any, thread: int, rounds: int) -> int:
    """Reserve and settle at the full hold until the cap refuses; returns refusals."""
    refused = 0
    for n in range(rounds):
        try:
            reservation = reserve(customer, SPEND_CAP_HOLD, f"req_cap_{thread}_{n}")
        except SpendCapExceeded:
            refused += 1
            continue
        settle(reservation=reservation, cost=SPEND_CAP_HOLD, usage=USAGE)
    return refused


@pytest.mark.django_db(transaction=True)
def test_parallel_settlements_never_spend_past_the_keys_cap(make_customer: Any) -> None:
    cap = 12 * SPEND_CAP_HOLD
    customer = make_customer(credit_micro_usd=1_000_000, spend_cap_micro_usd=cap)
    start = customer.account.balance_micro_usd

    results = in_parallel([lambda t=t: spend_on_capped_key(customer, t, 8) for t in range(6)])

    assert all(isinstance(result, int) for result in results), results
    assert sum(results) == 6 * 8 - 12
    spent = UsageRecord.objects.spent_since(api_key_id=customer.api_key.pk, since=start_of_time())
    account = balanced(customer.account.pk)
    assert spent == cap == start - account.balance_micro_usd
    assert account.held_micro_usd == 0


def start_of_time() -> Any:
    return timezone.now() - timedelta(days=3650)


@pytest.mark.django_db(transaction=True)
def test_a_settlement_committed_while_the_cap_is_checked_is_counted_once(
    make_customer: Any,
) -> None:
    """The cap check must see a settling request either as held or as spent, never as
    neither: a settlement commits right after the check reads the key's usage."""
    cap = 2 * SPEND_CAP_HOLD
    customer = make_customer(credit_micro_usd=1_000_000, spend_cap_micro_usd=cap)
    first = reserve(customer, SPEND_CAP_HOLD, "req_cap_first")
    reserve(customer, SPEND_CAP_HOLD, "req_cap_second")
    settled: list[Any] = []
    started = threading.Event()

    def settle_first() -> None:
        try:
            settled.append(settle(reservation=first, cost=SPEND_CAP_HOLD, usage=USAGE))
        finally:
            connections.close_all()

    def settle_after_the_usage_is_read(execute: Any, sql: str, *args: Any) -> Any:
        result = execute(sql, *args)
        if not started.is_set() and UsageRecord._meta.db_table in sql and "SUM" in sql.upper():
            started.set()
            # On SQLite the reserving transaction holds the write lock, so the settlement
            # can only commit after it: the join timeout lets the check go on.
            thread = threading.Thread(target=settle_first)
            thread.start()
            thread.join(timeout=1)
        return result

    with (
        connection.execute_wrapper(settle_after_the_usage_is_read),
        pytest.raises(SpendCapExceeded),
    ):
        reserve(customer, SPEND_CAP_HOLD, "req_cap_third")
    for _ in range(100):
        if settled:
            break
        threading.Event().wait(0.05)

    assert len(settled) == 1
    assert not Hold.objects.filter(request_id="req_cap_third").exists()
    balanced(customer.account.pk)
