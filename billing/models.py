from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, models
from django.db.models import Avg, Count, F, Max, Q, Sum
from django.db.models.functions import TruncDate
from django.template.defaultfilters import pluralize
from django.utils import timezone
from django.utils.crypto import get_random_string

from billing.money import PER_MTOK, format_money, format_usd


class AccountQuerySet(models.QuerySet["Account"]):
    def disable_unlimited_below_floor(self, account_id: int) -> int:
        """Turn unlimited mode off when the balance fell below the floor (one UPDATE)."""
        return self.filter(
            pk=account_id,
            unlimited=True,
            balance_micro_usd__lt=settings.UNLIMITED_MODE_FLOOR_MICRO_USD,
        ).update(unlimited=False)


class Account(models.Model):
    """A customer's money: `balance` is the sum of the ledger; `held` is reserved."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, models.CASCADE, related_name="account")
    balance_micro_usd = models.BigIntegerField(default=0)
    held_micro_usd = models.BigIntegerField(default=0)
    unlimited = models.BooleanField(
        default=False, help_text="Lifts rate limits; credits still apply."
    )
    signup_grant_pending = models.BooleanField(
        default=False, help_text="The sign-up grant is paid when the e-mail address is verified."
    )
    created_at = models.DateTimeField(default=timezone.now)
    store_content = models.BooleanField(
        default=False,
        help_text="Keep each request's messages and answer for PROMPT_RETENTION_DAYS.",
    )
    alert_balance_below_micro_usd = models.BigIntegerField(
        null=True, blank=True, help_text="E-mail when the balance falls below this."
    )
    balance_alert_sent = models.BooleanField(
        default=False, help_text="Sent for the current crossing; re-armed above the threshold."
    )
    alert_key_expiry_days = models.PositiveSmallIntegerField(
        default=7, help_text="E-mail this many days before a key expires (0: never)."
    )
    alert_spend_cap = models.BooleanField(
        default=True, help_text="E-mail when a key reaches its spend cap for its period."
    )

    objects = AccountQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(held_micro_usd__gte=0), name="account_held_gte_0"),
        ]

    def __str__(self) -> str:
        return f"{self.user} ({format_money(self.balance_micro_usd)})"

    @property
    def available_micro_usd(self) -> int:
        return self.balance_micro_usd - self.held_micro_usd

    def ledger_sum(self) -> int:
        return self.entries.aggregate(total=Sum("amount_micro_usd"))["total"] or 0

    @property
    def is_low(self) -> bool:
        return self.available_micro_usd < settings.LOW_BALANCE_WARNING_MICRO_USD

    @property
    def can_enable_unlimited(self) -> bool:
        return self.balance_micro_usd >= settings.UNLIMITED_MODE_FLOOR_MICRO_USD

    def set_unlimited(self, enabled: bool) -> bool:
        """Switch unlimited mode; it only turns on while the balance is at the floor or above."""
        rows = Account.objects.filter(pk=self.pk)
        if enabled:
            rows = rows.filter(balance_micro_usd__gte=settings.UNLIMITED_MODE_FLOOR_MICRO_USD)
        changed = bool(rows.update(unlimited=enabled))
        self.refresh_from_db(fields=["balance_micro_usd", "held_micro_usd", "unlimited"])
        return changed


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One line of an account's history: a ledger entry, or a day of usage rolled up."""

    at: datetime
    kind: str
    label: str
    memo: str
    amount_micro_usd: int
    count: int = 1
    flagged: bool = False

    @property
    def is_usage_day(self) -> bool:
        return self.kind == LedgerEntry.Kind.USAGE


@dataclass(frozen=True, slots=True)
class DaySpend:
    day: date
    spent_micro_usd: int
    requests: int


