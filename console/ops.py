"""The operator page (/ops/, staff only): the business and the health of the gateway.

Money per day reads the daily rollups (UTC days) and the purchases, never the raw
usage rows;
provider health reads the raw rows of the last hour only (one index range) plus this
host's live state: cooldowns (per worker process, gateway.routing) and the metrics
(gateway.metrics, every worker of the host in multiprocess mode). Credit held and
requests in flight across every host are the holds themselves.

Margin: the catalog keeps no upstream cost per call. Prices are the vendors' list
prices, charged with PRICE_MARKUP_PERCENT on top, so what an upstream cost is taken to
be the charge without the markup, and the margin per day is what customers paid that
day (purchases less refunds) minus that upstream cost. With no markup, usage earns
nothing and the margin is the credit sold and not yet used.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.http import Http404, HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from billing.checks import check_books, last_books_check
from billing.dashboard import Tally
from billing.models import (
    Account,
    Hold,
    LedgerEntry,
    Purchase,
    UsageDay,
    UsageRecord,
)
from billing.money import MICRO
from billing.rollups import histogram_counts
from gateway import metrics
from gateway.models import Provider
from gateway.routing import cooling_for

OPS_DAYS = 30
TOP = 10
HEALTH_WINDOW = timedelta(hours=1)


def staff_only(view: Any) -> Any:
    """Staff see the page; anyone else gets a 404, as for a page that is not there."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        if not request.user.is_staff:
            raise Http404("No such page")
        return view(request, *args, **kwargs)

    return login_required(wrapped)


@dataclass
class Day:
    day: date
    revenue: int = 0
    refunds: int = 0
    charged: int = 0
    active_accounts: int = 0
    requests: int = 0

    @property
    def upstream_cost(self) -> int:
        return upstream_cost(self.charged)

    @property
    def margin(self) -> int:
        return self.revenue - self.refunds - self.upstream_cost


def upstream_cost(charged: int) -> int:
    """What upstreams are taken to have cost for `charged` (see the module docstring)."""
    return charged * 100 // (100 + settings.PRICE_MARKUP_PERCENT)


def money_per_day(first: date, last: date, usage: list[dict[str, Any]]) -> list[Day]:
    """Revenue, refunds, usage charged and active accounts per UTC day, `usage` being
    usage_by_day_and_account() of the same days."""
    count = (last - first).days + 1
    days = {first + timedelta(days=n): Day(first + timedelta(days=n)) for n in range(count)}
    start = datetime.combine(first, datetime.min.time(), UTC)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), UTC)
    for row in usage:
        if (day := days.get(_as_date(row["day"]))) is not None:
            day.charged += row["charged"] or 0
            day.requests += row["requests"] or 0
            day.active_accounts += 1
    bought: Any = (
        Purchase.objects.exclude(status=Purchase.Status.PENDING)
        .filter(paid_at__gte=start, paid_at__lt=end)
        .annotate(day=TruncDate("paid_at", tzinfo=UTC))
        .values("day")
        .annotate(total=Sum("price_micro_usd"))
        .order_by()
    )
    for row in bought:
        if (day := days.get(_as_date(row["day"]))) is not None:
            day.revenue = row["total"] or 0
    refunded: Any = (
        LedgerEntry.objects.filter(
            kind=LedgerEntry.Kind.REFUND, created_at__gte=start, created_at__lt=end
        )
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("day")
        .annotate(total=Sum("amount_micro_usd"))
        .order_by()
    )
    for row in refunded:
        if (day := days.get(_as_date(row["day"]))) is not None:
            day.refunds = -(row["total"] or 0)
    return list(days.values())


def _as_date(value: Any) -> date:
    return date.fromisoformat(value) if isinstance(value, str) else value


def usage_by_day_and_account(first: date, last: date) -> Any:
    """Charged and requests per UTC day and account (one row per active account-day)."""
    return (
        UsageDay.objects.between(first, last)
        .order_by()
        .values("day", "account_id")
        .annotate(charged=Sum("cost_micro_usd"), requests=Sum("requests"))
    )


def top_models(first: date, last: date) -> list[Any]:
    return list(
        UsageDay.objects.between(first, last)
        .order_by()
        .values("model")
        .annotate(charged=Sum("cost_micro_usd"), requests=Sum("requests"))
        .order_by("-charged", "model")[:TOP]
    )


