"""E-mail alerts: a balance below the user's threshold, a key at its spend cap, a key
about to expire. `manage.py sendalerts` runs them (every few minutes, from cron), so
the settlement of a call never waits on mail.

Each alert is sent once per crossing: the row is claimed with a conditional UPDATE
before the mail goes (so two runs at once send one), and re-armed only when the
condition ends (the balance is back at the threshold, a new cap period begins, the
key's expiry is moved). A mail that cannot be sent un-claims its row for the next run.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db.models import F, Model, Q
from django.urls import reverse
from django.utils import timezone

from accounts.models import ApiKey
from billing.models import Account
from billing.money import format_usd

log = logging.getLogger(__name__)

LONGEST_EXPIRY_NOTICE_DAYS = 365


@dataclass(frozen=True, slots=True)
class AlertRun:
    balance: int
    spend_cap: int
    expiry: int


def send_alerts(now: datetime | None = None) -> AlertRun:
    """Send every alert that is due; returns how many of each went out."""
    now = now or timezone.now()
    return AlertRun(
        balance=send_balance_alerts(),
        spend_cap=send_spend_cap_alerts(now),
        expiry=send_expiry_alerts(now),
    )


def _link(name: str) -> str:
    return settings.SITE_URL.rstrip("/") + reverse(name)


def _reset(model: type[Model], pk: int, **fields: Any) -> None:
    model._default_manager.filter(pk=pk).update(**fields)


def _mail(to: str, subject: str, body: str, *, undo: Callable[[], Any]) -> bool:
    try:
        send_mail(f"[{settings.SITE_NAME}] {subject}", body, None, [to])
    except Exception:
        log.warning(
            "could not send the alert %r to a user; retried next run", subject, exc_info=True
        )
        undo()
        return False
    return True


def send_balance_alerts() -> int:
    """Accounts whose balance fell below their threshold since the last alert."""
    Account.objects.filter(balance_alert_sent=True).filter(
        Q(alert_balance_below_micro_usd__isnull=True)
        | Q(balance_micro_usd__gte=F("alert_balance_below_micro_usd"))
    ).update(balance_alert_sent=False)
    due = Account.objects.filter(
        balance_alert_sent=False,
        alert_balance_below_micro_usd__isnull=False,
        balance_micro_usd__lt=F("alert_balance_below_micro_usd"),
    ).select_related("user")
    sent = 0
    for account in due:
        claimed = Account.objects.filter(pk=account.pk, balance_alert_sent=False)
        if not claimed.update(balance_alert_sent=True):
            continue
        threshold = account.alert_balance_below_micro_usd or 0
        sent += _mail(
            account.user.email,
            f"Your balance is below {format_usd(threshold)}",
            f"Your balance is {format_usd(account.balance_micro_usd)}, below the "
            f"{format_usd(threshold)} you asked to be told about. Requests are refused "
            f"once it cannot cover them.\n\nAdd credit: {_link('billing:index')}\n"
            f"Alert settings: {_link('billing:usage_settings')}\n",
            undo=functools.partial(_reset, Account, account.pk, balance_alert_sent=False),
        )
    return sent


def send_spend_cap_alerts(now: datetime) -> int:
    """Keys that reached their spend cap in their current period (once per period)."""
    capped = (
        ApiKey.objects.active()
        .exclude(kind=ApiKey.Kind.WEB)
        .filter(spend_cap_micro_usd__isnull=False, user__account__alert_spend_cap=True)
        .with_period_spend(now)
        .select_related("user")
    )
    sent = 0
    for key in capped:
        spent: int = key.period_spend_micro_usd  # type: ignore[attr-defined]
        period = key.period_start(now)
        if spent < (key.spend_cap_micro_usd or 0) or key.cap_alerted_for == period:
            continue
        if not ApiKey.objects.filter(pk=key.pk, cap_alerted_for=key.cap_alerted_for).update(
            cap_alerted_for=period
        ):
            continue
        sent += _mail(
            key.user.email,
            f"Key “{key.name}” reached its spend cap",
            f"Your key “{key.name}” ({key.masked}) has spent "
            f"{format_usd(spent)} of its "
            f"{format_usd(key.spend_cap_micro_usd or 0)} cap "
            f"{key.get_spend_cap_period_display()}. Its requests are refused (402 "
            f"spend_cap_exceeded) until the period ends or the cap is raised.\n\n"
            f"Keys: {_link('accounts:keys')}\n",
            undo=functools.partial(_reset, ApiKey, key.pk, cap_alerted_for=key.cap_alerted_for),
        )
    return sent


def send_expiry_alerts(now: datetime) -> int:
    """Keys that expire within their owner's notice (once per expiry date)."""
    soon = (
        ApiKey.objects.active()
        .exclude(kind=ApiKey.Kind.WEB)
        .filter(
            expires_at__isnull=False,
            expires_at__lte=now + timedelta(days=LONGEST_EXPIRY_NOTICE_DAYS),
            user__account__alert_key_expiry_days__gt=0,
        )
        .exclude(expiry_alerted_for=F("expires_at"))
        .select_related("user__account")
    )
    sent = 0
    for key in soon:
        assert key.expires_at is not None
        if key.expires_at > now + timedelta(days=key.user.account.alert_key_expiry_days):
            continue
        was = key.expiry_alerted_for
        if not ApiKey.objects.filter(pk=key.pk, expiry_alerted_for=was).update(
            expiry_alerted_for=key.expires_at
        ):
            continue
        when = timezone.localtime(key.expires_at).strftime("%Y-%m-%d %H:%M %Z")
        sent += _mail(
            key.user.email,
            f"Key “{key.name}” expires on {when}",
            f"Your key “{key.name}” ({key.masked}) stops working on {when}. Create a new "
            f"key and switch your programs to it before then.\n\nKeys: "
            f"{_link('accounts:keys')}\n",
            undo=functools.partial(_reset, ApiKey, key.pk, expiry_alerted_for=was),
        )
    return sent