class LedgerEntryQuerySet(models.QuerySet["LedgerEntry"]):
    def usage_by_day(self) -> models.QuerySet[Any]:
        """Usage debits summed per UTC day, newest first."""
        return (
            self.filter(kind=LedgerEntry.Kind.USAGE)
            .annotate(day=TruncDate("created_at"))
            .values("day")
            .annotate(total=Sum("amount_micro_usd"), requests=Count("id"), last=Max("created_at"))
            .order_by("-day")
        )

    def history(self) -> list[HistoryRow]:
        """Every credit and debit, newest first, with usage rolled up to one row per day."""
        rows = [
            HistoryRow(
                at=entry.created_at,
                kind=entry.kind,
                label=entry.get_kind_display(),
                memo=entry.memo,
                amount_micro_usd=entry.amount_micro_usd,
                flagged=entry.flagged,
            )
            for entry in self.exclude(kind=LedgerEntry.Kind.USAGE).only(
                "created_at", "kind", "memo", "amount_micro_usd", "flagged"
            )
        ]
        for day in self.usage_by_day():
            rows.append(
                HistoryRow(
                    at=day["last"],
                    kind=LedgerEntry.Kind.USAGE,
                    label="Usage",
                    memo=f"{day['requests']} request{pluralize(day['requests'])}",
                    amount_micro_usd=day["total"],
                    count=day["requests"],
                )
            )
        rows.sort(key=lambda row: row.at, reverse=True)
        return rows

    def daily_spend(self, *, days: int, today: date | None = None) -> list[DaySpend]:
        """Usage per day for the last `days` days (oldest first), zero-filled for charts."""
        today = today or timezone.now().date()
        start = today - timedelta(days=days - 1)
        found = {row["day"]: row for row in self.filter(created_at__date__gte=start).usage_by_day()}
        spend = []
        for offset in range(days):
            day = start + timedelta(days=offset)
            row = found.get(day)
            spend.append(
                DaySpend(
                    day=day,
                    spent_micro_usd=-row["total"] if row else 0,
                    requests=row["requests"] if row else 0,
                )
            )
        return spend


class LedgerEntry(models.Model):
    """Append-only: every change of a balance is one of these, in the same transaction."""

    class Kind(models.TextChoices):
        GRANT = "grant", "Grant"
        PURCHASE = "purchase", "Purchase"
        BONUS = "bonus", "Bonus"
        USAGE = "usage", "Usage"
        REFUND = "refund", "Refund"
        ADJUSTMENT = "adjustment", "Adjustment"
        REDEMPTION = "redemption", "Redemption"

    account = models.ForeignKey(Account, models.PROTECT, related_name="entries")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    amount_micro_usd = models.BigIntegerField()
    idempotency_key = models.CharField(max_length=200, unique=True)
    memo = models.CharField(max_length=300, blank=True)
    flagged = models.BooleanField(default=False, help_text="Took the balance below zero.")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = LedgerEntryQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "ledger entries"
        indexes = [models.Index(fields=["account", "kind", "created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} {format_money(self.amount_micro_usd)}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise ValueError("Ledger entries are append-only")
        super().save(*args, **kwargs)


class HoldQuerySet(models.QuerySet["Hold"]):
    def expired(self, now: datetime | None = None) -> HoldQuerySet:
        return self.filter(expires_at__lte=now or timezone.now())


class Hold(models.Model):
    """Credit reserved for one in-flight request; deleted when the request settles."""

    account = models.ForeignKey(Account, models.CASCADE, related_name="holds")
    api_key = models.ForeignKey("accounts.ApiKey", models.SET_NULL, null=True, blank=True)
    request_id = models.CharField(max_length=64, unique=True)
    amount_micro_usd = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)
    progress = models.JSONField(
        null=True,
        blank=True,
        help_text="What the request had cost so far ({cost, usage}), for the sweeper.",
    )

    objects = HoldQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount_micro_usd__gte=0), name="hold_amount_gte_0"),
        ]

    def __str__(self) -> str:
        return f"hold {self.request_id} {format_money(self.amount_micro_usd)}"


@dataclass(frozen=True, slots=True)
class LineItem:
    """One part of a cost: `tokens` (or 1 request) at `price`, per million tokens or,
    for the per-request price, per request."""

    label: str
    tokens: int
    price: int
    micro_usd: Decimal
    per_request: bool = False


