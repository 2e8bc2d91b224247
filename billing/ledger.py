"""Money workflows across rows: credit, reserve, settle, sweep.

The balance column only ever changes in the same transaction as a ledger entry,
and every entry has a unique idempotency key, so a retried credit or settlement
lands once. Holds make the "never overspend" guarantee hold across processes: a
reservation is one conditional UPDATE that succeeds only while
`balance - held >= amount`.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import F, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from billing import rollups, sql
from billing.models import Account, Hold, LedgerEntry, UsageRecord


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


def account_for(user: Any, *, grant_now: bool = True) -> Account:
    """The user's account, opened when missing with its sign-up grant in the same
    transaction: if the grant cannot be paid, no account is left without it. With
    `grant_now=False` a new account owes the grant until its e-mail address is verified
    (`pay_pending_signup_grant`)."""
    with transaction.atomic():
        account, created = Account.objects.get_or_create(
            user=user, defaults={"signup_grant_pending": not grant_now}
        )
        if created and grant_now:
            pay_signup_grant(account)
    return account


def pay_signup_grant(account: Account) -> LedgerEntry | None:
    """The sign-up grant (SIGNUP_GRANT_MICRO_USD): at most once per user, ever, by its
    ledger key; None when there is none to pay or it was paid before."""
    if settings.SIGNUP_GRANT_MICRO_USD <= 0:
        return None
    return credit_account(
        account=account,
        amount=settings.SIGNUP_GRANT_MICRO_USD,
        kind=LedgerEntry.Kind.GRANT,
        idempotency_key=f"signup-grant:{account.user_id}",
        memo="Sign-up credit",
    )


def pay_pending_signup_grant(user: Any) -> LedgerEntry | None:
    """Pay the grant an account owes since it was opened, once: the flag is cleared in
    the transaction that pays, so two verifications racing pay it once."""
    with transaction.atomic():
        account = (
            Account.objects.select_for_update().filter(user=user, signup_grant_pending=True).first()
        )
        if account is None:
            return None
        Account.objects.filter(pk=account.pk).update(signup_grant_pending=False)
        return pay_signup_grant(account)


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
    leave: int = 0,
) -> Reservation:
    """Hold `amount` for a request, or raise InsufficientCredits / SpendCapExceeded. With
    `leave`, the hold is placed only when the account's available credit (and the key's
    spend cap) would still have that much to spare after it."""
    key_id = api_key.pk if api_key is not None else None
    now = timezone.now()
    hold = Hold(
        account_id=account_id,
        api_key_id=key_id,
        request_id=request_id,
        amount_micro_usd=amount,
        created_at=now,
        expires_at=now + timedelta(seconds=settings.HOLD_TTL_SECONDS),
    )
    db = transaction.get_connection()
    capped = api_key is not None and api_key.spend_cap_micro_usd is not None
    if db.vendor == "postgresql" and not capped:
        # One statement: the conditional UPDATE and the hold row, committed together.
        statement, fields = sql.reserve_statement(db.ops.quote_name)
        with db.cursor() as cursor:
            cursor.execute(
                statement, [amount, account_id, amount + leave, *sql.values(db, hold, fields)]
            )
            held = cursor.rowcount == 1
    else:
        with transaction.atomic(), db.cursor() as cursor:
            if capped:
                _check_spend_cap(api_key, amount + leave)
            # The hold row first, the account row last: every request of an account
            # updates that row, so its lock is held only from this UPDATE to the commit.
            sql.insert(db, cursor, hold)
            cursor.execute(sql.statements(db).reserve, [amount, account_id, amount + leave])
            held = cursor.rowcount == 1
            if not held:
                transaction.set_rollback(True)
    if not held:
        account = Account.objects.filter(pk=account_id).first()
        available = account.available_micro_usd if account else 0
        raise InsufficientCredits(needed=amount + leave, available=max(available, 0))
    return Reservation(
        account_id=account_id, api_key_id=key_id, request_id=request_id, amount=amount
    )


def _check_spend_cap(api_key: Any, amount: int) -> None:
    from accounts.models import ApiKey

    # Lock the key row so concurrent requests on one capped key see each other's holds.
    # NO KEY UPDATE, not UPDATE: a settlement's foreign-key check takes KEY SHARE on the
    # key at its commit while it holds the account row this transaction updates next, so
    # a FOR UPDATE here deadlocks with it.
    ApiKey.objects.select_for_update(no_key=True).filter(pk=api_key.pk).values_list("pk").first()
    # Spent and held in one statement, so from one snapshot: a request settling meanwhile
    # is counted once (held before its settlement commits, spent after), never zero times.
    since = api_key.period_start()
    spent = (
        UsageRecord.objects.filter(api_key_id=OuterRef("pk"), created_at__gte=since)
        .values("api_key_id")
        .annotate(total=Sum("cost_micro_usd"))
        .values("total")
    )
    holds = (
        Hold.objects.filter(api_key_id=OuterRef("pk"))
        .values("api_key_id")
        .annotate(total=Sum("amount_micro_usd"))
        .values("total")
    )
    used = (
        ApiKey.objects.filter(pk=api_key.pk)
        .annotate(used=Coalesce(Subquery(spent), 0) + Coalesce(Subquery(holds), 0))
        .values_list("used", flat=True)
        .get()
    )
    if used + amount > api_key.spend_cap_micro_usd:
        raise SpendCapExceeded(cap=api_key.spend_cap_micro_usd, spent=used, needed=amount)


SETTLEMENT_FLAGS = ("hold_missing", "capped")
"""The flags settle() decides itself; a caller's copy of them is dropped."""


