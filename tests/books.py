"""The books as one comparable figure set, for tests that must prove no money moved.

A rejected input may change nothing that carries money: no balance, hold, ledger
entry, usage record, paid purchase, acted-on Stripe event or redemption. Taking the
snapshot before and after is cheaper and stricter than checking each table by hand.
"""

from __future__ import annotations

from django.db.models import Count, Sum

from billing.models import (
    Account,
    Hold,
    LedgerEntry,
    Purchase,
    Redemption,
    RedemptionCode,
    StripeEvent,
    UsageRecord,
)


def money_snapshot() -> dict[str, int]:
    """Every figure a request could move, summed over the whole database."""
    accounts = Account.objects.aggregate(
        balance=Sum("balance_micro_usd"), held=Sum("held_micro_usd"), accounts=Count("id")
    )
    ledger = LedgerEntry.objects.aggregate(entries=Count("id"), total=Sum("amount_micro_usd"))
    purchases = Purchase.objects.aggregate(
        purchases=Count("id"), refunded=Sum("refunded_credit_micro_usd")
    )
    return {
        "balance": accounts["balance"] or 0,
        "held": accounts["held"] or 0,
        "accounts": accounts["accounts"],
        "ledger_entries": ledger["entries"],
        "ledger_total": ledger["total"] or 0,
        "holds": Hold.objects.count(),
        "usage_records": UsageRecord.objects.count(),
        "purchases": purchases["purchases"],
        "paid_purchases": Purchase.objects.exclude(status=Purchase.Status.PENDING).count(),
        "refunded": purchases["refunded"] or 0,
        "stripe_events": StripeEvent.objects.count(),
        "redemptions": Redemption.objects.count(),
        "code_uses": RedemptionCode.objects.aggregate(uses=Sum("uses"))["uses"] or 0,
    }