# What a request id can be (the gateway mints `req_` and 24 hex digits): a lookup of
# anything else is answered without a query, and PostgreSQL never sees a NUL.
REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class UsageQuerySet(models.QuerySet["UsageRecord"]):
    def for_user(self, user: Any) -> UsageQuerySet:
        return self.filter(account__user=user)

    def settled(self) -> UsageQuerySet:
        """Records of calls that were accepted and settled (refused calls left out)."""
        return self.exclude(status=UsageRecord.Status.REFUSED)

    def for_account(self, account_id: int) -> UsageQuerySet:
        """The account's records: where every query of the request log starts."""
        return self.filter(account_id=account_id)

    def models_used(self, account_id: int, limit: int = 500) -> list[str]:
        """The models an account has called, in order: one probe of the (account, model)
        index per model (a loose index scan), not a scan of the account's records."""
        table = connection.ops.quote_name(UsageRecord._meta.db_table)
        statement = (
            "WITH RECURSIVE used(model) AS ("  # noqa: S608 - the table name is the model's
            f"SELECT (SELECT model FROM {table} WHERE account_id = %s ORDER BY model LIMIT 1) "
            "UNION ALL "
            f"SELECT (SELECT model FROM {table} WHERE account_id = %s AND model > used.model "
            "ORDER BY model LIMIT 1) FROM used WHERE used.model IS NOT NULL"
            ") SELECT model FROM used WHERE model IS NOT NULL LIMIT %s"
        )
        with connection.cursor() as cursor:
            cursor.execute(statement, [account_id, account_id, limit])
            return [row[0] for row in cursor.fetchall()]

    def with_request_id(self, request_id: str) -> UsageQuerySet:
        """The record of one request; empty, without a query, for a malformed id."""
        if not REQUEST_ID.fullmatch(request_id):
            return self.none()
        return self.filter(request_id=request_id)

    def since_days(self, days: int, today: date | None = None) -> UsageQuerySet:
        """Records from the start of the UTC day `days - 1` days ago."""
        today = today or timezone.now().date()
        return self.filter(created_at__date__gte=today - timedelta(days=days - 1))

    def summary(self) -> dict[str, Any]:
        """Totals for a dashboard: requests, tokens, spend, errors, mean latency."""
        totals = self.aggregate(
            requests=Count("id"),
            prompt_tokens=Sum("prompt_tokens"),
            completion_tokens=Sum("completion_tokens"),
            cached_tokens=Sum("cached_tokens"),
            spent_micro_usd=Sum("cost_micro_usd"),
            errors=Count("id", filter=~Q(status="ok")),
            latency_ms=Avg("latency_ms"),
            ttft_ms=Avg("ttft_ms"),
        )
        return {key: value or 0 for key, value in totals.items()}

    def daily_spend(self, *, days: int, today: date | None = None) -> list[DaySpend]:
        """Spend and requests per UTC day for the last `days` days, zero-filled, oldest first."""
        today = today or timezone.now().date()
        start = today - timedelta(days=days - 1)
        found = {
            row["day"]: row
            for row in self.since_days(days, today)
            .annotate(day=TruncDate("created_at"))
            .values("day")
            .annotate(spent=Sum("cost_micro_usd"), requests=Count("id"))
        }
        return [
            DaySpend(
                day=day,
                spent_micro_usd=found[day]["spent"] if day in found else 0,
                requests=found[day]["requests"] if day in found else 0,
            )
            for day in (start + timedelta(days=offset) for offset in range(days))
        ]

    def spent_since(self, *, api_key_id: int, since: datetime) -> int:
        return (
            self.filter(api_key_id=api_key_id, created_at__gte=since).aggregate(
                total=Sum("cost_micro_usd")
            )["total"]
            or 0
        )


