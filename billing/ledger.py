"""Money workflows across rows: credit, reserve, settle, sweep.

The balance column only ever changes in the same transaction as a ledger entry,
and every entry has a unique idempotency key, so a retried credit or settlement
lands once. Holds make the "never overspend" guarantee hold across processes: a
reservation is one conditional UPDATE that succeeds only while
`balance - held >= amount`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import timezone

from billing.models import Account, Hold, LedgerEntry, UsageRecord, available_expression


class InsufficientCredits(Exception):
    """The account cannot cover the worst-case cost of the request."""

    def __init__(self, *, needed: int, available: int) -> None:
        super().__init__(f"needs {needed} micro-USD, {available} available")
        self.needed = needed
        self.available = available


class SpendCapExceeded(Exception):
    """The key's spend cap for its period would be exceeded."""

    def __init__(self, *, cap: int, spent: int, needed: int) -> None:
        super().__init__(f"cap {cap}, spent {spent}, needs {needed}")
        self.cap = cap
        self.spent = spent
        self.needed = needed


@dataclass(frozen=True, slots=True)
class Reservation:
    account_id: int
    api_key_id: int | None
    request_id: str
    amount: int


def account_for(user: Any) -> Account:
    """The user's account, created (with its sign-up grant, once) when missing."""
    account, created = Account.objects.get_or_create(user=user)
    if created and settings.SIGNUP_GRANT_MICRO_USD > 0:
        credit_account(
            account=account,
            amount=settings.SIGNUP_GRANT_MICRO_USD,
            kind=LedgerEntry.Kind.GRANT,
            idempotency_key=f"signup-grant:{user.pk}",
            memo="Sign-up credit",
        )
    return account


def credit_account(
    *,
    account: Account,
    amount: int,
    kind: str,
    idempotency_key: str,
    memo: str = "",
) -> LedgerEntry | None:
    """Add (or, with a negative amount, remove) credit; None when the key was used before.

    A negative amount that takes the balance below zero is applied and flagged: money
    that left through a refund is real, and the books must say so.
    """
    try:
        with transaction.atomic():
            entry = LedgerEntry.objects.create(
                account=account,
                kind=kind,
                amount_micro_usd=amount,
                idempotency_key=idempotency_key,
                memo=memo[:300],
            )
            Account.objects.filter(pk=account.pk).update(
                balance_micro_usd=F("balance_micro_usd") + amount
            )
            if amount < 0:
                Account.objects.disable_unlimited_below_floor(account.pk)
                account.refresh_from_db(fields=["balance_micro_usd", "held_micro_usd"])
                if account.balance_micro_usd < 0:
                    LedgerEntry.objects.filter(pk=entry.pk).update(flagged=True)
                    entry.flagged = True
    except IntegrityError:
        if LedgerEntry.objects.filter(idempotency_key=idempotency_key).exists():
            return None
        raise
    account.refresh_from_db(fields=["balance_micro_usd", "held_micro_usd"])
    return entry


def reserve_credits(
    *,
    account_id: int,
    amount: int,
    request_id: str,
    api_key: Any = None,
) -> Reservation:
    """Hold `amount` for a request, or raise InsufficientCredits / SpendCapExceeded."""
    key_id = api_key.pk if api_key is not None else None
    with transaction.atomic():
        if api_key is not None and api_key.spend_cap_micro_usd is not None:
            _check_spend_cap(api_key, amount)
        updated = (
            Account.objects.filter(pk=account_id)
            .annotate(available=available_expression())
            .filter(available__gte=amount)
            .update(held_micro_usd=F("held_micro_usd") + amount)
        )
        if not updated:
            account = Account.objects.filter(pk=account_id).first()
            available = account.available_micro_usd if account else 0
            raise InsufficientCredits(needed=amount, available=max(available, 0))
        Hold.objects.create(
            account_id=account_id,
            api_key_id=key_id,
            request_id=request_id,
            amount_micro_usd=amount,
            expires_at=timezone.now() + timedelta(seconds=settings.HOLD_TTL_SECONDS),
        )
    return Reservation(
        account_id=account_id, api_key_id=key_id, request_id=request_id, amount=amount
    )


def _check_spend_cap(api_key: Any, amount: int) -> None:
    from accounts.models import ApiKey

    # Lock the key row so concurrent requests on one capped key see each other's holds.
    ApiKey.objects.select_for_update().filter(pk=api_key.pk).values_list("pk").first()
    since = api_key.period_start()
    spent = UsageRecord.objects.spent_since(api_key_id=api_key.pk, since=since)
    held = Hold.objects.filter(api_key_id=api_key.pk).aggregate(t=Sum("amount_micro_usd"))["t"] or 0
    if spent + held + amount > api_key.spend_cap_micro_usd:
        raise SpendCapExceeded(cap=api_key.spend_cap_micro_usd, spent=spent + held, needed=amount)


def settle(*, reservation: Reservation, cost: int, usage: dict[str, Any]) -> UsageRecord:
    """Charge the real cost, release the hold and record usage, in one transaction.

    The charge never exceeds what was reserved, so no request can overspend. Settling
    the same request twice returns the first record and charges nothing more.
    """
    request_id = reservation.request_id
    try:
        with transaction.atomic():
            released = Hold.objects.filter(request_id=request_id).delete()[0]
            charge = min(cost, reservation.amount) if released else cost
            record = UsageRecord.objects.create(
                request_id=request_id,
                account_id=reservation.account_id,
                api_key_id=reservation.api_key_id,
                cost_micro_usd=charge,
                reserved_micro_usd=reservation.amount,
                **usage,
            )
            if charge:
                LedgerEntry.objects.create(
                    account_id=reservation.account_id,
                    kind=LedgerEntry.Kind.USAGE,
                    amount_micro_usd=-charge,
                    idempotency_key=f"usage:{request_id}",
                    memo=f"{usage.get('model', '')} {request_id}"[:300],
                )
            changes: dict[str, Any] = {"balance_micro_usd": F("balance_micro_usd") - charge}
            if released:
                changes["held_micro_usd"] = F("held_micro_usd") - reservation.amount
            Account.objects.filter(pk=reservation.account_id).update(**changes)
            Account.objects.disable_unlimited_below_floor(reservation.account_id)
    except IntegrityError:
        existing = UsageRecord.objects.filter(request_id=request_id).first()
        if existing is None:
            raise
        return existing
    return record


def release_expired_holds(now: Any = None) -> int:
    """Give back credit held by requests whose worker died; returns holds released."""
    released = 0
    for hold in Hold.objects.expired(now).only("pk", "account_id", "amount_micro_usd"):
        with transaction.atomic():
            if Hold.objects.filter(pk=hold.pk).delete()[0]:
                Account.objects.filter(pk=hold.account_id).update(
                    held_micro_usd=F("held_micro_usd") - hold.amount_micro_usd
                )
                released += 1
    return released
