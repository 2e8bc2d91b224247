"""The account API for programs and partner platforms, under /v1: sign up, sign in, the
account and its billing.

Sign-up and sign-in are allauth's, driven without a browser: the password validators,
the confirmation e-mail (allauth's link, `/accounts/confirm-email/<key>/`), the
"account already exists" e-mail and the sign-in rate limits (`ACCOUNT_RATE_LIMITS`,
shared with the web login). A key minted here is an "API sign-in" key (its owner sees
and revokes it on the Keys page); the newest API_LOGIN_KEYS_KEPT stay active. The
sign-up grant waits for the verified e-mail address (billing.signals).

Answers and errors are the OpenAI shapes of the rest of /v1 (`gateway.views.api_view`).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

import stripe
from allauth.account.adapter import get_adapter
from allauth.account.models import EmailAddress, EmailConfirmationHMAC
from allauth.account.utils import setup_user_email
from allauth.core import context, ratelimit
from allauth.mfa.utils import is_mfa_enabled
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone

from accounts.models import ApiKey, SignIn, User
from billing.checkout import purchases_enabled, start_checkout
from billing.ledger import account_for
from billing.models import Account, CreditPackage, LedgerEntry
from billing.money import format_usd, micro_to_usd
from billing.signals import GRANT_AFTER_VERIFICATION
from gateway.auth import KeyInfo
from gateway.doors import read_json
from gateway.errors import GatewayError, invalid
from gateway.ratelimit import address_throttled, address_wait, client_address
from gateway.sync import db_sync_to_async
from gateway.views import api_view, json_response

MAX_PASSWORD_CHARS = 4096
OLDEST_BIRTH_YEAR = 1900
# allauth's limits are windows it does not report; a client waits at most this long.
LOGIN_RETRY_SECONDS = 60
FAILED_LOGIN_RETRY_SECONDS = 300


def _only(body: dict[str, Any], names: tuple[str, ...]) -> None:
    """400 for the first unknown field, then for the first missing one."""
    unknown = sorted(set(body) - set(names))
    if unknown:
        raise invalid(f"{unknown[0]}: unknown field; send {', '.join(names)}.", unknown[0])
    for name in names:
        if body.get(name) is None:
            raise invalid(f"'{name}' is required.", name)


def _email(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 254:
        raise invalid("'email' must be an e-mail address.", "email")
    email = value.strip().lower()
    try:
        validate_email(email)
    except ValidationError:
        raise invalid("'email' must be an e-mail address.", "email") from None
    return email


def _password(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_PASSWORD_CHARS:
        raise invalid(
            f"'password' must be a string of 1 to {MAX_PASSWORD_CHARS} characters.", "password"
        )
    return value


def _birth_year(value: Any) -> int:
    this_year = timezone.now().year
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid("'birth_year' must be a year, as a number (e.g. 1990).", "birth_year")
    if not OLDEST_BIRTH_YEAR <= value <= this_year:
        raise invalid(
            f"'birth_year' must be from {OLDEST_BIRTH_YEAR} to {this_year}.", "birth_year"
        )
    return value


def _old_enough(birth_year: int) -> bool:
    """The year alone cannot say whether this year's birthday has passed: count the
    younger of the two possible ages."""
    return timezone.now().year - birth_year - 1 >= settings.SIGNUP_MINIMUM_AGE


def _grant_waits_for_email() -> bool:
    return str(settings.ACCOUNT_EMAIL_VERIFICATION).lower() != "none"


def balance_as_dict(account: Account) -> dict[str, Any]:
    """An account's money in integer micro-USD (and exact USD strings), its tier and
    unlimited mode."""
    purchased = LedgerEntry.objects.filter(account=account, kind=LedgerEntry.Kind.PURCHASE).exists()
    return {
        "object": "balance",
        "micro_usd": account.balance_micro_usd,
        "available_micro_usd": account.available_micro_usd,
        "held_micro_usd": account.held_micro_usd,
        "usd": f"{micro_to_usd(account.balance_micro_usd):.6f}",
        "display": format_usd(account.balance_micro_usd),
        "tier": "paid" if purchased else "free",
        "unlimited": {
            "enabled": account.unlimited,
            "floor_micro_usd": settings.UNLIMITED_MODE_FLOOR_MICRO_USD,
            "can_enable": account.can_enable_unlimited,
        },
    }


def _user_as_dict(user: User) -> dict[str, Any]:
    return {
        "id": user.pk,
        "email": user.email,
        "name": user.name,
        "date_joined": user.date_joined.isoformat(),
        "email_verified": EmailAddress.objects.filter(user=user, verified=True).exists(),
    }


def _key_as_dict(key: ApiKey, secret: str) -> dict[str, Any]:
    return {"id": key.pk, "name": key.name, "masked": key.masked, "secret": secret}


def _send_confirmation(request: HttpRequest, user: User) -> None:
    """allauth's confirmation e-mail with its signed link (no session to hold a code)."""
    address = EmailAddress.objects.get_primary(user)
    assert address is not None
    confirmation = EmailConfirmationHMAC.create(address)
    url = settings.SITE_URL.rstrip("/") + reverse("account_confirm_email", args=[confirmation.key])
    get_adapter(request).send_mail(
        "account/email/email_confirmation_signup",
        address.email,
        {"user": user, "activate_url": url, "key": confirmation.key},
    )