class UsageRecord(models.Model):
    """One row per accepted request, written in the settlement transaction."""

    class Status(models.TextChoices):
        OK = "ok", "OK"
        ERROR = "error", "Upstream error"
        CANCELLED = "cancelled", "Cancelled by client"
        REFUSED = "refused", "Refused"

    class Source(models.TextChoices):
        """The door a call came through (its protocol)."""

        API = "api", "Chat Completions API"
        MESSAGES = "messages", "Anthropic Messages API"
        RESPONSES = "responses", "Responses API"
        WEB = "web", "Web chat"
        CHAT_STREAM = "chat_stream", "Chat streaming API"

    request_id = models.CharField(max_length=64, unique=True)
    # Indexed by Meta's (account, …) and (api_key, created_at, id) indexes, which lead
    # with these columns: an index of their own would only slow every settlement.
    account = models.ForeignKey(Account, models.PROTECT, related_name="usage", db_index=False)
    api_key = models.ForeignKey(
        "accounts.ApiKey",
        models.SET_NULL,
        null=True,
        blank=True,
        related_name="usage",
        db_index=False,
    )
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.API)
    model = models.CharField(max_length=200, db_index=True)
    requested_model = models.CharField(
        max_length=200,
        blank=True,
        help_text="What the client named when a mode chose the model (auto, persona/<slug>).",
    )
    provider = models.CharField(max_length=100, blank=True)
    upstream_model = models.CharField(max_length=200, blank=True)
    stream = models.BooleanField(default=False)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0, help_text="read from the prompt cache")
    cache_write_tokens = models.PositiveIntegerField(
        default=0, help_text="written to the prompt cache (part of the prompt tokens)"
    )
    cache_write_1h_tokens = models.PositiveIntegerField(
        default=0, help_text="of the cache writes, those kept for an hour"
    )
    unit_prices = models.JSONField(
        default=dict,
        blank=True,
        help_text="micro-USD per million tokens charged for each kind of token used "
        "(input, output, cache_read, cache_write, cache_write_1h), and per request "
        "(request) where the model has that price, as they were",
    )
    cost_micro_usd = models.BigIntegerField(default=0)
    reserved_micro_usd = models.BigIntegerField(default=0)
    uncharged_micro_usd = models.BigIntegerField(
        default=0, help_text="Real cost above the charge: revenue lost to the hold or balance cap."
    )
    flags = models.CharField(
        max_length=100, blank=True, help_text="Space-separated, e.g. capped hold_missing."
    )
    latency_ms = models.PositiveIntegerField(default=0)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OK)
    error = models.CharField(max_length=300, blank=True)
    http_status = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="The HTTP status a refused request was answered with."
    )
    error_code = models.CharField(max_length=64, blank=True, help_text="e.g. insufficient_credits")
    finish_reason = models.CharField(max_length=32, blank=True)
    attempts = models.PositiveSmallIntegerField(default=1)
    route_log = models.JSONField(
        default=list,
        blank=True,
        help_text="Each route tried, in order: provider, upstream model, start and duration "
        "in ms from the request's start, outcome and error.",
    )
    price_version = models.CharField(max_length=40, blank=True)
    rag_sources = models.JSONField(
        default=list,
        blank=True,
        help_text="the passages RAG added to the prompt: document_id, document_name and "
        "passage_id of each, as they were when the call ran",
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = UsageQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        # The request log's queries (billing.usage): every one starts from the account
        # and reads newest first by (created_at, id), the keyset cursor; a filter on a
        # rare value (a model, a status, a door) must not scan the account's other rows.
        indexes = [
            models.Index(fields=["account", "created_at", "id"], name="usage_account_time"),
            models.Index(fields=["api_key", "created_at", "id"], name="usage_key_time"),
            models.Index(
                fields=["account", "model", "created_at", "id"], name="usage_account_model"
            ),
            models.Index(
                fields=["account", "status", "created_at", "id"], name="usage_account_status"
            ),
            models.Index(
                fields=["account", "source", "created_at", "id"], name="usage_account_source"
            ),
            # A model page's recent speed: one model's newest records (console.model_pages).
            models.Index(fields=["model", "created_at"], name="usage_model_created"),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.model} {format_money(self.cost_micro_usd)}"

    def line_items(self) -> list[LineItem]:
        """What the cost is made of: each kind of token, its count, its price per million
        and its share of the cost (exact, before the total is rounded up)."""
        written_1h = self.cache_write_1h_tokens
        written = self.cache_write_tokens - written_1h
        plain = self.prompt_tokens - self.cached_tokens - self.cache_write_tokens
        counts = [
            ("input", "Input", plain),
            ("cache_read", "Cache reads", self.cached_tokens),
            ("cache_write", "Cache writes (5 min)", written),
            ("cache_write_1h", "Cache writes (1 h)", written_1h),
            ("output", "Output", self.completion_tokens),
        ]
        items = [
            LineItem(label, tokens, price, Decimal(tokens * price) / PER_MTOK)
            for kind, label, tokens in counts
            if tokens > 0 and (price := self.unit_prices.get(kind)) is not None
        ]
        if request_price := self.unit_prices.get("request"):
            items.insert(0, LineItem("Per request", 1, request_price, Decimal(request_price), True))
        return items

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


# Latency and time-to-first-token histograms of the rollups: bucket i counts the calls
# that took less than LATENCY_BOUNDS_MS[i] milliseconds (and at least the bound before);
# the last bucket counts the rest. Fixed, so rollups of any rows add up.
LATENCY_BOUNDS_MS = (100, 250, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000, 20000, 60000)
LATENCY_BUCKETS = tuple(f"latency_{i:02d}" for i in range(len(LATENCY_BOUNDS_MS) + 1))
TTFT_BUCKETS = tuple(f"ttft_{i:02d}" for i in range(len(LATENCY_BOUNDS_MS) + 1))


class UsageHourQuerySet(models.QuerySet["UsageHour"]):
    def for_user(self, user: Any) -> UsageHourQuerySet:
        return self.filter(account__user=user)

    def between(self, start: datetime, end: datetime) -> UsageHourQuerySet:
        """The hours that start in [start, end)."""
        return self.filter(hour__gte=start, hour__lt=end)


class UsageHour(models.Model):
    """The usage records of one account, key, model and protocol in one UTC hour, added up.

    Written in the settlement's own statement (billing.rollups), so it always equals
    the raw rows it sums; dashboards read these, never the raw rows. Raw rows pruned
    for retention stay counted here.
    """

    hour = models.DateTimeField(help_text="start of the UTC hour")
    account = models.ForeignKey(Account, models.CASCADE, related_name="+")
    api_key_id = models.BigIntegerField(default=0, help_text="0: no key")
    model = models.CharField(max_length=200)
    source = models.CharField(max_length=16, choices=UsageRecord.Source.choices)
    requests = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0, help_text="status error")
    cancelled = models.BigIntegerField(default=0)
    refused = models.BigIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    cached_tokens = models.BigIntegerField(default=0)
    cache_write_tokens = models.BigIntegerField(default=0)
    cost_micro_usd = models.BigIntegerField(default=0)
    uncharged_micro_usd = models.BigIntegerField(default=0)
    saved_micro_usd = models.BigIntegerField(
        default=0, help_text="what the cache reads would have cost at the input price, less"
    )
    latency_ms = models.BigIntegerField(default=0, help_text="sum")
    ttft_ms = models.BigIntegerField(default=0, help_text="sum, of the calls with a TTFT")
    ttft_count = models.BigIntegerField(default=0)
    latency_00 = models.BigIntegerField(default=0)
    latency_01 = models.BigIntegerField(default=0)
    latency_02 = models.BigIntegerField(default=0)
    latency_03 = models.BigIntegerField(default=0)
    latency_04 = models.BigIntegerField(default=0)
    latency_05 = models.BigIntegerField(default=0)
    latency_06 = models.BigIntegerField(default=0)
    latency_07 = models.BigIntegerField(default=0)
    latency_08 = models.BigIntegerField(default=0)
    latency_09 = models.BigIntegerField(default=0)
    latency_10 = models.BigIntegerField(default=0)
    latency_11 = models.BigIntegerField(default=0)
    latency_12 = models.BigIntegerField(default=0)
    ttft_00 = models.BigIntegerField(default=0)
    ttft_01 = models.BigIntegerField(default=0)
    ttft_02 = models.BigIntegerField(default=0)
    ttft_03 = models.BigIntegerField(default=0)
    ttft_04 = models.BigIntegerField(default=0)
    ttft_05 = models.BigIntegerField(default=0)
    ttft_06 = models.BigIntegerField(default=0)
    ttft_07 = models.BigIntegerField(default=0)
    ttft_08 = models.BigIntegerField(default=0)
    ttft_09 = models.BigIntegerField(default=0)
    ttft_10 = models.BigIntegerField(default=0)
    ttft_11 = models.BigIntegerField(default=0)
    ttft_12 = models.BigIntegerField(default=0)

    objects = UsageHourQuerySet.as_manager()

    class Meta:
        constraints = [
            # The settlement's upsert target, and the dashboards' index (account, range).
            models.UniqueConstraint(
                fields=["account", "hour", "api_key_id", "model", "source"],
                name="usage_hour_unique",
            )
        ]
        indexes = [models.Index(fields=["hour"], name="usage_hour_hour")]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h account {self.account_id} {self.model}"


