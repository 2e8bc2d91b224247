"""The signed-in home: what a customer wants to see first, read from real data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.urls import reverse

from accounts.models import ApiKey, SpendPeriod, User, period_starts
from billing.charts import spend_chart
from billing.ledger import account_for
from billing.models import Account, LedgerEntry, UsageRecord

RECENT_REQUESTS = 5
CHART_DAYS = 14
CAP_WARNING_PERCENT = 80
"""A key's spend cap is flagged on the dashboard from this share of it on."""


@dataclass(frozen=True, slots=True)
class Step:
    """One item of the getting-started checklist; `done` is read from the data."""

    label: str
    done: bool
    url: str
    action: str


@dataclass(frozen=True, slots=True)
class CapNotice:
    key: ApiKey
    spent_micro_usd: int
    cap_micro_usd: int

    @property
    def reached(self) -> bool:
        return self.spent_micro_usd >= self.cap_micro_usd


def header_account(user: Any) -> Account | None:
    """The account the header's balance shows, without opening one for a visitor."""
    if not user.is_authenticated:
        return None
    return Account.objects.filter(user=user).first() or account_for(user)


def checklist(user: User) -> list[Step]:
    """Create a key, then make a first call: each step ticks itself off."""
    api_keys = ApiKey.objects.for_user(user).filter(kind=ApiKey.Kind.API)
    # A refused call (no credit, over a limit) reached no model: not yet a first call.
    calls = UsageRecord.objects.for_user(user).settled().exclude(source=UsageRecord.Source.WEB)
    return [
        Step("Create an API key", api_keys.exists(), reverse("accounts:keys"), "Create a key"),
        Step("Make your first call", calls.exists(), reverse("quickstart"), "Open the quickstart"),
    ]


def cap_notices(user: User) -> list[CapNotice]:
    """Live keys at CAP_WARNING_PERCENT of their spend cap or past it, this period."""
    keys = (
        ApiKey.objects.for_user(user)
        .active()
        .filter(kind=ApiKey.Kind.API, spend_cap_micro_usd__isnull=False)
        .with_period_spend()
    )
    notices = []
    for key in keys:
        spent: int = key.period_spend_micro_usd  # type: ignore[attr-defined]
        cap = key.spend_cap_micro_usd or 0
        if spent * 100 >= cap * CAP_WARNING_PERCENT:
            notices.append(CapNotice(key, spent, cap))
    return notices


def dashboard_context(user: User) -> dict[str, Any]:
    account = account_for(user)
    usage = UsageRecord.objects.for_user(user)
    steps = checklist(user)
    grant = (
        LedgerEntry.objects.filter(account=account, kind=LedgerEntry.Kind.GRANT)
        .order_by("created_at")
        .first()
    )
    return {
        "account": account,
        "signup_grant": grant,
        "steps": steps,
        "steps_done": sum(step.done for step in steps),
        "show_checklist": not all(step.done for step in steps),
        "week": usage.settled().filter(created_at__gte=period_starts()[SpendPeriod.WEEK]).summary(),
        "recent": usage.select_related("api_key").order_by("-created_at", "-id")[:RECENT_REQUESTS],
        "cap_notices": cap_notices(user),
        "chart": spend_chart(usage.daily_spend(days=CHART_DAYS)),
    }
