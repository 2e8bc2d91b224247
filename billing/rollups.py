"""Rollups of the usage records, for the dashboards: hourly per account, key, model and
protocol (billing.models.UsageHour, the customer's dashboard) and daily per account and
model (UsageDay, the operator page).

Every settlement adds its record to its row of each in the same statement that writes
the record (billing.sql's settle statement
on PostgreSQL, add() inside the transaction elsewhere), so a rollup can never disagree
with the raw rows: the two commit or fail together, a repeated settlement adds nothing,
and a record settled late (the sweeper, a journal replayed after an outage) lands in
its own hour. The rows locked are the account's own (its settlements are serialised on
the account row already), so the rollups add no contention between customers.

rebuild() recomputes the rows of a range from the raw records, one statement per table,
for a rollup that was lost or a range loaded in bulk (`manage.py rollupusage`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import (
    BigIntegerField,
    Count,
    ExpressionWrapper,
    F,
    Model,
    Q,
    QuerySet,
    Sum,
    Value,
)
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce, Greatest, TruncDate, TruncHour

from billing.models import (
    LATENCY_BOUNDS_MS,
    LATENCY_BUCKETS,
    TTFT_BUCKETS,
    UsageDay,
    UsageHour,
    UsageRecord,
)
from billing.money import PER_MTOK

REFUSED = UsageRecord.Status.REFUSED
SUMS = (
    "requests",
    "errors",
    "cancelled",
    "refused",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "cost_micro_usd",
    "uncharged_micro_usd",
    "saved_micro_usd",
    "latency_ms",
    "ttft_ms",
    "ttft_count",
    *LATENCY_BUCKETS,
    *TTFT_BUCKETS,
)
CHARGED = ("cost_micro_usd", "uncharged_micro_usd")
"""Sums the PostgreSQL settle statement computes itself (the charge and what it left)."""


@dataclass(frozen=True)
class Rollup:
    """One rollup table: its model, the columns that identify a row (`group`, in the
    order of its unique constraint) and those that add up (`sums`)."""

    model: type[Model]
    group: tuple[str, ...]
    sums: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.group, *self.sums)


HOURLY = Rollup(UsageHour, ("account_id", "hour", "api_key_id", "model", "source"), SUMS)
DAILY = Rollup(
    UsageDay,
    ("day", "account_id", "model"),
    (
        "requests",
        "errors",
        "cancelled",
        "refused",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "cost_micro_usd",
        "uncharged_micro_usd",
    ),
)
ROLLUPS = (HOURLY, DAILY)


def hour_of(moment: datetime) -> datetime:
    """The start of the UTC hour `moment` falls in."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def bucket(ms: int) -> int:
    """The histogram bucket of a duration (see LATENCY_BOUNDS_MS)."""
    for index, bound in enumerate(LATENCY_BOUNDS_MS):
        if ms < bound:
            return index
    return len(LATENCY_BOUNDS_MS)


def saved_micro_usd(record: UsageRecord) -> int:
    """What the record's cache reads saved against the input price (whole micro-USD,
    rounded down); 0 without both prices."""
    prices = record.unit_prices or {}
    if not record.cached_tokens or "input" not in prices or "cache_read" not in prices:
        return 0
    return max(record.cached_tokens * (prices["input"] - prices["cache_read"]), 0) // PER_MTOK


def increment(record: UsageRecord) -> dict[str, Any]:
    """The record as one rollup row (of every rollup): its groups and what it adds to
    every sum."""
    hour = hour_of(record.created_at)
    counts: dict[str, Any] = {
        "hour": hour,
        "day": hour.date(),
        "account_id": record.account_id,
        "api_key_id": record.api_key_id or 0,
        "model": record.model,
        "source": record.source,
        **dict.fromkeys(SUMS, 0),
    }
    counts.update(
        requests=1,
        errors=int(record.status == UsageRecord.Status.ERROR),
        cancelled=int(record.status == UsageRecord.Status.CANCELLED),
        refused=int(record.status == REFUSED),
        prompt_tokens=record.prompt_tokens,
        completion_tokens=record.completion_tokens,
        cached_tokens=record.cached_tokens,
        cache_write_tokens=record.cache_write_tokens,
        cost_micro_usd=record.cost_micro_usd,
        uncharged_micro_usd=record.uncharged_micro_usd,
        saved_micro_usd=saved_micro_usd(record),
        latency_ms=record.latency_ms,
    )
    counts[LATENCY_BUCKETS[bucket(record.latency_ms)]] = 1
    if record.ttft_ms is not None:
        counts.update(ttft_ms=record.ttft_ms, ttft_count=1)
        counts[TTFT_BUCKETS[bucket(record.ttft_ms)]] = 1
    return counts