class UsageDayQuerySet(models.QuerySet["UsageDay"]):
    def between(self, first: date, last: date) -> UsageDayQuerySet:
        """The UTC days first..last."""
        return self.filter(day__gte=first, day__lte=last)


class UsageDay(models.Model):
    """The usage records of one account and model in one UTC day, added up: what the
    operator page reads (a few rows per account and day, where the hourly rollups have
    a row per key, protocol and hour). Written with UsageHour, in the same statement."""

    day = models.DateField(help_text="UTC day")
    account = models.ForeignKey(Account, models.CASCADE, related_name="+")
    model = models.CharField(max_length=200)
    requests = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    cancelled = models.BigIntegerField(default=0)
    refused = models.BigIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    cached_tokens = models.BigIntegerField(default=0)
    cost_micro_usd = models.BigIntegerField(default=0)
    uncharged_micro_usd = models.BigIntegerField(default=0)

    objects = UsageDayQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["day", "account", "model"], name="usage_day_unique")
        ]

    def __str__(self) -> str:
        return f"{self.day} account {self.account_id} {self.model}"


class BooksCheck(models.Model):
    """One run of the books' checks (billing.checks): when, and what it found."""

    ran_at = models.DateTimeField(default=timezone.now, db_index=True)
    database = models.CharField(max_length=100, default="default")
    errors = models.PositiveIntegerField(default=0)
    warnings = models.PositiveIntegerField(default=0)
    findings = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-ran_at"]

    def __str__(self) -> str:
        return f"books {self.ran_at:%Y-%m-%d %H:%M} {self.errors} errors"

    @property
    def is_clean(self) -> bool:
        return self.errors == 0


