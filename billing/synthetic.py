"""Synthetic usage for measuring the dashboards at scale (`manage.py makeusage`).

Accounts, keys and usage records shaped like a reseller's traffic: a few accounts make
most of the calls (Zipf), each account has one to four keys (and its web chat), each key
is one client speaking one protocol to one to three models of its own,
calls follow the day (a peak in the afternoon, UTC), prompts and answers are log-normal
with a long tail, agent traffic reads most of its prompt from the cache, and a few calls
fail, are cancelled or refused. Rows go in by PostgreSQL COPY (bulk_create elsewhere),
in time order, and their rollups are built from them afterwards in one statement.

Synthetic accounts are `synthetic-N@example.invalid`, with no way to sign in; their
books balance (a sign-up grant and purchases, each a ledger entry), and their usage is
not charged to the ledger: it exists to be read.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import ApiKey, User
from billing.models import Account, LedgerEntry, Purchase, UsageRecord
from billing.money import token_cost

# id, provider, popularity, input, cached input, output price (micro-USD per million).
MODELS = (
    ("claude-sonnet-4-5", "anthropic", 30, 3_000_000, 300_000, 15_000_000),
    ("gpt-4.1-mini", "openai", 22, 400_000, 100_000, 1_600_000),
    ("gpt-4.1", "openai", 10, 2_000_000, 500_000, 8_000_000),
    ("gemini-2.5-flash", "gemini", 12, 300_000, 75_000, 2_500_000),
    ("claude-haiku-4-5", "anthropic", 9, 1_000_000, 100_000, 5_000_000),
    ("deepseek-chat", "deepseek", 7, 270_000, 70_000, 1_100_000),
    ("o4-mini", "openai", 4, 1_100_000, 275_000, 4_400_000),
    ("gemini-2.5-pro", "gemini", 3, 1_250_000, 310_000, 10_000_000),
    ("mistral-large", "mistral", 2, 2_000_000, 2_000_000, 6_000_000),
    ("llama-3.3-70b", "groq", 1, 590_000, 590_000, 790_000),
)
SOURCES = (("api", 55), ("messages", 25), ("responses", 12), ("web", 8))
STATUSES = (("ok", 955), ("error", 20), ("cancelled", 15), ("refused", 10))
HOURLY = [0.4 + 0.6 * math.sin(math.pi * max(h - 6, 0) / 18) ** 2 for h in range(24)]
COLUMNS = (
    "request_id",
    "account_id",
    "api_key_id",
    "source",
    "model",
    "provider",
    "upstream_model",
    "stream",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "unit_prices",
    "cost_micro_usd",
    "reserved_micro_usd",
    "uncharged_micro_usd",
    "flags",
    "latency_ms",
    "ttft_ms",
    "status",
    "error",
    "attempts",
    "price_version",
    "http_status",
    "error_code",
    "finish_reason",
    "route_log",
    "rag_sources",
    "requested_model",
    "created_at",
)


@dataclass(frozen=True, slots=True)
class Key:
    """A key as a client uses it: one protocol, one to three models, its share of calls."""

    key_id: int
    source: str
    models: tuple[int, ...]
    model_weights: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Customer:
    account_id: int
    keys: tuple[Key, ...]
    key_weights: tuple[float, ...]


def make_customers(count: int, rng: random.Random, start: datetime) -> list[Customer]:
    """`count` accounts with keys, a sign-up grant and a few paid purchases each."""
    taken = User.objects.filter(email__startswith="synthetic-").count()
    with transaction.atomic():
        users = User.objects.bulk_create(
            User(email=f"synthetic-{taken + n}@example.invalid", password="!") for n in range(count)
        )
        accounts = Account.objects.bulk_create(
            Account(user=user, created_at=start) for user in users
        )
        keys, entries, purchases = [], [], []
        for user, account in zip(users, accounts, strict=True):
            for n in range(rng.randint(1, 4)):
                keys.append(_key(user, f"key {n + 1}", ApiKey.Kind.API, rng))
            keys.append(_key(user, "Web chat", ApiKey.Kind.WEB, rng))
            entries.append(
                LedgerEntry(
                    account=account,
                    kind=LedgerEntry.Kind.GRANT,
                    amount_micro_usd=1_000_000,
                    idempotency_key=f"synthetic-grant:{account.pk}",
                    created_at=start,
                )
            )
            for n in range(rng.randint(0, 6)):
                price = rng.choice((5, 20, 50, 100)) * 1_000_000
                paid = start + timedelta(
                    seconds=rng.uniform(0, (timezone.now() - start).total_seconds())
                )
                purchases.append(
                    Purchase(
                        account=account,
                        stripe_session_id=f"cs_synthetic_{account.pk}_{n}",
                        price_micro_usd=price,
                        credit_micro_usd=price,
                        status=Purchase.Status.PAID,
                        created_at=paid,
                        paid_at=paid,
                    )
                )
                entries.append(
                    LedgerEntry(
                        account=account,
                        kind=LedgerEntry.Kind.PURCHASE,
                        amount_micro_usd=price,
                        idempotency_key=f"synthetic-purchase:{account.pk}:{n}",
                        created_at=paid,
                    )
                )
        ApiKey.objects.bulk_create(keys)
        LedgerEntry.objects.bulk_create(entries)
        Purchase.objects.bulk_create(purchases)
        for account in accounts:
            total = sum(e.amount_micro_usd for e in entries if e.account_id == account.pk)
            Account.objects.filter(pk=account.pk).update(balance_micro_usd=total)
    by_user: dict[int, list[ApiKey]] = {}
    for key in ApiKey.objects.filter(user__in=users).order_by("pk"):
        by_user.setdefault(key.user_id, []).append(key)
    sources = [name for name, _ in SOURCES]
    source_weights = [weight for _, weight in SOURCES[:-1]]
    customers = []
    for user, account in zip(users, accounts, strict=True):
        clients = []
        for key in by_user[user.pk]:
            web = key.kind == ApiKey.Kind.WEB
            source = "web" if web else rng.choices(sources[:-1], weights=source_weights)[0]
            favourites = rng.sample(range(len(MODELS)), rng.randint(1, 3))
            clients.append(
                Key(key.pk, source, tuple(favourites), tuple(MODELS[m][2] for m in favourites))
            )
        shares = [0.3 if k.source == "web" else rng.uniform(0.5, 3) for k in clients]
        customers.append(Customer(account.pk, tuple(clients), tuple(shares)))
    return customers


def _key(user: User, name: str, kind: str, rng: random.Random) -> ApiKey:
    lookup = f"{rng.getrandbits(48):012x}"
    return ApiKey(user=user, name=name, kind=kind, prefix=lookup, hashed="!", last4="0000")


def rows(
    customers: list[Customer], count: int, start: datetime, end: datetime, rng: random.Random
) -> Iterator[tuple[Any, ...]]:
    """`count` usage rows between start and end, oldest first (the columns of COLUMNS)."""
    weights = list(itertools.accumulate(1 / (rank + 1) for rank in range(len(customers))))
    statuses = [s for s, _ in STATUSES]
    status_weights = list(itertools.accumulate(w for _, w in STATUSES))
    span = (end - start).total_seconds()
    slices = max(count // 2000, 1)
    made = 0
    for index in range(slices):
        size = count // slices + (1 if index < count % slices else 0)
        lower = start + timedelta(seconds=span * index / slices)
        width = span / slices
        moments = sorted(_moment(lower, width, rng) for _ in range(size))
        for moment in moments:
            made += 1
            customer = rng.choices(customers, cum_weights=weights)[0]
            yield _row(
                customer.account_id,
                rng.choices(customer.keys, weights=customer.key_weights)[0],
                moment,
                rng.choices(statuses, cum_weights=status_weights)[0],
                rng,
            )


def _moment(lower: datetime, width: float, rng: random.Random) -> datetime:
    """A time in [lower, lower + width), busier in the afternoon (rejection sampling)."""
    while True:
        moment = lower + timedelta(seconds=rng.uniform(0, width))
        if rng.random() < HOURLY[moment.hour]:
            return moment


def _row(
    account_id: int, key: Key, moment: datetime, status: str, rng: random.Random
) -> tuple[Any, ...]:
    model_index = rng.choices(key.models, weights=key.model_weights)[0]
    model, provider, _, p_in, p_cached, p_out = MODELS[model_index]
    source = key.source
    stream = rng.random() < 0.7
    agent = source in ("messages", "responses") and rng.random() < 0.7
    prompt = int(rng.lognormvariate(math.log(20_000 if agent else 1_200), 0.9)) + 10
    cached = int(prompt * rng.uniform(0.6, 0.95)) if agent else 0
    completion = int(rng.lognormvariate(math.log(350), 0.8)) + 1
    ttft = int(rng.lognormvariate(math.log(550), 0.5)) if stream else None
    latency = (ttft or int(rng.lognormvariate(math.log(400), 0.4))) + int(completion * 12)
    error = code = ""
    http_status = None
    finish = "length" if rng.random() < 0.03 else "stop"
    if status == "refused":
        prompt = cached = completion = latency = 0
        ttft, finish = None, ""
        http_status, code = rng.choice(
            ((402, "insufficient_credits"), (429, "rate_limit_exceeded"))
        )
        error = code
    elif status == "error":
        completion, finish = 0, ""
        error = "upstream 503"
    elif status == "cancelled":
        completion //= 3
        latency //= 3
        finish = ""
    attempts = (
        []
        if status == "refused"
        else [
            {
                "provider": provider,
                "upstream_model": model,
                "start_ms": 2,
                "duration_ms": latency,
                "ok": status != "error",
                "error": error,
            }
        ]
    )
    cost = token_cost(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        input_price=p_in,
        output_price=p_out,
        cached_price=p_cached,
    )
    prices = {"input": p_in, "output": p_out, **({"cache_read": p_cached} if cached else {})}
    return (
        f"req_{rng.getrandbits(96):024x}",
        account_id,
        key.key_id,
        source,
        model,
        provider,
        model,
        stream,
        prompt,
        completion,
        cached,
        0,
        0,
        orjson.dumps(prices).decode(),
        cost,
        cost * 2 + 1000,
        0,
        "",
        latency,
        ttft,
        status,
        error,
        1,
        "synthetic",
        http_status,
        code,
        finish,
        orjson.dumps(attempts).decode(),
        "[]",
        "",
        moment,
    )


def load(row_source: Iterator[tuple[Any, ...]], batch: int = 5000) -> int:
    """Insert the rows: COPY on PostgreSQL, bulk_create in batches elsewhere."""
    written = 0
    if connection.vendor == "postgresql":
        table = connection.ops.quote_name(UsageRecord._meta.db_table)
        names = ", ".join(connection.ops.quote_name(c) for c in COLUMNS)
        statement = f"COPY {table} ({names}) FROM STDIN"
        with (
            transaction.atomic(),
            connection.cursor() as cursor,
            cursor.copy(statement) as copy,  # type: ignore[attr-defined]
        ):
            for row in row_source:
                copy.write_row(row)
                written += 1
        return written
    while chunk := list(itertools.islice(row_source, batch)):
        UsageRecord.objects.bulk_create(
            UsageRecord(**dict(zip(COLUMNS, _python(row), strict=True))) for row in chunk
        )
        written += len(chunk)
    return written


def repeat(account_ids: list[int], copies: int, end: datetime) -> int:
    """PostgreSQL: `copies` more calls for every record of these accounts, each in the
    same hour as its original (a new request id, a random time in that hour, never past
    `end`), in one INSERT ... SELECT; and their rollups multiplied to match. Exact:
    every rollup column is a sum, and the copies fall in their original's hour and day.
    No Python in the loop: the database's own speed, and its deferred foreign-key
    checks at COMMIT, bound it."""
    quote = connection.ops.quote_name
    table = quote(UsageRecord._meta.db_table)
    kept = [c for c in COLUMNS if c not in ("request_id", "created_at")]
    names = ", ".join(quote(c) for c in kept)
    hour = "date_trunc('hour', u.created_at)"
    statement = (
        f"INSERT INTO {table} ({quote('request_id')}, {names}, {quote('created_at')}) "  # noqa: S608
        f"SELECT 'req_' || substr(md5(u.id::text || ':' || k::text || random()::text), 1, 24), "
        f"{', '.join(f'u.{quote(c)}' for c in kept)}, "
        f"{hour} + random() * (LEAST({hour} + interval '1 hour', %s) - {hour}) "
        f"FROM {table} u CROSS JOIN generate_series(1, %s) k WHERE u.account_id = ANY(%s)"
    )
    from billing.rollups import ROLLUPS

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement, [end, copies, account_ids])
        written = cursor.rowcount
        for rollup in ROLLUPS:
            scaled = ", ".join(f"{quote(c)} = {quote(c)} * %s" for c in rollup.sums)
            cursor.execute(
                f"UPDATE {quote(rollup.model._meta.db_table)} SET {scaled} "  # noqa: S608
                "WHERE account_id = ANY(%s)",
                [copies + 1] * len(rollup.sums) + [account_ids],
            )
    return written


def analyze() -> None:
    """Refresh the planner's statistics of the tables just filled, as autovacuum would
    in a while: a plan made for an empty table is no measure of anything."""
    from billing.rollups import ROLLUPS

    if connection.vendor != "postgresql":
        return
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        tables = [UsageRecord._meta.db_table, *(r.model._meta.db_table for r in ROLLUPS)]
        for table in tables:
            cursor.execute(f"ANALYZE {quote(table)}")


def _python(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A COPY row as model field values (the JSON columns as values, not text)."""
    values = list(row)
    for name in ("unit_prices", "route_log", "rag_sources"):
        values[COLUMNS.index(name)] = orjson.loads(values[COLUMNS.index(name)])
    return tuple(values)


def span_of(days: int) -> tuple[datetime, datetime]:
    end = timezone.now().astimezone(UTC)
    return end - timedelta(days=days), end