def _email_unavailable() -> GatewayError:
    return GatewayError(
        409,
        "This e-mail address cannot be used to sign up. If it is yours, sign in "
        "(POST /v1/auth/login) or reset the password on the website.",
        code="email_unavailable",
        param="email",
    )


def _sign_up(request: HttpRequest, email: str, password: str) -> dict[str, Any]:
    try:
        validate_password(password, user=User(email=email))
    except ValidationError as exc:
        raise invalid(" ".join(exc.messages), "password", "weak_password") from None
    adapter = get_adapter(request)
    taken = User.objects.filter(email__iexact=email).exists()
    if taken or EmailAddress.objects.filter(email__iexact=email).exists():
        # What the browser sign-up does (enumeration prevention): tell the address's owner.
        adapter.send_account_already_exists_mail(email)
        raise _email_unavailable()
    waits = _grant_waits_for_email()
    try:
        with transaction.atomic():
            user = User(email=email)
            setattr(user, GRANT_AFTER_VERIFICATION, waits)
            user.set_password(password)
            user.save()
            setup_user_email(request, user, [])
            key, secret = ApiKey.objects.mint_for_login(
                user=user, keep=settings.API_LOGIN_KEYS_KEPT
            )
    except IntegrityError:
        raise _email_unavailable() from None
    if waits:
        _send_confirmation(request, user)
    account = Account.objects.get(user=user)
    return {
        "object": "signup",
        "user": _user_as_dict(user),
        "key": _key_as_dict(key, secret),
        "signup_bonus": {
            "micro_usd": settings.SIGNUP_GRANT_MICRO_USD,
            "usd": f"{micro_to_usd(settings.SIGNUP_GRANT_MICRO_USD):.6f}",
            "status": "pending_email_verification" if waits else "paid",
        },
        "balance": balance_as_dict(account),
    }


def _throttled(message: str, wait: int) -> GatewayError:
    return address_throttled(message, wait)


