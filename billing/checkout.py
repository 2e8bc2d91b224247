"""Stripe Checkout: sessions are made on the server, credit comes only from the webhook.

The success URL never grants anything: a purchase is credited when Stripe's signed
`checkout.session.completed` (or `…async_payment_succeeded`) event arrives. Every
event is recorded by its id in the transaction that acts on it, so a replay or a
second delivery racing the first changes nothing; the ledger keys (`stripe:checkout:
<session>` for credit, `stripe:<event>` for refunds) make the same true again at the
level of money.

A package's bonus is granted with its purchase, in the same transaction, as its own
`bonus` entry (key `stripe:checkout:<session>:bonus`), so the books tell credit that was
paid for from credit that was given. A refund takes back the refunded share of both, as
one `refund` entry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.ledger import credit_account
from billing.models import (
    STRIPE_ID,
    Account,
    CreditPackage,
    LedgerEntry,
    Purchase,
    StripeEvent,
)
from billing.money import format_money, format_usd

CENT = 10_000  # micro-USD


def purchases_enabled() -> bool:
    """Card purchases need both the API key and the webhook secret."""
    return bool(settings.STRIPE_SECRET_KEY and settings.STRIPE_WEBHOOK_SECRET)


def start_checkout(
    *, account: Account, package: CreditPackage, success_url: str, cancel_url: str
) -> tuple[Purchase, str]:
    """Create a Checkout Session for `package`; returns the pending purchase and Stripe's URL.

    Raises stripe.StripeError when Stripe cannot be reached or refuses.
    """
    stripe.api_base = settings.STRIPE_API_BASE
    metadata = {"account_id": str(account.pk), "package_id": str(package.pk)}
    session = stripe.checkout.Session.create(
        api_key=settings.STRIPE_SECRET_KEY,
        mode="payment",
        line_items=[
            {
                "price_data": {
                    "currency": "usd",
                    "unit_amount": package.price_cents,
                    "product_data": {
                        "name": f"{settings.SITE_NAME} credit: {package.name}",
                        "description": f"{format_money(package.total_credit_micro_usd)} of credit",
                    },
                },
                "quantity": 1,
            }
        ],
        metadata=metadata,
        payment_intent_data={"metadata": metadata},
        client_reference_id=str(account.pk),
        customer_email=account.user.email,
        success_url=success_url,
        cancel_url=cancel_url,
    )
    if not session.url:
        raise stripe.APIError("Stripe returned a Checkout Session without a URL")
    purchase = Purchase.objects.offer(account=account, package=package, session_id=session.id)
    return purchase, session.url


def malformed(event: Any) -> str | None:
    """What makes a verified event impossible to act on, or None when it is well formed.

    Stripe signs what it sends, but a payload without the shape the handlers read is
    refused whole (a 400, nothing recorded), never half-acted on or a 500.
    """
    if not isinstance(event, dict):
        return "the event is not an object"
    if not _is_stripe_id(event.get("id")):
        return "the event has no id"
    if not isinstance(event.get("type"), str):
        return "the event has no type"
    data = event.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        return "the event has no data.object"
    check = SHAPES.get(event["type"])
    return None if check is None else check(data["object"])


def _is_stripe_id(value: Any, *, optional: bool = False) -> bool:
    if optional and value is None:
        return True
    return isinstance(value, str) and STRIPE_ID.fullmatch(value) is not None


def _session_problem(session: dict[str, Any]) -> str | None:
    if not _is_stripe_id(session.get("id")):
        return "the session has no id"
    if not isinstance(session.get("metadata") or {}, dict):
        return "the session's metadata is not an object"
    if not _is_stripe_id(session.get("payment_intent"), optional=True):
        return "the session's payment_intent is not an id"
    return None


def _charge_problem(charge: dict[str, Any]) -> str | None:
    for field in ("amount", "amount_refunded"):
        value = charge.get(field, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return f"the charge's {field} is not a whole number of cents"
    if not _is_stripe_id(charge.get("payment_intent"), optional=True):
        return "the charge's payment_intent is not an id"
    return None


def handle_event(event: dict[str, Any]) -> str:
    """Act on one verified Stripe event, at most once per event id; returns what happened."""
    handler = HANDLERS.get(event.get("type", ""))
    if handler is None:
        return "ignored"
    with transaction.atomic():
        try:
            with transaction.atomic():
                record = StripeEvent.objects.create(event_id=event["id"], type=event["type"])
        except IntegrityError:
            return "duplicate"
        outcome = handler(event["id"], event["data"]["object"])
        StripeEvent.objects.filter(pk=record.pk).update(outcome=outcome[:200])
    return outcome


def _purchase_for_session(session: dict[str, Any]) -> Purchase | None:
    """The purchase this session paid for; rebuilt from metadata if our row never got saved."""
    purchase = Purchase.objects.select_for_update().filter(stripe_session_id=session["id"]).first()
    if purchase is not None:
        return purchase
    metadata = session.get("metadata") or {}
    account_id, package_id = _int(metadata.get("account_id")), _int(metadata.get("package_id"))
    if account_id is None or package_id is None:
        return None
    account = Account.objects.filter(pk=account_id).first()
    package = CreditPackage.objects.filter(pk=package_id).first()
    if account is None or package is None:
        return None
    return Purchase.objects.offer(account=account, package=package, session_id=session["id"])


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _credit_session(event_id: str, session: dict[str, Any]) -> str:
    if session.get("payment_status") not in {"paid", "no_payment_required"}:
        return "awaiting payment"
    purchase = _purchase_for_session(session)
    if purchase is None:
        return "not a Switchboard purchase"
    name = purchase.package.name if purchase.package else "Credit"
    key = f"stripe:checkout:{purchase.stripe_session_id}"
    entry = credit_account(
        account=purchase.account,
        amount=purchase.credit_micro_usd - purchase.bonus_micro_usd,
        kind=LedgerEntry.Kind.PURCHASE,
        idempotency_key=key,
        memo=f"{name} package via Stripe ({format_usd(purchase.price_micro_usd)} paid)",
    )
    if purchase.bonus_micro_usd:
        # Its own entry, so the books tell bought credit from given credit; in this
        # transaction and under its own key, so it is granted with the purchase, once.
        credit_account(
            account=purchase.account,
            amount=purchase.bonus_micro_usd,
            kind=LedgerEntry.Kind.BONUS,
            idempotency_key=f"{key}:bonus",
            memo=f"Bonus with the {name} package",
        )
    if purchase.status == Purchase.Status.PENDING:
        purchase.status = Purchase.Status.PAID
        purchase.paid_at = timezone.now()
        purchase.payment_intent_id = session.get("payment_intent") or ""
        purchase.save(update_fields=["status", "paid_at", "payment_intent_id"])
    return "credited" if entry else "already credited"


def _refund_charge(event_id: str, charge: dict[str, Any]) -> str:
    """Take back the credit for the refunded share of a purchase (cumulative, so exact)."""
    purchase = (
        Purchase.objects.select_for_update()
        .filter(payment_intent_id=charge.get("payment_intent") or "-")
        .first()
    )
    if purchase is None or not charge.get("amount"):
        return "no matching purchase"
    share = min(charge.get("amount_refunded", 0), charge["amount"])
    target = purchase.credit_micro_usd * share // charge["amount"]
    debit = target - purchase.refunded_credit_micro_usd
    if debit <= 0:
        return "nothing more to refund"
    credit_account(
        account=purchase.account,
        amount=-debit,
        kind=LedgerEntry.Kind.REFUND,
        idempotency_key=f"stripe:{event_id}",
        memo=f"Stripe refund of {format_usd(share * CENT)}",
    )
    purchase.refunded_credit_micro_usd = target
    if share == charge["amount"]:
        purchase.status = Purchase.Status.REFUNDED
    purchase.save(update_fields=["refunded_credit_micro_usd", "status"])
    return f"debited {debit}"


HANDLERS: dict[str, Callable[[str, dict[str, Any]], str]] = {
    "checkout.session.completed": _credit_session,
    "checkout.session.async_payment_succeeded": _credit_session,
    "charge.refunded": _refund_charge,
}
# What each handler's object must look like (checked by `malformed` before it runs).
SHAPES: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "checkout.session.completed": _session_problem,
    "checkout.session.async_payment_succeeded": _session_problem,
    "charge.refunded": _charge_problem,
}