class RequestContentQuerySet(models.QuerySet["RequestContent"]):
    def expired(self, now: datetime | None = None) -> RequestContentQuerySet:
        """Content kept longer than PROMPT_RETENTION_DAYS."""
        now = now or timezone.now()
        return self.filter(created_at__lt=now - timedelta(days=settings.PROMPT_RETENTION_DAYS))


class RequestContent(models.Model):
    """A request's messages and answer, for accounts that keep them (off by default).

    Kept apart from UsageRecord so the request log stays narrow and fast, and written
    after the settlement only for accounts with `store_content` on."""

    usage = models.OneToOneField(
        UsageRecord, models.CASCADE, primary_key=True, related_name="content"
    )
    account = models.ForeignKey(Account, models.CASCADE, related_name="+")
    messages = models.JSONField(default=list)
    response = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = RequestContentQuerySet.as_manager()

    def __str__(self) -> str:
        return f"content of usage {self.usage_id}"


class CreditPackageQuerySet(models.QuerySet["CreditPackage"]):
    def active(self) -> CreditPackageQuerySet:
        return self.filter(active=True).order_by("order", "price_micro_usd")

    def bonus_tiers(self) -> CreditPackageQuerySet:
        """The packages on sale that carry a bonus, cheapest first: the bonus tiers."""
        return self.filter(active=True, bonus_micro_usd__gt=0).order_by("price_micro_usd")