def _log_in(request: HttpRequest, email: str, password: str) -> dict[str, Any]:
    if not ratelimit.consume(request, action="login"):
        raise _throttled("Too many sign-ins from your address.", LOGIN_RETRY_SECONDS)
    adapter = get_adapter(request)
    try:
        user = adapter.authenticate(request, email=email, password=password)
    except ValidationError:
        # allauth's failed-login limit (per address, and per e-mail address).
        raise _throttled("Too many failed sign-ins.", FAILED_LOGIN_RETRY_SECONDS) from None
    if user is None or not user.is_active:
        raise GatewayError(401, "Incorrect e-mail address or password.", code="invalid_credentials")
    if is_mfa_enabled(user):
        raise GatewayError(
            403,
            "This account signs in with a second factor, which the API cannot ask for: "
            "create a key on the Keys page instead.",
            code="second_factor_required",
        )
    verified = EmailAddress.objects.filter(user=user, verified=True).exists()
    if not verified and str(settings.ACCOUNT_EMAIL_VERIFICATION).lower() == "mandatory":
        if ratelimit.consume(request, action="confirm_email", key=user.email):
            _send_confirmation(request, user)
        raise GatewayError(
            403,
            "Confirm your e-mail address first: follow the link in the e-mail we sent.",
            code="email_not_verified",
        )
    key, secret = ApiKey.objects.mint_for_login(user=user, keep=settings.API_LOGIN_KEYS_KEPT)
    SignIn.objects.record(
        user=user,
        method="API password",
        ip_address=adapter.get_client_ip(request),
        user_agent=request.headers.get("User-Agent", ""),
    )
    return {
        "object": "login",
        "user": _user_as_dict(user),
        "key": _key_as_dict(key, secret),
        "balance": balance_as_dict(account_for(user)),
    }


def _in_allauth_context(work: Any) -> Any:
    """Run `work(request, …)` as under allauth's middleware, which /v1 does not have: the
    request is allauth's current one, with an anonymous user and a session that is never
    saved (allauth keeps its own notes there; a program has no cookie to keep them in)."""

    def run(request: HttpRequest, *args: Any) -> Any:
        request.session = import_module(settings.SESSION_ENGINE).SessionStore()
        request.user = AnonymousUser()
        with context.request_context(request):
            return work(request, *args)

    return db_sync_to_async(run)


_sign_up_async = _in_allauth_context(_sign_up)
_log_in_async = _in_allauth_context(_log_in)


@api_view(("POST",), key_required=False)
async def signup(request: HttpRequest) -> HttpResponse:
    """POST /v1/auth/signup: an account and an API key; the grant once the e-mail is verified."""
    per_minute = settings.SIGNUPS_PER_MINUTE
    if per_minute:
        address = client_address(request)
        wait = await address_wait(
            scope="signup", address=address, per_minute=per_minute, count=True
        )
        if wait:
            raise _throttled(f"Too many sign-ups from your address ({per_minute} a minute).", wait)
    body = read_json(request)
    _only(body, ("email", "password", "birth_year"))
    email, password = _email(body["email"]), _password(body["password"])
    if not _old_enough(_birth_year(body["birth_year"])):
        raise GatewayError(
            403,
            f"You must be at least {settings.SIGNUP_MINIMUM_AGE} years old to sign up.",
            code="below_minimum_age",
            param="birth_year",
        )
    return json_response(await _sign_up_async(request, email, password), status=201)


@api_view(("POST",), key_required=False)
async def login(request: HttpRequest) -> HttpResponse:
    """POST /v1/auth/login: a new API sign-in key and the balance."""
    body = read_json(request)
    _only(body, ("email", "password"))
    email, password = _email(body["email"]), _password(body["password"])
    return json_response(await _log_in_async(request, email, password))


def _owner(key: KeyInfo) -> User:
    return User.objects.get(pk=key.user_id)


def _account(key: KeyInfo) -> dict[str, Any]:
    user = _owner(key)
    return {
        "object": "account",
        **_user_as_dict(user),
        "balance": balance_as_dict(account_for(user)),
    }


def _balance(key: KeyInfo) -> dict[str, Any]:
    return balance_as_dict(account_for(_owner(key)))


def _set_unlimited(key: KeyInfo, enabled: bool) -> dict[str, Any]:
    account = account_for(_owner(key))
    if not account.set_unlimited(enabled) and enabled:
        raise GatewayError(
            402,
            "Unlimited mode needs a balance of at least "
            f"{format_usd(settings.UNLIMITED_MODE_FLOOR_MICRO_USD)}; "
            f"this account has {format_usd(account.balance_micro_usd)}.",
            code="unlimited_needs_balance",
        )
    return balance_as_dict(account)