@functools.cache
def upsert_statement(
    rollup: Rollup, quote: Any, source: str | None = None
) -> tuple[str, tuple[str, ...]]:
    """`INSERT ... ON CONFLICT DO UPDATE` adding one increment to its row of `rollup`
    (SQLite and PostgreSQL speak the same upsert). With `source`, the statement selects
    from that CTE of the settle statement and takes the charged sums from its `amount`
    and `uncharged` columns. Returns the statement and the increment keys of its
    parameters."""
    table = quote(rollup.model._meta.db_table)
    names = ", ".join(quote(c) for c in rollup.columns)
    added = ", ".join(f"{quote(c)} = {table}.{quote(c)} + EXCLUDED.{quote(c)}" for c in rollup.sums)
    conflict = ", ".join(quote(c) for c in rollup.group)
    if source is None:
        marks = ", ".join(["%s"] * len(rollup.columns))
        body, params = f"VALUES ({marks})", rollup.columns
    else:
        charged = {
            "cost_micro_usd": f"{source}.amount",
            "uncharged_micro_usd": f"{source}.uncharged",
        }
        selected = ", ".join(charged.get(c, "%s") for c in rollup.columns)
        body = f"SELECT {selected} FROM {source}"  # noqa: S608 - names from model meta
        params = tuple(c for c in rollup.columns if c not in charged)
    return (
        f"INSERT INTO {table} ({names}) {body} ON CONFLICT ({conflict}) DO UPDATE SET {added}",
        params,
    )


def upsert_params(
    db: BaseDatabaseWrapper, rollup: Rollup, counts: dict[str, Any], keys: tuple[str, ...]
) -> list[Any]:
    """The parameters of upsert_statement() for one increment (from increment())."""
    fields = {f.attname: f for f in rollup.model._meta.concrete_fields}
    return [fields[k].get_db_prep_save(counts[k], db) for k in keys]


def settle_params(
    db: BaseDatabaseWrapper, record: UsageRecord, keys: tuple[tuple[str, ...], ...]
) -> list[Any]:
    """The parameters of the settle statement's rollup upserts for a record (billing.sql),
    `keys` as settle_statement() returned them."""
    counts = increment(record)
    return [
        value
        for rollup, rollup_keys in zip(ROLLUPS, keys, strict=True)
        for value in upsert_params(db, rollup, counts, rollup_keys)
    ]


def add(db: BaseDatabaseWrapper, cursor: Any, record: UsageRecord) -> None:
    """Add a saved record to its rows of every rollup, in the caller's transaction."""
    add_records(db, cursor, [record])


def insert_records(records: list[UsageRecord]) -> list[UsageRecord]:
    """Insert usage records written outside settle() (refused calls), each request id
    once (one already recorded is left out), and add them to the rollups, in one
    transaction. Returns the records inserted."""
    with transaction.atomic():
        taken = set(
            UsageRecord.objects.filter(request_id__in=[r.request_id for r in records]).values_list(
                "request_id", flat=True
            )
        )
        fresh = list({r.request_id: r for r in records if r.request_id not in taken}.values())
        UsageRecord.objects.bulk_create(fresh, batch_size=500)
        with connection.cursor() as cursor:
            add_records(connection, cursor, fresh)
    return fresh


def add_records(db: BaseDatabaseWrapper, cursor: Any, records: list[UsageRecord]) -> None:
    """Add saved records (written outside settle(): refused calls, say) to the rollups,
    one upsert per row they touch, in the caller's transaction: call it in the one that
    inserted exactly these records, so the rollups stay equal to the raw rows."""
    increments = [increment(record) for record in records]
    for rollup in ROLLUPS:
        rows: dict[tuple[Any, ...], dict[str, Any]] = {}
        for counts in increments:
            identity = tuple(counts[name] for name in rollup.group)
            if (row := rows.get(identity)) is None:
                rows[identity] = dict(counts)
            else:
                for name in rollup.sums:
                    row[name] += counts[name]
        statement, keys = upsert_statement(rollup, db.ops.quote_name)
        cursor.executemany(
            statement, [upsert_params(db, rollup, row, keys) for row in rows.values()]
        )


def _price(kind: str) -> Any:
    return Cast(KT(f"unit_prices__{kind}"), BigIntegerField())


