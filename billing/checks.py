from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register
from django.db import DatabaseError
from django.db.models import OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce


@register(Tags.database)
def check_ledger_matches_balances(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """`manage.py check --database default`: every balance equals the sum of its ledger."""
    from billing.models import Account, LedgerEntry

    totals = (
        LedgerEntry.objects.filter(account=OuterRef("pk"))
        .values("account")
        .annotate(total=Sum("amount_micro_usd"))
        .values("total")
    )
    try:
        broken = list(
            Account.objects.annotate(ledger=Coalesce(Subquery(totals), 0))
            .exclude(balance_micro_usd=Coalesce(Subquery(totals), 0))
            .values_list("pk", flat=True)[:20]
        )
    except DatabaseError:
        return []
    return [
        Error(
            f"Account {pk}: balance differs from the sum of its ledger entries",
            id="billing.E001",
        )
        for pk in broken
    ]


@register()
def check_holds_are_refreshed_before_they_expire(
    app_configs: Any = None, **kwargs: Any
) -> list[Error]:
    """A running call refreshes its hold every HOLD_REFRESH_SECONDS: it must be sooner
    than HOLD_TTL_SECONDS, or the sweeper takes live requests for dead ones."""
    refresh, ttl = settings.HOLD_REFRESH_SECONDS, settings.HOLD_TTL_SECONDS
    if 0 < refresh < ttl:
        return []
    return [
        Error(
            f"HOLD_REFRESH_SECONDS ({refresh}) must be above 0 and below HOLD_TTL_SECONDS ({ttl})",
            id="billing.E010",
        )
    ]
