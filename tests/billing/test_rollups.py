"""Hourly rollups equal the raw usage rows, whatever mix of settlements made them.

Settlements of every kind (answered, failed, cancelled, capped at the hold or the
balance, repeated, settled by the sweeper, replayed late from the journal) and money
moving beside them (a purchase refunded, a grant) must leave the rollups equal to an
aggregate of the raw rows; `rollupusage` rebuilds the same rows from the raw ones.
"""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from billing import rollups
from billing.ledger import (
    credit_account,
    keep_hold,
    release_expired_holds,
    reserve_credits,
    settle,
)
from billing.models import (
    LATENCY_BOUNDS_MS,
    Hold,
    LedgerEntry,
    UsageDay,
    UsageHour,
    UsageRecord,
)

PRICES = {"input": 3_000_000, "cache_read": 300_000, "output": 15_000_000}


def usage(**fields: Any) -> dict[str, Any]:
    return {
        "model": "claude-test",
        "source": "messages",
        "prompt_tokens": 1_000,
        "completion_tokens": 200,
        "cached_tokens": 600,
        "unit_prices": PRICES,
        "latency_ms": 900,
        "ttft_ms": 150,
        "status": "ok",
        **fields,
    }


def call(customer: Any, request_id: str, *, hold: int = 50_000, cost: int = 7_000, **fields: Any):
    reservation = reserve_credits(
        account_id=customer.account.pk,
        amount=hold,
        request_id=request_id,
        api_key=customer.api_key,
    )
    return settle(reservation=reservation, cost=cost, usage=usage(**fields))


def rollup_rows(rollup: rollups.Rollup = rollups.HOURLY) -> list[dict[str, Any]]:
    rows = rollup.model.objects.values(*rollup.columns)
    return sorted((dict(row) for row in rows), key=lambda row: _identity(row, rollup))


def raw_rows(rollup: rollups.Rollup = rollups.HOURLY) -> list[dict[str, Any]]:
    """The raw records summed per rollup row by the database."""
    rows = [
        {name: row[rollups.column(name)] for name in rollup.columns}
        for row in rollups.aggregated(UsageRecord.objects.all(), rollup)
    ]
    for row in rows:
        if "hour" in row:
            row["hour"] = _as_datetime(row["hour"])
        if isinstance(row.get("day"), str):  # SQLite's truncations come back as text
            row["day"] = date.fromisoformat(row["day"])
    return sorted(rows, key=lambda row: _identity(row, rollup))


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _identity(row: dict[str, Any], rollup: rollups.Rollup) -> tuple[Any, ...]:
    return tuple(str(row[name]) for name in rollup.group)


@pytest.fixture
def mixed_usage(customer, make_customer, settings) -> Any:
    """Calls of two customers on two models and protocols: answered, failed, cancelled,
    capped at the hold, settled twice, swept by the sweeper, settled an hour late."""
    other = make_customer(credit_micro_usd=20_000)
    call(customer, "req_ok_1")
    call(customer, "req_ok_2", latency_ms=12_000, ttft_ms=None, cached_tokens=0)
    call(customer, "req_err", status="error", error="upstream 500", cost=500, latency_ms=40)
    call(customer, "req_cut", status="cancelled", cost=3_000, model="gpt-test", source="api")
    call(customer, "req_capped", hold=2_000, cost=9_000, model="gpt-test", source="responses")
    repeated = reserve_credits(
        account_id=other.account.pk, amount=19_000, request_id="req_twice", api_key=other.api_key
    )
    for _ in range(2):  # settled twice (a retry): counted once
        settle(reservation=repeated, cost=30_000, usage=usage(latency_ms=70_000))
    old = timezone.now() - timedelta(hours=1)
    call(customer, "req_late", created_at=old, status="cancelled", source="web")
    # A worker died mid-call: the sweeper settles the progress it recorded.
    reserve_credits(
        account_id=customer.account.pk, amount=8_000, request_id="req_swept", api_key=None
    )
    keep_hold(request_id="req_swept", cost=4_000, usage=usage(ttft_ms=None))
    Hold.objects.filter(request_id="req_swept").update(expires_at=timezone.now())
    release_expired_holds()
    # Money moving beside the calls: a refund of bought credit and a grant.
    credit_account(
        account=customer.account,
        amount=-1_000_000,
        kind=LedgerEntry.Kind.REFUND,
        idempotency_key="refund:ch_1",
    )
    credit_account(
        account=other.account, amount=5_000, kind=LedgerEntry.Kind.GRANT, idempotency_key="g:1"
    )
    return other


