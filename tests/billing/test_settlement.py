"""Settlement: a charge never exceeds the hold or the balance, and says when it was capped.

Holds stay alive while a call runs (keep_hold), and the sweeper settles a hold whose
worker died for the progress it recorded, or releases it when none was recorded.
Parallel settlements (threads, each with its own connection) never take a balance below
zero nor a key's spend past its cap.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection, connections
from django.db.models import Sum
from django.utils import timezone

from billing.checks import check_holds_are_refreshed_before_they_expire
from billing.ledger import (
    Reservation,
    SpendCapExceeded,
    credit_account,
    keep_hold,
    release_expired_holds,
    reserve_credits,
    settle,
)
from billing.models import Account, Hold, LedgerEntry, UsageRecord

USAGE = {"model": "demo", "prompt_tokens": 10, "completion_tokens": 20, "status": "ok"}
INTERRUPTED = "worker stopped before the request finished"


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


def expire(request_id: str) -> None:
    Hold.objects.filter(request_id=request_id).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )


def swept(now: Any = None) -> tuple[int, int]:
    """What one sweeper run did: (holds settled for their progress, holds released)."""
    sweep = release_expired_holds(now=now)
    return sweep.settled, sweep.released


def words(flags: str) -> set[str]:
    return set(flags.split())


def stored(record: UsageRecord) -> UsageRecord:
    """The record as the database has it: what settle() returned must be what it wrote."""
    row = UsageRecord.objects.get(pk=record.pk)
    assert (row.cost_micro_usd, row.uncharged_micro_usd, row.flags) == (
        record.cost_micro_usd,
        record.uncharged_micro_usd,
        record.flags,
    )
    return row


# --- the charge is capped at the hold and at the balance ------------------------------


@pytest.mark.django_db
def test_a_settlement_within_its_hold_charges_the_cost_with_no_flags(customer: Any) -> None:
    start = customer.account.balance_micro_usd

    record = stored(settle(reservation=reserve(customer, 1_000, "req_ok"), cost=600, usage=USAGE))

    assert (record.cost_micro_usd, record.uncharged_micro_usd, record.flags) == (600, 0, "")
    assert balanced(customer.account.pk).balance_micro_usd == start - 600


@pytest.mark.django_db
def test_a_cost_above_the_hold_is_capped_and_the_lost_revenue_recorded(customer: Any) -> None:
    start = customer.account.balance_micro_usd

    record = stored(settle(reservation=reserve(customer, 500, "req_over"), cost=9_999, usage=USAGE))

    assert (record.cost_micro_usd, record.uncharged_micro_usd) == (500, 9_499)
    assert words(record.flags) == {"capped"}
    assert balanced(customer.account.pk).balance_micro_usd == start - 500


@pytest.mark.django_db
def test_a_settlement_whose_hold_the_sweeper_released_is_capped_and_flagged(
    customer: Any,
) -> None:
    start = customer.account.balance_micro_usd
    reservation = reserve(customer, 700, "req_swept")
    release_expired_holds(now=timezone.now() + timedelta(days=1))

    record = stored(settle(reservation=reservation, cost=299_980_000, usage=USAGE))

    assert (record.cost_micro_usd, record.uncharged_micro_usd) == (700, 299_979_300)
    assert words(record.flags) == {"hold_missing", "capped"}
    account = balanced(customer.account.pk)
    assert account.balance_micro_usd == start - 700
    assert account.held_micro_usd == 0


@pytest.mark.django_db
def test_a_swept_settlement_within_the_hold_is_flagged_but_not_capped(customer: Any) -> None:
    reservation = reserve(customer, 700, "req_swept_small")
    release_expired_holds(now=timezone.now() + timedelta(days=1))

    record = stored(settle(reservation=reservation, cost=400, usage=USAGE))

    assert (record.cost_micro_usd, record.uncharged_micro_usd) == (400, 0)
    assert words(record.flags) == {"hold_missing"}
    balanced(customer.account.pk)


@pytest.mark.django_db
def test_no_settlement_takes_the_balance_below_zero(make_customer: Any) -> None:
    customer = make_customer(credit_micro_usd=1_000)
    reservation = reserve(customer, 800, "req_refunded")
    credit_account(
        account=customer.account, amount=-900, kind=LedgerEntry.Kind.REFUND, idempotency_key="re"
    )

    record = stored(settle(reservation=reservation, cost=800, usage=USAGE))

    assert (record.cost_micro_usd, record.uncharged_micro_usd) == (100, 700)
    assert words(record.flags) == {"capped"}
    account = balanced(customer.account.pk)
    assert (account.balance_micro_usd, account.held_micro_usd) == (0, 0)


@pytest.mark.django_db
def test_an_account_already_below_zero_is_charged_nothing_more(make_customer: Any) -> None:
    customer = make_customer(credit_micro_usd=1_000)
    reservation = reserve(customer, 500, "req_negative")
    credit_account(
        account=customer.account, amount=-3_000, kind=LedgerEntry.Kind.REFUND, idempotency_key="re"
    )

    record = stored(settle(reservation=reservation, cost=300, usage=USAGE))

    assert (record.cost_micro_usd, record.uncharged_micro_usd) == (0, 300)
    assert not LedgerEntry.objects.filter(idempotency_key="usage:req_negative").exists()
    assert balanced(customer.account.pk).balance_micro_usd == -2_000


@pytest.mark.django_db
def test_the_callers_flags_are_kept_and_merged_with_the_settlements(customer: Any) -> None:
    usage = {**USAGE, "flags": "usage_replaced  usage_suspect usage_replaced"}

    record = stored(settle(reservation=reserve(customer, 500, "req_flags"), cost=900, usage=usage))

    assert record.flags.split() == ["usage_replaced", "usage_suspect", "capped"]


@pytest.mark.django_db
def test_the_callers_word_capped_is_dropped_when_the_charge_was_not_capped(
    customer: Any,
) -> None:
    usage = {**USAGE, "flags": "hold_missing capped usage_suspect"}

    record = stored(settle(reservation=reserve(customer, 500, "req_own"), cost=100, usage=usage))

    assert record.flags == "usage_suspect"


@pytest.mark.django_db
def test_settling_twice_charges_once_and_returns_the_first_record(customer: Any) -> None:
    start = customer.account.balance_micro_usd
    reservation = reserve(customer, 500, "req_twice")

    first = settle(reservation=reservation, cost=9_000, usage=USAGE)
    second = settle(reservation=reservation, cost=9_000, usage={**USAGE, "flags": "other"})

    assert second.pk == first.pk
    assert (second.cost_micro_usd, second.uncharged_micro_usd, second.flags) == (
        500,
        8_500,
        "capped",
    )
    assert balanced(customer.account.pk).balance_micro_usd == start - 500
    assert LedgerEntry.objects.filter(idempotency_key="usage:req_twice").count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("cost", [-1, True, 1.5])
def test_a_cost_that_is_not_a_whole_non_negative_amount_is_refused(
    customer: Any, cost: Any
) -> None:
    reservation = reserve(customer, 500, "req_bad_cost")

    with pytest.raises(ValueError, match="cost"):
        settle(reservation=reservation, cost=cost, usage=USAGE)

    assert Hold.objects.filter(request_id="req_bad_cost").exists()
    balanced(customer.account.pk)


@pytest.mark.django_db
def test_flags_too_long_for_the_record_are_refused(customer: Any) -> None:
    reservation = reserve(customer, 500, "req_long_flags")

    with pytest.raises(ValueError, match="flags"):
        settle(reservation=reservation, cost=1, usage={**USAGE, "flags": "x" * 90})

    assert not UsageRecord.objects.filter(request_id="req_long_flags").exists()


# --- keep_hold: a live request's hold does not expire ---------------------------------


@pytest.mark.django_db
def test_keep_hold_pushes_the_expiry_and_records_progress(customer: Any, settings: Any) -> None:
    settings.HOLD_TTL_SECONDS = 60
    reserve(customer, 500, "req_live")
    expire("req_live")
    before = timezone.now()

    assert keep_hold(request_id="req_live") is True
    hold = Hold.objects.get(request_id="req_live")
    assert hold.progress is None
    assert (
        before + timedelta(seconds=60) <= hold.expires_at <= timezone.now() + timedelta(seconds=60)
    )

    progress_usage = {**USAGE, "stream": True, "ttft_ms": None}
    assert keep_hold(request_id="req_live", cost=120, usage=progress_usage) is True
    hold.refresh_from_db()
    assert hold.progress == {"cost": 120, "usage": progress_usage}
    assert swept() == (0, 0)


@pytest.mark.django_db
def test_keep_hold_without_progress_keeps_the_progress_recorded_before(customer: Any) -> None:
    reserve(customer, 500, "req_keep")
    keep_hold(request_id="req_keep", cost=50, usage=USAGE)

    keep_hold(request_id="req_keep")

    assert Hold.objects.get(request_id="req_keep").progress == {"cost": 50, "usage": USAGE}


@pytest.mark.django_db
def test_keep_hold_says_when_the_hold_is_gone(customer: Any) -> None:
    reservation = reserve(customer, 500, "req_gone")
    settle(reservation=reservation, cost=100, usage=USAGE)

    assert keep_hold(request_id="req_gone", cost=100, usage=USAGE) is False
    assert keep_hold(request_id="req_never_held") is False


@pytest.mark.django_db
def test_keep_hold_refuses_usage_without_a_cost_or_a_bad_cost(customer: Any) -> None:
    reserve(customer, 500, "req_half")

    with pytest.raises(ValueError, match="cost"):
        keep_hold(request_id="req_half", usage=USAGE)
    with pytest.raises(ValueError, match="cost"):
        keep_hold(request_id="req_half", cost=-5, usage=USAGE)

    assert Hold.objects.get(request_id="req_half").progress is None


@pytest.mark.django_db
@pytest.mark.parametrize("refresh", [0, 60, 90])
def test_a_refresh_interval_not_below_the_hold_ttl_is_refused(settings: Any, refresh: int) -> None:
    settings.HOLD_TTL_SECONDS, settings.HOLD_REFRESH_SECONDS = 60, refresh

    errors = check_holds_are_refreshed_before_they_expire()

    assert [error.id for error in errors] == ["billing.E010"]
    with pytest.raises(SystemCheckError, match=r"billing\.E010"):
        call_command("check", stdout=io.StringIO())


def test_the_refresh_interval_defaults_to_a_third_of_the_hold_ttl(settings: Any) -> None:
    assert max(1, settings.HOLD_TTL_SECONDS // 3) == settings.HOLD_REFRESH_SECONDS
    assert 0 < settings.HOLD_REFRESH_SECONDS < settings.HOLD_TTL_SECONDS


# --- the sweeper settles what a dead worker had relayed ----------------------------------


@pytest.mark.django_db
def test_the_sweeper_settles_an_expired_hold_for_its_progress(customer: Any) -> None:
    start = customer.account.balance_micro_usd
    reserve(customer, 800, "req_killed")
    keep_hold(
        request_id="req_killed",
        cost=300,
        usage={**USAGE, "stream": True, "completion_tokens": 150, "flags": "usage_replaced"},
    )
    expire("req_killed")

    assert swept() == (1, 0)
    record = UsageRecord.objects.get(request_id="req_killed")
    assert (record.status, record.error) == (UsageRecord.Status.ERROR, INTERRUPTED)
    assert (record.cost_micro_usd, record.completion_tokens, record.stream) == (300, 150, True)
    assert record.reserved_micro_usd == 800
    assert record.api_key_id == customer.api_key.pk
    assert words(record.flags) == {"usage_replaced", "interrupted"}
    account = balanced(customer.account.pk)
    assert (account.balance_micro_usd, account.held_micro_usd) == (start - 300, 0)
    assert swept() == (0, 0)


@pytest.mark.django_db
def test_the_sweeper_caps_a_dead_workers_progress_at_its_hold(customer: Any) -> None:
    start = customer.account.balance_micro_usd
    reserve(customer, 800, "req_killed_big")
    keep_hold(request_id="req_killed_big", cost=5_000, usage=USAGE)
    expire("req_killed_big")

    release_expired_holds()

    record = UsageRecord.objects.get(request_id="req_killed_big")
    assert (record.cost_micro_usd, record.uncharged_micro_usd) == (800, 4_200)
    assert words(record.flags) == {"interrupted", "capped"}
    assert balanced(customer.account.pk).balance_micro_usd == start - 800


@pytest.mark.django_db
def test_the_sweeper_releases_a_hold_without_progress_and_leaves_live_ones(
    customer: Any,
) -> None:
    start = customer.account.balance_micro_usd
    reserve(customer, 700, "req_dead_early")
    reserve(customer, 300, "req_running")
    reserve(customer, 200, "req_dead_late")
    keep_hold(request_id="req_dead_late", cost=50, usage=USAGE)
    expire("req_dead_early")
    expire("req_dead_late")

    assert swept() == (1, 1)
    assert not UsageRecord.objects.filter(request_id="req_dead_early").exists()
    account = balanced(customer.account.pk)
    assert (account.balance_micro_usd, account.held_micro_usd) == (start - 50, 300)
    assert list(Hold.objects.values_list("request_id", flat=True)) == ["req_running"]


@pytest.mark.django_db
def test_a_hold_refreshed_while_the_sweeper_runs_is_not_swept(customer: Any) -> None:
    reserve(customer, 700, "req_slow")
    expire("req_slow")
    refreshed: list[bool] = []

    def refresh_once_the_sweeper_has_read_it(execute: Any, sql: str, *args: Any) -> Any:
        result = execute(sql, *args)
        if not refreshed and sql.lstrip().upper().startswith("SELECT") and "hold" in sql:
            refreshed.append(keep_hold(request_id="req_slow", cost=10, usage=USAGE))
        return result

    with connection.execute_wrapper(refresh_once_the_sweeper_has_read_it):
        assert swept() == (0, 0)

    assert refreshed == [True]
    assert Hold.objects.get(request_id="req_slow").progress == {"cost": 10, "usage": USAGE}
    balanced(customer.account.pk)


@pytest.mark.django_db
def test_sweepholds_prints_what_it_settled_and_released(customer: Any) -> None:
    reserve(customer, 700, "req_a")
    reserve(customer, 300, "req_b")
    keep_hold(request_id="req_b", cost=100, usage=USAGE)
    expire("req_a")
    expire("req_b")
    out = io.StringIO()

    call_command("sweepholds", stdout=out)

    assert "Settled 1 interrupted request" in out.getvalue()
    assert "released 1 expired hold" in out.getvalue()
    balanced(customer.account.pk)


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


@pytest.mark.django_db(transaction=True)
def test_parallel_settlements_never_take_the_balance_below_zero(make_customer: Any) -> None:
    customer = make_customer(credit_micro_usd=10_000)
    reservations = [reserve(customer, 1_000, f"req_par_{i}", key=False) for i in range(10)]
    credit_account(
        account=customer.account,
        amount=-4_500,
        kind=LedgerEntry.Kind.REFUND,
        idempotency_key="re_par",
    )

    records = in_parallel(
        [
            lambda r=reservation: settle(reservation=r, cost=1_000, usage=USAGE)
            for reservation in reservations
        ]
    )

    assert all(isinstance(record, UsageRecord) for record in records), records
    account = balanced(customer.account.pk)
    assert (account.balance_micro_usd, account.held_micro_usd) == (0, 0)
    assert sum(r.cost_micro_usd for r in records) == 5_500
    assert sum(r.uncharged_micro_usd for r in records) == 4_500
    assert all(r.cost_micro_usd + r.uncharged_micro_usd == 1_000 for r in records)


@pytest.mark.django_db(transaction=True)
def test_parallel_swept_settlements_never_take_the_balance_below_zero(
    make_customer: Any,
) -> None:
    customer = make_customer(credit_micro_usd=3_000)
    reservations = [reserve(customer, 1_000, f"req_late_{i}", key=False) for i in range(3)]
    release_expired_holds(now=timezone.now() + timedelta(days=1))
    credit_account(
        account=customer.account, amount=-1_500, kind=LedgerEntry.Kind.REFUND, idempotency_key="r"
    )
    jobs = [
        lambda r=reservation: settle(reservation=r, cost=1_000, usage=USAGE)
        for reservation in reservations
    ]

    records = in_parallel(jobs + jobs)

    assert all(isinstance(record, UsageRecord) for record in records), records
    assert UsageRecord.objects.filter(account_id=customer.account.pk).count() == 3
    account = balanced(customer.account.pk)
    assert account.balance_micro_usd == 0


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