def _between(lower: int | None, upper: int | None, field: str) -> Q:
    q = Q()
    if lower is not None:
        q &= Q(**{f"{field}__gte": lower})
    if upper is not None:
        q &= Q(**{f"{field}__lt": upper})
    return q


def histogram_counts() -> dict[str, Any]:
    """Count expressions of usage records per latency and TTFT bucket (the rollups'
    histogram columns), for an aggregate over raw records."""
    edges = (None, *LATENCY_BOUNDS_MS, None)
    return {
        **{
            name: Count("id", filter=_between(edges[i], edges[i + 1], "latency_ms"))
            for i, name in enumerate(LATENCY_BUCKETS)
        },
        **{
            name: Count("id", filter=_between(edges[i], edges[i + 1], "ttft_ms"))
            for i, name in enumerate(TTFT_BUCKETS)
        },
    }


def column(name: str) -> str:
    """The alias of a rollup column in aggregated() (a model field's own name is taken)."""
    return f"n_{name}"


def aggregated(records: QuerySet[UsageRecord], rollup: Rollup = HOURLY) -> QuerySet[Any]:
    """The records summed per row of `rollup`, in SQL: what increment() adds up to, row
    by row (tests compare the two; rebuild() inserts this). Its columns are the
    rollup's columns in order, each under column(name)."""
    saved = ExpressionWrapper(
        Greatest(F("cached_tokens") * (_price("input") - _price("cache_read")), Value(0))
        / Value(PER_MTOK),
        output_field=BigIntegerField(),
    )
    zero = Value(0)
    sums: dict[str, Any] = {
        "requests": Count("id"),
        "errors": Count("id", filter=Q(status=UsageRecord.Status.ERROR)),
        "cancelled": Count("id", filter=Q(status=UsageRecord.Status.CANCELLED)),
        "refused": Count("id", filter=Q(status=REFUSED)),
        **{
            name: Sum(name)
            for name in (
                "prompt_tokens",
                "completion_tokens",
                "cached_tokens",
                "cache_write_tokens",
                "cost_micro_usd",
                "uncharged_micro_usd",
            )
        },
        "saved_micro_usd": Coalesce(Sum(saved), zero),
        "latency_ms": Sum("latency_ms"),
        "ttft_ms": Coalesce(Sum("ttft_ms"), zero),
        "ttft_count": Count("ttft_ms"),
        **histogram_counts(),
    }
    groups = {
        "hour": TruncHour("created_at", tzinfo=UTC),
        "day": TruncDate("created_at", tzinfo=UTC),
        "account_id": F("account_id"),
        "api_key_id": Coalesce("api_key_id", zero),
        "model": F("model"),
        "source": F("source"),
    }
    return (
        records.order_by()
        .values(**{column(name): groups[name] for name in rollup.group})
        .annotate(**{column(name): sums[name] for name in rollup.sums})
    )


def rebuild(start: datetime, end: datetime) -> int:
    """Recompute the rollup rows that [start, end) touches from the raw records: per
    rollup one DELETE and one INSERT ... SELECT, all in one transaction. The hourly
    rollups are rebuilt for whole UTC hours, the daily ones for whole UTC days. Returns
    the hourly rows written.

    Hours whose raw rows were pruned come back empty: rebuild only ranges still kept.
    """
    start, end = hour_of(start), hour_of(end - timedelta(microseconds=1)) + timedelta(hours=1)
    midnight = datetime.min.time()
    first_day, last_day = start.date(), (end - timedelta(microseconds=1)).date()
    day_start = datetime.combine(first_day, midnight, UTC)
    day_end = datetime.combine(last_day + timedelta(days=1), midnight, UTC)
    quote = connection.ops.quote_name
    written = 0
    with transaction.atomic(), connection.cursor() as cursor:
        for rollup, lower, upper in ((HOURLY, start, end), (DAILY, day_start, day_end)):
            if rollup is HOURLY:
                UsageHour.objects.between(lower, upper).delete()
            else:
                UsageDay.objects.between(first_day, last_day).delete()
            records = UsageRecord.objects.filter(created_at__gte=lower, created_at__lt=upper)
            # In the order the pages read them (an account's hours, the operator's days),
            # so a range of them sits on few pages.
            rows = aggregated(records, rollup).order_by(*map(column, rollup.group))
            select, params = rows.query.sql_with_params()
            names = ", ".join(quote(c) for c in rollup.columns)
            cursor.execute(
                f"INSERT INTO {quote(rollup.model._meta.db_table)} ({names}) {select}",
                params,
            )
            if rollup is HOURLY:
                written = cursor.rowcount
    return written
