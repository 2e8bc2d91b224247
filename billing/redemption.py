"""Redeeming an operator's code: once per account, never more than the code's uses.

Both limits hold under concurrency because the database enforces them: a unique
(code, account) row stops a second redemption by the same account, and a conditional
UPDATE (`uses < max_uses`, not expired) claims one use, so racing redeemers of the
last use serialise on the code's row and only one of them succeeds.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from billing.ledger import credit_account
from billing.models import (
    Account,
    LedgerEntry,
    Redemption,
    RedemptionCode,
    normalize_code,
)


class RedemptionError(Exception):
    """The code cannot be redeemed; the message is written for the customer."""


def redeem_code(*, account: Account, code: str) -> LedgerEntry:
    """Credit the account with the code's amount, or raise RedemptionError saying why not."""
    found = RedemptionCode.objects.filter(code=normalize_code(code)).first()
    if found is None:
        raise RedemptionError("That code does not exist. Check it and try again.")
    try:
        with transaction.atomic():
            Redemption.objects.create(code=found, account=account)
            claimed = (
                RedemptionCode.objects.redeemable().filter(pk=found.pk).update(uses=F("uses") + 1)
            )
            if not claimed:
                raise RedemptionError(_why_not_redeemable(found))
            entry = credit_account(
                account=account,
                amount=found.amount_micro_usd,
                kind=LedgerEntry.Kind.REDEMPTION,
                idempotency_key=f"redeem:{found.pk}:{account.pk}",
                memo=f"Code {found.code}",
            )
            if entry is None:
                raise RedemptionError("You have already redeemed this code.")
    except IntegrityError as exc:
        raise RedemptionError("You have already redeemed this code.") from exc
    return entry


def _why_not_redeemable(code: RedemptionCode) -> str:
    code.refresh_from_db()
    if code.expires_at is not None and code.expires_at <= timezone.now():
        return "This code has expired."
    if not code.active:
        return "This code is no longer valid."
    return "This code has been fully redeemed."