def settle(*, reservation: Reservation, cost: int, usage: dict[str, Any]) -> UsageRecord:
    """Charge the real cost, release the hold and record usage, in one transaction.

    The charge is the cost capped at what was held (also when the hold is already gone)
    and at the balance read under the account's row lock, so no request overspends and
    no balance goes below zero. What the caps left unpaid is the record's
    `uncharged_micro_usd`; its `flags` are the caller's `usage["flags"]` plus
    `hold_missing` (the sweeper had released the hold) and `capped` (cost > charge).
    Settling the same request twice returns the first record and charges nothing more.
    """
    _check_cost(cost)
    fields, flags = _split_flags(usage)
    db = transaction.get_connection()
    if db.vendor == "postgresql":
        return _settle_in_one_statement(db, reservation, cost, fields, flags)
    statements = sql.statements(db)
    record = _usage_record(reservation, fields)
    try:
        with transaction.atomic(), db.cursor() as cursor:
            cursor.execute(statements.release, [reservation.request_id])
            released = cursor.fetchone()
            # The write lock is this transaction's from its BEGIN IMMEDIATE: nothing can
            # change the balance between this read and the UPDATE below.
            cursor.execute(statements.balance, [reservation.account_id])
            if (row := cursor.fetchone()) is None:
                raise Account.DoesNotExist(f"no account {reservation.account_id} to settle")
            (balance,) = row
            charge = min(cost, reservation.amount, max(balance, 0))
            record.cost_micro_usd = charge
            record.uncharged_micro_usd = cost - charge
            record.flags = _merged_flags(flags, released=released is not None, capped=cost > charge)
            sql.insert(db, cursor, record)
            rollups.add(db, cursor, record)
            if charge:
                sql.insert(db, cursor, _usage_entry(reservation, fields, charge))
            # Last, as in reserve_credits: the account row is the contended one. Unlimited
            # mode ends in the same statement when the balance falls below the floor.
            cursor.execute(
                statements.settle,
                [
                    charge,
                    released[0] if released else 0,
                    charge,
                    settings.UNLIMITED_MODE_FLOOR_MICRO_USD,
                    False,
                    reservation.account_id,
                ],
            )
    except IntegrityError:
        if (existing := _first_settlement(reservation.request_id)) is None:
            raise
        return existing
    return record


def _check_cost(cost: Any) -> None:
    if type(cost) is not int or cost < 0:
        raise ValueError(f"cost must be a whole, non-negative number of micro-USD, not {cost!r}")


