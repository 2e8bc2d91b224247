"""Hourly rollups of the usage records (billing.models.UsageHour), for the dashboards.

Every settlement adds its record to the row of its account, key, model, protocol and
UTC hour in the same statement that writes the record (billing.sql's settle statement
on PostgreSQL, add() inside the transaction elsewhere), so a rollup can never disagree
with the raw rows: the two commit or fail together, a repeated settlement adds nothing,
and a record settled late (the sweeper, a journal replayed after an outage) lands in
its own hour. The row locked is the account's own (its settlements are serialised on
the account row already), so the rollups add no contention between customers.

rebuild() recomputes the rows of a range from the raw records in one statement, for a
rollup table that was lost or a range loaded in bulk (`manage.py rollupusage`).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import (
    BigIntegerField,
    Count,
    ExpressionWrapper,
    F,
    Q,
    QuerySet,
    Sum,
    Value,
)
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce, Greatest, TruncHour

from billing.models import (
    LATENCY_BOUNDS_MS,
    LATENCY_BUCKETS,
    TTFT_BUCKETS,
    UsageHour,
    UsageRecord,
)
from billing.money import PER_MTOK

# Refused calls (402, 403, 404, 429 for a known key) are recorded with this status.
REFUSED = "refused"
GROUP = ("hour", "account_id", "api_key_id", "model", "source")
"""A rollup row's identity; the rest of its columns are sums."""
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
    """The record as one rollup row: its group and what it adds to every sum."""
    counts: dict[str, Any] = {
        "hour": hour_of(record.created_at),
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
def upsert_statement(quote: Any, source: str | None = None) -> tuple[str, tuple[str, ...]]:
    """`INSERT ... ON CONFLICT DO UPDATE` adding one increment to its rollup row (SQLite
    and PostgreSQL speak the same upsert). With `source`, the statement selects from
    that CTE of the settle statement and takes the charged sums from its `amount` and
    `uncharged` columns. Returns the statement and the increment keys of its parameters.
    """
    table = quote(UsageHour._meta.db_table)
    columns = (*GROUP, *SUMS)
    names = ", ".join(quote(c) for c in columns)
    added = ", ".join(f"{quote(c)} = {table}.{quote(c)} + EXCLUDED.{quote(c)}" for c in SUMS)
    conflict = ", ".join(quote(c) for c in ("account_id", "hour", "api_key_id", "model", "source"))
    if source is None:
        marks = ", ".join(["%s"] * len(columns))
        body, params = f"VALUES ({marks})", columns
    else:
        charged = {
            "cost_micro_usd": f"{source}.amount",
            "uncharged_micro_usd": f"{source}.uncharged",
        }
        selected = ", ".join(charged.get(c, "%s") for c in columns)
        body = f"SELECT {selected} FROM {source}"  # noqa: S608 - names from model meta
        params = tuple(c for c in columns if c not in charged)
    return (
        f"INSERT INTO {table} ({names}) {body} ON CONFLICT ({conflict}) DO UPDATE SET {added}",
        params,
    )


def upsert_params(
    db: BaseDatabaseWrapper, counts: dict[str, Any], keys: tuple[str, ...]
) -> list[Any]:
    hour = UsageHour._meta.get_field("hour")
    return [hour.get_db_prep_save(counts[k], db) if k == "hour" else counts[k] for k in keys]


def add(db: BaseDatabaseWrapper, cursor: Any, record: UsageRecord) -> None:
    """Add a saved record to its rollup row, in the caller's transaction."""
    statement, keys = upsert_statement(db.ops.quote_name)
    cursor.execute(statement, upsert_params(db, increment(record), keys))


def _price(kind: str) -> Any:
    return Cast(KT(f"unit_prices__{kind}"), BigIntegerField())


def _between(lower: int | None, upper: int | None, field: str) -> Q:
    q = Q()
    if lower is not None:
        q &= Q(**{f"{field}__gte": lower})
    if upper is not None:
        q &= Q(**{f"{field}__lt": upper})
    return q


def column(name: str) -> str:
    """The alias of a rollup column in aggregated() (a model field's own name is taken)."""
    return f"n_{name}"


def aggregated(records: QuerySet[UsageRecord]) -> QuerySet[Any]:
    """The records summed per rollup group, in SQL: what increment() adds up to, row by
    row (tests compare the two; rebuild() inserts this). Its columns are GROUP then
    SUMS, each under column(name)."""
    edges = (None, *LATENCY_BOUNDS_MS, None)
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
        **{
            name: Count("id", filter=_between(edges[i], edges[i + 1], "latency_ms"))
            for i, name in enumerate(LATENCY_BUCKETS)
        },
        **{
            name: Count("id", filter=_between(edges[i], edges[i + 1], "ttft_ms"))
            for i, name in enumerate(TTFT_BUCKETS)
        },
    }
    group = {
        "hour": TruncHour("created_at", tzinfo=UTC),
        "account_id": F("account_id"),
        "api_key_id": Coalesce("api_key_id", zero),
        "model": F("model"),
        "source": F("source"),
    }
    return (
        records.order_by()
        .values(**{column(name): expression for name, expression in group.items()})
        .annotate(**{column(name): sums[name] for name in SUMS})
    )


def rebuild(start: datetime, end: datetime) -> int:
    """Recompute the rollup rows of the hours that [start, end) touches from the raw
    records: one
    DELETE and one INSERT ... SELECT in a transaction. Returns the rows written.

    Hours whose raw rows were pruned come back empty: rebuild only ranges still kept.
    """
    start, end = hour_of(start), hour_of(end - timedelta(microseconds=1)) + timedelta(hours=1)
    rows = aggregated(UsageRecord.objects.filter(created_at__gte=start, created_at__lt=end))
    select, params = rows.query.sql_with_params()
    quote = connection.ops.quote_name
    names = ", ".join(quote(c) for c in (*GROUP, *SUMS))
    with transaction.atomic(), connection.cursor() as cursor:
        UsageHour.objects.between(start, end).delete()
        cursor.execute(
            f"INSERT INTO {quote(UsageHour._meta.db_table)} ({names}) {select}",
            params,
        )
        return cursor.rowcount