class CreditPackage(models.Model):
    """Credit sold through Stripe Checkout: pay `price`, receive `credit + bonus`."""

    slug = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=80)
    price_micro_usd = models.BigIntegerField(
        help_text="What the customer pays, in micro-USD (whole cents: 5000000 = $5.00)."
    )
    credit_micro_usd = models.BigIntegerField(help_text="Credit granted, in micro-USD.")
    bonus_micro_usd = models.BigIntegerField(default=0, help_text="Extra credit, in micro-USD.")
    active = models.BooleanField(default=True)
    order = models.PositiveSmallIntegerField(default=0)

    objects = CreditPackageQuerySet.as_manager()

    class Meta:
        ordering = ["order", "price_micro_usd"]
        constraints = [
            models.CheckConstraint(
                condition=Q(price_micro_usd__gte=500_000), name="package_price_at_least_50_cents"
            ),
            models.CheckConstraint(
                condition=Q(credit_micro_usd__gt=0, bonus_micro_usd__gte=0),
                name="package_credit_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({format_usd(self.price_micro_usd)})"

    def clean(self) -> None:
        if self.price_micro_usd is not None and self.price_micro_usd % 10_000:
            raise ValidationError({"price_micro_usd": "Stripe charges whole cents."})

    @property
    def total_credit_micro_usd(self) -> int:
        return self.credit_micro_usd + self.bonus_micro_usd

    @property
    def bonus_percent(self) -> Decimal:
        """The bonus as a share of the credit bought, to one decimal (5.0 for +5%)."""
        return (Decimal(100 * self.bonus_micro_usd) / self.credit_micro_usd).quantize(
            Decimal("0.1")
        )

    @property
    def price_cents(self) -> int:
        return self.price_micro_usd // 10_000


# What a Stripe object id can be (`cs_test_a1B2…`, `pi_…`, `evt_…`): anything else
# names nothing of ours, and is never sent to the database (PostgreSQL refuses NUL).
STRIPE_ID = re.compile(r"[A-Za-z0-9_]{1,255}")


class PurchaseQuerySet(models.QuerySet["Purchase"]):
    def for_user(self, user: Any) -> PurchaseQuerySet:
        return self.filter(account__user=user)

    def with_session_id(self, session_id: str) -> PurchaseQuerySet:
        """The purchase of one Checkout Session; empty, without a query, for a malformed id."""
        if not STRIPE_ID.fullmatch(session_id):
            return self.none()
        return self.filter(stripe_session_id=session_id)

    def offer(self, *, account: Account, package: CreditPackage, session_id: str) -> Purchase:
        """The pending purchase of `package` through Checkout Session `session_id`, with
        the package's price, credit and bonus as they are now (later edits don't change it)."""
        return self.create(
            account=account,
            package=package,
            stripe_session_id=session_id,
            price_micro_usd=package.price_micro_usd,
            credit_micro_usd=package.total_credit_micro_usd,
            bonus_micro_usd=package.bonus_micro_usd,
        )


class Purchase(models.Model):
    """One Stripe Checkout Session: what was offered, and whether the webhook paid it."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for payment"
        PAID = "paid", "Paid"
        REFUNDED = "refunded", "Refunded"

    account = models.ForeignKey(Account, models.PROTECT, related_name="purchases")
    package = models.ForeignKey(CreditPackage, models.SET_NULL, null=True, related_name="+")
    stripe_session_id = models.CharField(max_length=255, unique=True)
    payment_intent_id = models.CharField(max_length=255, blank=True, db_index=True)
    price_micro_usd = models.BigIntegerField()
    credit_micro_usd = models.BigIntegerField(help_text="All the credit, the bonus included.")
    bonus_micro_usd = models.BigIntegerField(
        default=0, help_text="Of the credit, the package's bonus (granted as its own entry)."
    )
    refunded_credit_micro_usd = models.BigIntegerField(default=0)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(default=timezone.now)
    paid_at = models.DateTimeField(null=True, blank=True)

    objects = PurchaseQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.stripe_session_id} {format_usd(self.price_micro_usd)} {self.status}"

    @property
    def is_paid(self) -> bool:
        return self.status != self.Status.PENDING


class StripeEvent(models.Model):
    """A webhook event we acted on; its unique id makes every delivery after the first a no-op."""

    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100)
    outcome = models.CharField(max_length=200, blank=True)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.event_id} {self.type}"


CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def new_redemption_code() -> str:
    """Like `K7QM-3XPA-9WRT`: no 0/O or 1/I to misread."""
    return "-".join(get_random_string(4, CODE_ALPHABET) for _ in range(3))


class RedemptionCodeQuerySet(models.QuerySet["RedemptionCode"]):
    def redeemable(self, now: datetime | None = None) -> RedemptionCodeQuerySet:
        """Codes with uses left that have not expired (the filter of the redeeming UPDATE)."""
        now = now or timezone.now()
        return self.filter(active=True, uses__lt=F("max_uses")).filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=now)
        )


class RedemptionCode(models.Model):
    """A code the operator hands out; each account can redeem it once, up to `max_uses` in all."""

    code = models.CharField(max_length=40, unique=True, default=new_redemption_code)
    amount_micro_usd = models.BigIntegerField(help_text="Credit per redemption, in micro-USD.")
    max_uses = models.PositiveIntegerField(default=1)
    uses = models.PositiveIntegerField(default=0, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    active = models.BooleanField(default=True)
    memo = models.CharField(max_length=200, blank=True, help_text="For the operator only.")
    created_at = models.DateTimeField(default=timezone.now)

    objects = RedemptionCodeQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(uses__lte=F("max_uses")), name="redemption_uses_lte_max"
            ),
            models.CheckConstraint(
                condition=Q(amount_micro_usd__gt=0), name="redemption_amount_positive"
            ),
        ]

    def __str__(self) -> str:
        return self.code

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.code = normalize_code(self.code)
        super().save(*args, **kwargs)


def normalize_code(code: str) -> str:
    return "".join(code.split()).upper()


class Redemption(models.Model):
    code = models.ForeignKey(RedemptionCode, models.PROTECT, related_name="redemptions")
    account = models.ForeignKey(Account, models.PROTECT, related_name="redemptions")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["code", "account"], name="one_redemption_per_account")
        ]

    def __str__(self) -> str:
        return f"{self.code} by {self.account}"