def _split_flags(usage: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The usage fields without `flags`, and the caller's flags (once each, in order)."""
    fields = dict(usage)
    flags = [
        word
        for word in dict.fromkeys(str(fields.pop("flags", "") or "").split())
        if word not in SETTLEMENT_FLAGS
    ]
    longest = UsageRecord._meta.get_field("flags").max_length or 0
    if len(" ".join([*flags, *SETTLEMENT_FLAGS])) > longest:
        raise ValueError(f"usage flags {flags!r} leave no room for the settlement's own")
    return fields, flags


def _merged_flags(flags: list[str], *, released: bool, capped: bool) -> str:
    hold_missing, capped_word = SETTLEMENT_FLAGS
    return " ".join(
        [*flags, *([hold_missing] if not released else []), *([capped_word] if capped else [])]
    )


def _usage_record(reservation: Reservation, usage: dict[str, Any]) -> UsageRecord:
    """The request's usage record, its charge still to be decided."""
    return UsageRecord(
        request_id=reservation.request_id,
        account_id=reservation.account_id,
        api_key_id=reservation.api_key_id,
        reserved_micro_usd=reservation.amount,
        **usage,
    )


def _usage_entry(reservation: Reservation, usage: dict[str, Any], charge: int) -> LedgerEntry:
    return LedgerEntry(
        account_id=reservation.account_id,
        kind=LedgerEntry.Kind.USAGE,
        amount_micro_usd=-charge,
        idempotency_key=f"usage:{reservation.request_id}",
        memo=f"{usage.get('model', '')} {reservation.request_id}"[:300],
    )


def _first_settlement(request_id: str) -> UsageRecord | None:
    """The record of a request settled before (its unique request id refused a second)."""
    return UsageRecord.objects.filter(request_id=request_id).first()


def _settle_in_one_statement(
    db: BaseDatabaseWrapper,
    reservation: Reservation,
    cost: int,
    usage: dict[str, Any],
    flags: list[str],
) -> UsageRecord:
    """settle() on PostgreSQL: the same rows and checks, as one statement."""
    record = _usage_record(reservation, usage)
    entry = _usage_entry(reservation, usage, 0)
    statement, record_fields, entry_fields, rollup_keys = sql.settle_statement(
        db.ops.quote_name, SETTLEMENT_FLAGS
    )
    params = [
        reservation.request_id,
        reservation.account_id,
        cost,
        cost,
        reservation.amount,
        " ".join(flags),
        *sql.values(db, record, record_fields),
        *sql.values(db, entry, entry_fields),
        *rollups.settle_params(db, record, rollup_keys),
        settings.UNLIMITED_MODE_FLOOR_MICRO_USD,
        reservation.account_id,
    ]
    # Inside an outer transaction a failed statement needs its own savepoint, so the
    # lookup of the first settlement below can still run.
    savepoint = transaction.atomic() if db.in_atomic_block else contextlib.nullcontext()
    try:
        with savepoint, db.cursor() as cursor:
            cursor.execute(statement, params)
            row = cursor.fetchone()
    except IntegrityError:
        if (existing := _first_settlement(reservation.request_id)) is None:
            raise
        return existing
    if row is None:
        raise Account.DoesNotExist(f"no account {reservation.account_id} to settle")
    record.pk, record.cost_micro_usd, record.uncharged_micro_usd, record.flags = row
    sql.saved(record, db)
    return record


def keep_hold(
    *, request_id: str, cost: int | None = None, usage: dict[str, Any] | None = None
) -> bool:
    """Keep a running request's hold from expiring; False when the hold is gone.

    One UPDATE moves the expiry to HOLD_TTL_SECONDS from now and, when `cost` is given,
    records the progress the sweeper settles for should the worker die: `{"cost",
    "usage"}`, usage as settle() takes it. Callers run it every HOLD_REFRESH_SECONDS.
    """
    changes: dict[str, Any] = {
        "expires_at": timezone.now() + timedelta(seconds=settings.HOLD_TTL_SECONDS)
    }
    if cost is not None:
        _check_cost(cost)
        unknown = set(usage or {}) - _settle_usage_fields()
        if unknown:
            raise ValueError(f"keep_hold(): {sorted(unknown)} are not usage record fields")
        changes["progress"] = {"cost": cost, "usage": usage or {}}
    elif usage is not None:
        raise ValueError("keep_hold() needs the cost of the usage it records")
    return Hold.objects.filter(request_id=request_id).update(**changes) > 0


@functools.cache
def _settle_usage_fields() -> frozenset[str]:
    """The usage keys settle() takes: the record's fields it does not set itself."""
    own = {"id", "request_id", "account", "api_key"}
    own |= {"cost_micro_usd", "reserved_micro_usd", "uncharged_micro_usd"}
    return frozenset(f.name for f in UsageRecord._meta.concrete_fields) - own


INTERRUPTED = "worker stopped before the request finished"


@dataclass(frozen=True, slots=True)
class Sweep:
    """What one run of the sweeper did."""

    replayed: int
    """Journaled settlements written (billing.journal)."""
    settled: int
    """Expired holds settled for the progress their worker had recorded."""
    released: int
    """Expired holds without progress, released without a charge."""


def release_expired_holds(now: Any = None) -> Sweep:
    """End the holds of requests whose worker died.

    The settlement journal is replayed first, so a settlement that waited out a database
    outage there is written before its hold could be taken for an interrupted one. Then
    an expired hold with progress is settled for it (status error, flag `interrupted`);
    one without is released. A hold refreshed meanwhile is left alone.
    """
    from billing.journal import replay_journal  # the journal replays through settle()

    replayed = replay_journal()
    now = now or timezone.now()
    settled = released = 0
    for pk in list(Hold.objects.expired(now).values_list("pk", flat=True)):
        with transaction.atomic():
            hold = Hold.objects.select_for_update().filter(pk=pk, expires_at__lte=now).first()
            if hold is None:
                continue
            if hold.progress is None:
                Hold.objects.filter(pk=pk).delete()
                Account.objects.filter(pk=hold.account_id).update(
                    held_micro_usd=F("held_micro_usd") - hold.amount_micro_usd
                )
                released += 1
                continue
            settle(
                reservation=Reservation(
                    account_id=hold.account_id,
                    api_key_id=hold.api_key_id,
                    request_id=hold.request_id,
                    amount=hold.amount_micro_usd,
                ),
                cost=hold.progress["cost"],
                usage=_interrupted(hold.progress["usage"]),
            )
            settled += 1
    return Sweep(replayed=replayed, settled=settled, released=released)


def _interrupted(usage: dict[str, Any]) -> dict[str, Any]:
    flags = f"{usage.get('flags') or ''} interrupted"
    return {**usage, "status": UsageRecord.Status.ERROR, "error": INTERRUPTED, "flags": flags}