def _package(package_id: Any) -> CreditPackage:
    packages = CreditPackage.objects.active()
    if isinstance(package_id, int) and not isinstance(package_id, bool):
        package = packages.filter(pk=package_id).first()
    elif isinstance(package_id, str) and 0 < len(package_id) <= 40:
        package = packages.filter(slug=package_id).first()
    else:
        raise invalid("'package_id' must be a package's id or slug.", "package_id")
    if package is None:
        on_sale = ", ".join(packages.values_list("slug", flat=True)) or "none"
        raise GatewayError(
            404,
            f"No package {package_id!r} is on sale. On sale: {on_sale}.",
            code="package_not_found",
            param="package_id",
        )
    return package


def _checkout(key: KeyInfo, package_id: Any) -> dict[str, Any]:
    package = _package(package_id)
    if not purchases_enabled():
        raise GatewayError(
            403, "Card purchases are turned off on this server.", code="purchases_disabled"
        )
    site = settings.SITE_URL.rstrip("/")
    try:
        purchase, url = start_checkout(
            account=account_for(_owner(key)),
            package=package,
            success_url=f"{site}{reverse('billing:checkout_success')}"
            "?session_id={CHECKOUT_SESSION_ID}",
            cancel_url=f"{site}{reverse('billing:index')}?checkout=cancelled",
        )
    except stripe.StripeError:
        raise GatewayError(
            502,
            "The payment provider could not be reached. Please try again.",
            code="payment_provider_unavailable",
        ) from None
    return {
        "object": "checkout_session",
        "url": url,
        "purchase_id": purchase.pk,
        "package": {
            "id": package.pk,
            "slug": package.slug,
            "name": package.name,
            "price_micro_usd": package.price_micro_usd,
            "credit_micro_usd": package.total_credit_micro_usd,
        },
    }


_account_async = db_sync_to_async(_account)
_balance_async = db_sync_to_async(_balance)
_set_unlimited_async = db_sync_to_async(_set_unlimited)
_checkout_async = db_sync_to_async(_checkout)


def _managing_key(request: HttpRequest) -> KeyInfo:
    key: KeyInfo = request.api_key  # type: ignore[attr-defined]
    if not key.can_manage:
        raise GatewayError(
            403,
            "This key may not manage the account: use a key with the management scope "
            "(the keys /v1/auth/signup and /v1/auth/login return have it).",
            code="insufficient_scope",
        )
    return key


@api_view(("GET",))
async def account(request: HttpRequest) -> HttpResponse:
    """GET /v1/account: the key owner's profile and balance."""
    return json_response(await _account_async(request.api_key))  # type: ignore[attr-defined]


@api_view(("GET",))
async def balance(request: HttpRequest) -> HttpResponse:
    """GET /v1/billing/balance: balance, tier and unlimited mode."""
    return json_response(await _balance_async(request.api_key))  # type: ignore[attr-defined]


@api_view(("POST",))
async def unlimited(request: HttpRequest) -> HttpResponse:
    """POST /v1/billing/unlimited {enabled}: switch unlimited mode (on only above its floor)."""
    key = _managing_key(request)
    body = read_json(request)
    _only(body, ("enabled",))
    if not isinstance(body["enabled"], bool):
        raise invalid("'enabled' must be true or false.", "enabled")
    return json_response(await _set_unlimited_async(key, body["enabled"]))


@api_view(("POST",))
async def checkout(request: HttpRequest) -> HttpResponse:
    """POST /v1/billing/checkout {package_id}: a Stripe Checkout URL for a credit package."""
    key = _managing_key(request)
    body = read_json(request)
    _only(body, ("package_id",))
    return json_response(await _checkout_async(key, body["package_id"]), status=201)