def top_accounts(usage: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The accounts charged most in `usage` (usage_by_day_and_account() rows), with
    their e-mail addresses."""
    per_account: dict[int, dict[str, Any]] = {}
    for row in usage:
        found = per_account.setdefault(
            row["account_id"], {"account_id": row["account_id"], "charged": 0, "requests": 0}
        )
        found["charged"] += row["charged"] or 0
        found["requests"] += row["requests"] or 0
    top = sorted(per_account.values(), key=lambda a: (-a["charged"], a["account_id"]))[:TOP]
    emails = dict(
        Account.objects.filter(pk__in=[a["account_id"] for a in top]).values_list(
            "pk", "user__email"
        )
    )
    return [{**a, "email": emails.get(a["account_id"], "")} for a in top]


@dataclass
class ProviderHealth:
    name: str
    enabled: bool
    cooling_seconds: float
    failed_attempts: float
    tally: Tally
    in_catalog: bool = True

    @property
    def status(self) -> str:
        if not self.in_catalog:
            return "not in the catalog"
        if not self.enabled:
            return "disabled"
        if self.cooling_seconds:
            return "cooling down"
        if self.tally.requests and self.tally.error_rate > 0.05:
            return "failing"
        return "healthy"


def provider_health(now: datetime) -> list[ProviderHealth]:
    """Each provider over the last hour: its calls from the raw rows (one index range on
    created_at), its cooldown on this worker, and its failed attempts since this host's
    workers started (the metric, which counts attempts a fallback recovered)."""
    recent: Any = (
        UsageRecord.objects.filter(created_at__gte=now - HEALTH_WINDOW)
        .order_by()
        .values("provider")
        .annotate(
            requests=Count("id"),
            errors=Count("id", filter=Q(status=UsageRecord.Status.ERROR)),
            **histogram_counts(),
        )
    )
    tallies: dict[str, Tally] = {}
    for row in recent:
        tally = tallies[row["provider"]] = Tally()
        tally.sums.update({k: v for k, v in row.items() if k != "provider"})
    failed = metrics.samples("switchboard_upstream_errors_total", "provider")
    found = [
        ProviderHealth(
            name=p.name,
            enabled=p.enabled,
            cooling_seconds=round(cooling_for(p.pk), 1),
            failed_attempts=failed.get(p.name, 0),
            tally=tallies.pop(p.name, Tally()),
        )
        for p in Provider.objects.order_by("name")
    ]
    # Calls recorded for providers since removed from the catalog (or never routed: "").
    found += [
        ProviderHealth(name or "(none)", False, 0, failed.get(name, 0), tally, in_catalog=False)
        for name, tally in sorted(tallies.items())
    ]
    return found


def held_now() -> dict[str, int]:
    holds = Hold.objects.aggregate(count=Count("id"), total=Sum("amount_micro_usd"))
    accounts = Account.objects.aggregate(
        held=Sum("held_micro_usd"), holding=Count("id", filter=Q(held_micro_usd__gt=0))
    )
    return {
        "holds": holds["count"],
        "hold_total": holds["total"] or 0,
        "held": accounts["held"] or 0,
        "accounts": accounts["holding"],
    }


def chart_data(days: list[Day]) -> dict[str, Any]:
    return {
        "labels": [f"{d.day:%b} {d.day.day}" for d in days],
        "revenue": [
            {"label": "Paid by customers", "data": [(d.revenue - d.refunds) / MICRO for d in days]},
            {"label": "Charged for usage", "data": [d.charged / MICRO for d in days]},
            {"label": "Upstream cost", "data": [d.upstream_cost / MICRO for d in days]},
            {"label": "Margin", "data": [d.margin / MICRO for d in days]},
        ],
        "active": [{"label": "Active accounts", "data": [d.active_accounts for d in days]}],
    }


@require_GET
@staff_only
def ops(request: HttpRequest) -> TemplateResponse:
    """The operator's view of the business and of the gateway's health."""
    today = timezone.now().astimezone(UTC).date()
    first = today - timedelta(days=OPS_DAYS - 1)
    usage = list(usage_by_day_and_account(first, today))
    days = money_per_day(first, today, usage)
    context = {
        "days": days,
        "totals": {
            "revenue": sum(d.revenue - d.refunds for d in days),
            "charged": sum(d.charged for d in days),
            "upstream_cost": sum(d.upstream_cost for d in days),
            "margin": sum(d.margin for d in days),
        },
        "chart_data": chart_data(days),
        "top_models": top_models(first, today),
        "top_accounts": top_accounts(usage),
        "providers": provider_health(timezone.now()),
        "in_flight": metrics.samples("switchboard_http_requests_in_flight").get("", 0),
        "held": held_now(),
        "books": last_books_check(),
        "markup": settings.PRICE_MARKUP_PERCENT,
    }
    return TemplateResponse(request, "console/ops.html", context)


@require_POST
@staff_only
def check_books_now(request: HttpRequest) -> TemplateResponse:
    """Prove the books now (what `manage.py check --database default` runs) and show it."""
    check_books(databases=["default"])
    return TemplateResponse(request, "console/_books.html", {"books": last_books_check()})
