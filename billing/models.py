from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import F, Q, Sum
from django.utils import timezone

from billing.money import format_usd


class Account(models.Model):
    """A customer's money: `balance` is the sum of the ledger; `held` is reserved."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, models.CASCADE, related_name="account")
    balance_micro_usd = models.BigIntegerField(default=0)
    held_micro_usd = models.BigIntegerField(default=0)
    unlimited = models.BooleanField(
        default=False, help_text="Lifts rate limits; credits still apply."
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(held_micro_usd__gte=0), name="account_held_gte_0"),
        ]

    def __str__(self) -> str:
        return f"{self.user} ({format_usd(self.balance_micro_usd)})"

    @property
    def available_micro_usd(self) -> int:
        return self.balance_micro_usd - self.held_micro_usd

    def ledger_sum(self) -> int:
        return self.entries.aggregate(total=Sum("amount_micro_usd"))["total"] or 0


class LedgerEntry(models.Model):
    """Append-only: every change of a balance is one of these, in the same transaction."""

    class Kind(models.TextChoices):
        GRANT = "grant", "Grant"
        PURCHASE = "purchase", "Purchase"
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

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "ledger entries"
        indexes = [models.Index(fields=["account", "kind", "created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} {format_usd(self.amount_micro_usd)}"

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

    objects = HoldQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount_micro_usd__gte=0), name="hold_amount_gte_0"),
        ]

    def __str__(self) -> str:
        return f"hold {self.request_id} {format_usd(self.amount_micro_usd)}"


class UsageQuerySet(models.QuerySet["UsageRecord"]):
    def for_user(self, user: Any) -> UsageQuerySet:
        return self.filter(account__user=user)

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

    class Source(models.TextChoices):
        API = "api", "API"
        WEB = "web", "Web chat"

    request_id = models.CharField(max_length=64, unique=True)
    account = models.ForeignKey(Account, models.PROTECT, related_name="usage")
    api_key = models.ForeignKey(
        "accounts.ApiKey", models.SET_NULL, null=True, blank=True, related_name="usage"
    )
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.API)
    model = models.CharField(max_length=200, db_index=True)
    provider = models.CharField(max_length=100, blank=True)
    upstream_model = models.CharField(max_length=200, blank=True)
    stream = models.BooleanField(default=False)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    cost_micro_usd = models.BigIntegerField(default=0)
    reserved_micro_usd = models.BigIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OK)
    error = models.CharField(max_length=300, blank=True)
    attempts = models.PositiveSmallIntegerField(default=1)
    price_version = models.CharField(max_length=40, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = UsageQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["account", "created_at"]),
            models.Index(fields=["api_key", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.model} {format_usd(self.cost_micro_usd)}"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def available_expression() -> Any:
    return F("balance_micro_usd") - F("held_micro_usd")