@pytest.mark.django_db(transaction=True)
def test_rollups_equal_the_raw_rows_after_a_mix_of_settlements(mixed_usage):
    assert UsageRecord.objects.count() == 8
    assert rollup_rows() == raw_rows()
    assert rollup_rows(rollups.DAILY) == raw_rows(rollups.DAILY)
    assert len(rollup_rows(rollups.DAILY)) >= 3  # two accounts, two models
    totals = UsageHour.objects.values_list("requests", "cost_micro_usd")
    assert sum(r for r, _ in totals) == 8
    assert sum(c for _, c in totals) == sum(
        UsageRecord.objects.values_list("cost_micro_usd", flat=True)
    )


@pytest.mark.django_db(transaction=True)
def test_the_rollups_count_what_each_call_was(customer, mixed_usage):
    mine = UsageHour.objects.filter(account=customer.account, hour=rollups.hour_of(timezone.now()))
    claude = mine.get(model="claude-test", source="messages", api_key_id=customer.api_key.pk)
    # req_ok_1, req_ok_2 (no cache reads, no TTFT, 12 s) and req_err.
    assert (claude.requests, claude.errors, claude.cancelled) == (3, 1, 0)
    # 600 cache reads at $3 instead of $0.30 per million: 1,620 micro-USD saved, twice.
    assert claude.saved_micro_usd == 2 * 1_620
    assert (claude.ttft_count, claude.ttft_ms) == (2, 300)
    assert sum(getattr(claude, name) for name in rollups.LATENCY_BUCKETS) == 3
    assert claude.latency_10 == 1  # 12 s falls between 10 and 20 s
    swept = mine.get(model="claude-test", api_key_id=0)  # its hold had no key
    assert (swept.requests, swept.errors, swept.cost_micro_usd) == (1, 1, 4_000)
    late = UsageHour.objects.get(account=customer.account, source="web")
    assert late.hour == rollups.hour_of(timezone.now() - timedelta(hours=1))
    assert late.cancelled == 1


@pytest.mark.django_db(transaction=True)
def test_rollupusage_rebuilds_the_same_rows_from_the_raw_ones(mixed_usage):
    before = rollup_rows(), rollup_rows(rollups.DAILY)
    UsageHour.objects.all().delete()
    UsageDay.objects.all().delete()
    out = io.StringIO()
    now = timezone.now()

    call_command(
        "rollupusage",
        "--since",
        (now - timedelta(days=1)).date().isoformat(),
        "--until",
        (now + timedelta(days=1)).date().isoformat(),
        stdout=out,
    )

    assert (rollup_rows(), rollup_rows(rollups.DAILY)) == before
    assert "rows" in out.getvalue()


@pytest.mark.django_db
def test_a_rebuild_replaces_rows_of_its_range_only(customer):
    call(customer, "req_now")
    call(customer, "req_then", created_at=timezone.now() - timedelta(days=3))
    UsageHour.objects.update(requests=99)  # as if the rollups had drifted

    rollups.rebuild(timezone.now() - timedelta(days=1), timezone.now() + timedelta(hours=1))

    assert sorted(UsageHour.objects.values_list("requests", flat=True)) == [1, 99]


@pytest.mark.parametrize(
    ("ms", "expected"),
    [(0, 0), (99, 0), (100, 1), (249, 1), (250, 2), (59_999, 11), (60_000, 12), (10**7, 12)],
)
def test_durations_fall_in_their_bucket(ms, expected):
    assert len(LATENCY_BOUNDS_MS) == 12
    assert rollups.bucket(ms) == expected


@pytest.mark.django_db(transaction=True)
def test_records_written_outside_settle_are_added_once_with_their_rollups(customer):
    now = timezone.now()
    refused = [
        UsageRecord(
            request_id=f"req_refused_{n}",
            account=customer.account,
            api_key=customer.api_key,
            model="gpt-test",
            status=rollups.REFUSED,
            error="insufficient_credits",
            created_at=now - timedelta(hours=n % 2),
        )
        for n in range(5)
    ]
    assert len(rollups.insert_records(refused)) == 5
    again = [
        UsageRecord(request_id=r.request_id, account=customer.account, status=rollups.REFUSED)
        for r in refused[:2]
    ]  # the same request ids
    assert rollups.insert_records(again) == []

    assert UsageRecord.objects.count() == 5
    assert rollup_rows() == raw_rows()
    assert rollup_rows(rollups.DAILY) == raw_rows(rollups.DAILY)
    assert sum(UsageHour.objects.values_list("refused", flat=True)) == 5
