"""The account API for programs: /v1/auth/signup, /v1/auth/login, /v1/account and
/v1/billing/*, through the live server (the lean /v1 handler) as a program calls them."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from django.core import mail
from django.test import Client

from accounts.models import ApiKey, SignIn, User
from billing.ledger import credit_account
from billing.models import Account, LedgerEntry, Purchase
from tests.billing.conftest import default_packages, fake_stripe, starter
from tests.gateway.test_chat_completions_sdk import assert_books_balance

__all__ = ["default_packages", "fake_stripe", "starter"]

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "correct-horse-battery-staple"
GRANT = 1_000_000


def call(
    url: str, method: str, path: str, body: Any = None, secret: str | None = None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    return httpx.request(method, url + path, json=body, headers=headers, timeout=10)


def sign_up(url: str, email: str = "new@example.com", **changes: Any) -> httpx.Response:
    body = {"email": email, "password": PASSWORD, "birth_year": 1990, **changes}
    return call(url, "POST", "/v1/auth/signup", body)


def log_in(url: str, email: str = "new@example.com", password: str = PASSWORD) -> httpx.Response:
    return call(url, "POST", "/v1/auth/login", {"email": email, "password": password})


def confirmation_link() -> str:
    message = mail.outbox[-1]
    match = re.search(r"https?://\S+/accounts/confirm-email/(\S+)/", message.body)
    assert match, message.body
    return f"/accounts/confirm-email/{match.group(1)}/"


def grants(email: str) -> list[int]:
    return list(
        LedgerEntry.objects.filter(account__user__email=email, kind="grant").values_list(
            "amount_micro_usd", flat=True
        )
    )


@pytest.fixture(autouse=True)
def _site_url(live_server_url: str, settings: Any) -> None:
    settings.SITE_URL = live_server_url


# --- sign-up -----------------------------------------------------------------------


def test_a_sign_up_returns_a_working_key_and_pays_the_grant_only_once_verified(live_server_url):
    response = sign_up(live_server_url)

    assert response.status_code == 201
    body = response.json()
    secret = body["key"]["secret"]
    assert secret.startswith("sk-sb-")
    assert body["signup_bonus"] == {
        "micro_usd": GRANT,
        "usd": "1.000000",
        "status": "pending_email_verification",
    }
    assert body["balance"]["micro_usd"] == 0
    assert body["user"]["email_verified"] is False
    assert grants("new@example.com") == []
    account = call(live_server_url, "GET", "/v1/account", secret=secret)
    assert account.status_code == 200
    assert account.json()["email"] == "new@example.com"
    assert account.json()["balance"]["micro_usd"] == 0

    link = confirmation_link()
    browser = Client()
    assert browser.get(link).status_code == 200
    assert browser.post(link).status_code == 302

    assert grants("new@example.com") == [GRANT]
    balance = call(live_server_url, "GET", "/v1/billing/balance", secret=secret).json()
    assert balance["micro_usd"] == GRANT
    assert EmailAddress.objects.get(email="new@example.com").verified
    # The link again, a sign-up again and a sign-in pay nothing more.
    browser.post(link)
    assert sign_up(live_server_url).status_code == 409
    assert log_in(live_server_url).status_code == 200
    assert grants("new@example.com") == [GRANT]
    user = User.objects.get(email="new@example.com")
    assert_books_balance(user.account)


def test_without_e_mail_verification_the_grant_is_paid_at_once(live_server_url, settings):
    settings.ACCOUNT_EMAIL_VERIFICATION = "none"

    response = sign_up(live_server_url)

    assert response.json()["signup_bonus"]["status"] == "paid"
    assert response.json()["balance"]["micro_usd"] == GRANT
    assert grants("new@example.com") == [GRANT]


def test_the_browser_sign_up_still_pays_its_grant_at_once(db):
    user = User.objects.create_user("browser@example.com", PASSWORD)

    assert grants(user.email) == [GRANT]
    assert user.account.signup_grant_pending is False


def test_a_taken_e_mail_address_is_a_409_and_its_owner_is_told(live_server_url):
    assert sign_up(live_server_url).status_code == 201
    mail.outbox.clear()

    response = sign_up(live_server_url, email="NEW@example.com")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "email_unavailable"
    assert "exists" not in response.json()["error"]["message"]
    [notice] = mail.outbox
    assert notice.to == ["new@example.com"]
    assert User.objects.filter(email="new@example.com").count() == 1


def test_a_weak_password_is_refused_by_djangos_validators(live_server_url):
    response = sign_up(live_server_url, password="12345678")

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["param"], error["code"]) == ("password", "weak_password")
    assert "too common" in error["message"]
    assert not User.objects.exists()


@pytest.mark.parametrize(
    ("minimum", "year_offset", "allowed"),
    [(13, 14, True), (13, 13, False), (18, 18, False), (18, 19, True)],
)
def test_the_minimum_age_is_an_operator_setting(
    live_server_url, settings, minimum, year_offset, allowed
):
    from django.utils import timezone

    settings.SIGNUP_MINIMUM_AGE = minimum

    response = sign_up(live_server_url, birth_year=timezone.now().year - year_offset)

    if allowed:
        assert response.status_code == 201
    else:
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "below_minimum_age"
        assert str(minimum) in response.json()["error"]["message"]
        assert not User.objects.exists()


def test_sign_ups_are_throttled_per_client_address(live_server_url, settings):
    settings.SIGNUPS_PER_MINUTE = 2
    assert sign_up(live_server_url, email="a@example.com").status_code == 201
    assert sign_up(live_server_url, email="b@example.com", password="x").status_code == 400

    response = sign_up(live_server_url, email="c@example.com")

    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(response.headers["Retry-After"]) >= 1
    assert not User.objects.filter(email="c@example.com").exists()


# (name, body, the field the 400 names)
BAD_SIGNUPS: list[tuple[str, dict[str, Any], str]] = [
    ("nothing", {}, "email"),
    ("no-password", {"email": "a@example.com"}, "password"),
    ("no-birth-year", {"email": "a@example.com", "password": PASSWORD}, "birth_year"),
    ("email-number", {"email": 5, "password": PASSWORD, "birth_year": 1990}, "email"),
    (
        "email-not-an-address",
        {"email": "not an address", "password": PASSWORD, "birth_year": 1990},
        "email",
    ),
    (
        "email-too-long",
        {"email": "a@" + "x" * 300 + ".com", "password": PASSWORD, "birth_year": 1990},
        "email",
    ),
    (
        "password-number",
        {"email": "a@example.com", "password": 123, "birth_year": 1990},
        "password",
    ),
    ("password-empty", {"email": "a@example.com", "password": "", "birth_year": 1990}, "password"),
    (
        "password-too-long",
        {"email": "a@example.com", "password": "x" * 5000, "birth_year": 1990},
        "password",
    ),
    (
        "birth-year-string",
        {"email": "a@example.com", "password": PASSWORD, "birth_year": "1990"},
        "birth_year",
    ),
    (
        "birth-year-fraction",
        {"email": "a@example.com", "password": PASSWORD, "birth_year": 1990.5},
        "birth_year",
    ),
    (
        "birth-year-bool",
        {"email": "a@example.com", "password": PASSWORD, "birth_year": True},
        "birth_year",
    ),
    (
        "birth-year-too-old",
        {"email": "a@example.com", "password": PASSWORD, "birth_year": 1800},
        "birth_year",
    ),
    (
        "birth-year-future",
        {"email": "a@example.com", "password": PASSWORD, "birth_year": 3000},
        "birth_year",
    ),
    (
        "unknown-field",
        {"email": "a@example.com", "password": PASSWORD, "birth_year": 1990, "name": "x"},
        "name",
    ),
]


@pytest.mark.parametrize(
    ("name", "body", "param"), BAD_SIGNUPS, ids=[row[0] for row in BAD_SIGNUPS]
)
def test_a_bad_sign_up_names_the_field(live_server_url, name, body, param):
    response = call(live_server_url, "POST", "/v1/auth/signup", body)

    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert not User.objects.exists()


NOT_JSON_OBJECTS = [
    ("empty", b""),
    ("cut-short", b"{"),
    ("array", b"[]"),
    ("string", b'"x"'),
    ("not-utf8", b"\xff"),
]


@pytest.mark.parametrize(
    ("name", "raw"), NOT_JSON_OBJECTS, ids=[row[0] for row in NOT_JSON_OBJECTS]
)
def test_a_sign_up_that_is_not_a_json_object_is_a_400(live_server_url, name, raw):
    response = httpx.post(live_server_url + "/v1/auth/signup", content=raw, timeout=10)

    assert response.status_code == 400
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


# --- sign-in -----------------------------------------------------------------------


@pytest.fixture
def verified(db) -> User:
    user = User.objects.create_user("member@example.com", PASSWORD)
    EmailAddress.objects.create(user=user, email=user.email, primary=True, verified=True)
    return user


def test_a_sign_in_returns_a_new_key_and_the_balance(live_server_url, verified):
    response = log_in(live_server_url, "member@example.com")

    assert response.status_code == 200
    body = response.json()
    assert body["balance"]["micro_usd"] == GRANT
    assert body["balance"]["tier"] == "free"
    key = ApiKey.objects.get(pk=body["key"]["id"])
    assert (key.kind, key.can_manage, key.user_id) == (ApiKey.Kind.LOGIN, True, verified.pk)
    assert (
        call(live_server_url, "GET", "/v1/account", secret=body["key"]["secret"]).status_code == 200
    )
    assert SignIn.objects.get(user=verified).method == "API password"


def test_repeated_sign_ins_keep_only_the_newest_keys(live_server_url, verified, settings):
    settings.API_LOGIN_KEYS_KEPT = 2
    secrets = [
        log_in(live_server_url, "member@example.com").json()["key"]["secret"] for _ in range(4)
    ]

    active = ApiKey.objects.for_user(verified).filter(kind=ApiKey.Kind.LOGIN).active()
    assert active.count() == 2
    assert ApiKey.objects.for_user(verified).count() == 4
    assert call(live_server_url, "GET", "/v1/account", secret=secrets[0]).status_code == 401
    assert call(live_server_url, "GET", "/v1/account", secret=secrets[-1]).status_code == 200


def test_sign_in_keys_are_listed_and_revoked_on_the_keys_page(live_server_url, verified):
    body = log_in(live_server_url, "member@example.com").json()
    page = Client()
    page.force_login(verified)

    assert "API sign-in" in page.get("/account/keys/").content.decode()
    assert page.post(f"/account/keys/{body['key']['id']}/revoke/").status_code in {200, 302, 303}

    assert ApiKey.objects.get(pk=body["key"]["id"]).is_revoked
    assert (
        call(live_server_url, "GET", "/v1/account", secret=body["key"]["secret"]).status_code == 401
    )


def test_a_wrong_password_is_a_401(live_server_url, verified):
    response = log_in(live_server_url, "member@example.com", "wrong-password")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_credentials"
    assert not ApiKey.objects.filter(user=verified).exists()


def test_an_unknown_address_is_the_same_401(live_server_url, verified):
    response = log_in(live_server_url, "nobody@example.com")

    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Incorrect e-mail address or password."


def test_failed_sign_ins_are_throttled_like_the_web_login(live_server_url, verified):
    for _ in range(5):
        assert log_in(live_server_url, "member@example.com", "wrong").status_code == 401

    response = log_in(live_server_url, "member@example.com")

    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert not ApiKey.objects.filter(user=verified).exists()
    # The same counter as the console's sign-in page (allauth's login_failed limit).
    page = Client().post("/accounts/login/", {"login": "member@example.com", "password": PASSWORD})
    assert "Too many failed login attempts" in page.content.decode()


def test_an_unverified_address_cannot_sign_in_and_is_sent_a_new_link(live_server_url):
    assert sign_up(live_server_url).status_code == 201
    mail.outbox.clear()

    response = log_in(live_server_url)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "email_not_verified"
    assert len(mail.outbox) == 1
    assert "/accounts/confirm-email/" in mail.outbox[0].body


def test_an_account_with_a_second_factor_cannot_sign_in_with_a_password(live_server_url, verified):
    Authenticator.objects.create(user=verified, type=Authenticator.Type.TOTP, data={"secret": "x"})

    response = log_in(live_server_url, "member@example.com")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "second_factor_required"
    assert not ApiKey.objects.filter(user=verified).exists()


BAD_LOGINS = [
    ("nothing", {}),
    ("no-password", {"email": "a@example.com"}),
    ("email-number", {"email": 1, "password": "x"}),
    ("unknown-field", {"email": "a@example.com", "password": "x", "otp": 1}),
]


@pytest.mark.parametrize(("name", "body"), BAD_LOGINS, ids=[row[0] for row in BAD_LOGINS])
def test_a_bad_sign_in_is_a_400(live_server_url, name, body):
    response = call(live_server_url, "POST", "/v1/auth/login", body)

    assert response.status_code == 400


# --- the account and billing ---------------------------------------------------------


def test_the_account_and_balance_need_a_key(live_server_url):
    for path in ["/v1/account", "/v1/billing/balance"]:
        response = call(live_server_url, "GET", path)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"


def test_the_balance_says_its_tier_and_unlimited_mode(live_server_url, customer):
    balance = call(live_server_url, "GET", "/v1/billing/balance", secret=customer.secret).json()

    assert balance == {
        "object": "balance",
        "micro_usd": 10_000_000,
        "available_micro_usd": 10_000_000,
        "held_micro_usd": 0,
        "usd": "10.000000",
        "display": "$10.00",
        "tier": "free",
        "unlimited": {"enabled": False, "floor_micro_usd": 1_000_000, "can_enable": True},
    }


def test_unlimited_mode_turns_on_above_its_floor_and_off_below_it(live_server_url, make_customer):
    owner = make_customer(credit_micro_usd=1_500_000, can_manage=True)

    on = call(live_server_url, "POST", "/v1/billing/unlimited", {"enabled": True}, owner.secret)

    assert on.status_code == 200
    assert on.json()["unlimited"]["enabled"] is True
    credit_account(account=owner.account, amount=-1_000_000, kind="adjustment", idempotency_key="t")
    balance = call(live_server_url, "GET", "/v1/billing/balance", secret=owner.secret).json()
    assert balance["unlimited"]["enabled"] is False
    again = call(live_server_url, "POST", "/v1/billing/unlimited", {"enabled": True}, owner.secret)
    assert again.status_code == 402
    assert again.json()["error"]["code"] == "unlimited_needs_balance"
    off = call(live_server_url, "POST", "/v1/billing/unlimited", {"enabled": False}, owner.secret)
    assert off.json()["unlimited"]["enabled"] is False
    assert Account.objects.get(pk=owner.account.pk).unlimited is False


BAD_UNLIMITED = [
    ("nothing", {}),
    ("enabled-string", {"enabled": "yes"}),
    ("enabled-number", {"enabled": 1}),
    ("unknown-field", {"enabled": True, "x": 1}),
]


@pytest.mark.parametrize(("name", "body"), BAD_UNLIMITED, ids=[row[0] for row in BAD_UNLIMITED])
def test_a_bad_unlimited_request_is_a_400(live_server_url, make_customer, name, body):
    owner = make_customer(can_manage=True)

    response = call(live_server_url, "POST", "/v1/billing/unlimited", body, owner.secret)

    assert response.status_code == 400


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/billing/unlimited", {"enabled": True}),
        ("/v1/billing/checkout", {"package_id": "starter"}),
    ],
)
def test_changing_billing_needs_a_managing_key(live_server_url, customer, path, body):
    response = call(live_server_url, "POST", path, body, customer.secret)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "insufficient_scope"


def test_checkout_returns_a_stripe_checkout_url(
    live_server_url, make_customer, fake_stripe, starter
):
    owner = make_customer(can_manage=True)

    response = call(
        live_server_url, "POST", "/v1/billing/checkout", {"package_id": "starter"}, owner.secret
    )

    assert response.status_code == 201
    session = next(iter(fake_stripe.sessions.values()))
    assert response.json()["url"] == session["url"]
    purchase = Purchase.objects.get(stripe_session_id=session["id"])
    assert (purchase.account_id, purchase.status) == (owner.account.pk, Purchase.Status.PENDING)
    assert response.json()["package"]["credit_micro_usd"] == starter.total_credit_micro_usd
    form = fake_stripe.requests[0]["form"]
    assert (
        form["success_url"]
        == f"{live_server_url}/billing/checkout/success/?session_id={{CHECKOUT_SESSION_ID}}"
    )
    by_id = call(
        live_server_url, "POST", "/v1/billing/checkout", {"package_id": starter.pk}, owner.secret
    )
    assert by_id.status_code == 201
    owner.account.refresh_from_db()
    assert owner.account.balance_micro_usd == 10_000_000


BAD_PACKAGES = [
    ("unknown-slug", "nope", 404, "package_not_found"),
    ("unknown-id", 999_999, 404, "package_not_found"),
    ("null", None, 400, None),
    ("array", [1], 400, None),
    ("bool", True, 400, None),
    ("empty", "", 400, None),
]


@pytest.mark.parametrize(
    ("name", "package_id", "status", "code"), BAD_PACKAGES, ids=[row[0] for row in BAD_PACKAGES]
)
def test_a_bad_package_is_refused(
    live_server_url, make_customer, fake_stripe, starter, name, package_id, status, code
):
    owner = make_customer(can_manage=True)

    response = call(
        live_server_url, "POST", "/v1/billing/checkout", {"package_id": package_id}, owner.secret
    )

    assert response.status_code == status
    assert response.json()["error"]["code"] == code or code is None
    assert fake_stripe.sessions == {}


def test_checkout_while_purchases_are_off_is_a_403(
    live_server_url, make_customer, starter, settings
):
    settings.STRIPE_SECRET_KEY = ""
    owner = make_customer(can_manage=True)

    response = call(
        live_server_url, "POST", "/v1/billing/checkout", {"package_id": "starter"}, owner.secret
    )

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "purchases_disabled"


def test_stripe_down_is_a_502(live_server_url, make_customer, fake_stripe, starter):
    fake_stripe.fail_with = 500
    owner = make_customer(can_manage=True)

    response = call(
        live_server_url, "POST", "/v1/billing/checkout", {"package_id": "starter"}, owner.secret
    )

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "payment_provider_unavailable"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/auth/signup"),
        ("GET", "/v1/auth/login"),
        ("POST", "/v1/account"),
        ("POST", "/v1/billing/balance"),
        ("GET", "/v1/billing/unlimited"),
        ("GET", "/v1/billing/checkout"),
    ],
)
def test_a_wrong_method_is_a_json_405(live_server_url, method, path):
    response = call(live_server_url, method, path)

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
