"""Signing in to /admin/: only through the console's sign-in (allauth: its rate limits and
second factor), and with ADMIN_REQUIRE_2FA only after a second factor in this session."""

from __future__ import annotations

import time
from typing import Any

import pytest
from allauth.mfa.totp.internal.auth import TOTP, format_hotp_value, generate_totp_secret, hotp_value

from .conftest import PASSWORD, make_user

STAFF = "staff@example.com"


@pytest.fixture
def staff(db) -> Any:
    user = make_user(STAFF)
    user.is_staff = user.is_superuser = True
    user.save(update_fields=["is_staff", "is_superuser"])
    return user


@pytest.fixture
def totp_secret(staff: Any, settings: Any) -> str:
    settings.MFA_TOTP_TOLERANCE = 1  # the 30-second window may turn during the test
    secret = generate_totp_secret()
    TOTP.activate(staff, secret)
    return secret


def current_code(secret: str) -> str:
    return format_hotp_value(hotp_value(secret, int(time.time()) // 30))


def sign_in(client: Any, password: str = PASSWORD, next_url: str = "/admin/") -> Any:
    return client.post(f"/accounts/login/?next={next_url}", {"login": STAFF, "password": password})


def test_the_admin_login_page_sends_you_to_the_console_sign_in(client, db):
    response = client.get("/admin/login/?next=/admin/billing/")

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/admin/billing/"


def test_guessing_at_the_admin_login_never_signs_in(client, staff):
    for _ in range(30):
        client.post("/admin/login/", {"username": STAFF, "password": "wrong"})

    response = client.post("/admin/login/?next=/admin/", {"username": STAFF, "password": PASSWORD})

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert client.get("/admin/").status_code == 302


def test_wrong_admin_passwords_are_rate_limited_like_the_console(client, staff):
    answers = [sign_in(client, password="wrong") for _ in range(6)]

    right = sign_in(client)

    assert "Too many failed login attempts" in answers[-1].content.decode()
    assert right.status_code != 302
    assert client.get("/admin/").status_code == 302


def test_staff_signed_in_through_the_console_reach_the_admin(client, staff):
    response = sign_in(client)

    assert response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/login/").status_code == 302


def test_a_customer_signed_in_is_refused_the_admin(client, owner):
    client.force_login(owner)

    assert client.get("/admin/login/?next=/admin/").status_code == 403
    assert client.get("/admin/").status_code == 302


def test_staff_with_totp_cannot_reach_the_admin_with_the_password_alone(client, staff, totp_secret):
    client.post("/admin/login/", {"username": STAFF, "password": PASSWORD})
    response = sign_in(client)

    assert response["Location"] == "/accounts/2fa/authenticate/"
    assert client.get("/admin/").status_code == 302

    done = client.post("/accounts/2fa/authenticate/", {"code": current_code(totp_secret)})

    assert done["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_without_the_setting_staff_without_a_second_factor_use_the_admin(client, staff):
    sign_in(client)

    assert client.get("/admin/").status_code == 200


def test_required_2fa_sends_staff_without_one_to_set_it_up(client, staff, settings):
    settings.ADMIN_REQUIRE_2FA = True
    sign_in(client)

    first = client.get("/admin/", follow=True)

    assert first.redirect_chain[-1][0] == "/accounts/2fa/"
    assert "to use the admin" in first.content.decode()
    assert client.get("/admin/billing/").status_code == 302


def test_required_2fa_asks_for_the_code_when_this_session_did_not_use_it(
    client, staff, totp_secret, settings
):
    """A session signed in before the authenticator was set up has not passed it."""
    settings.ADMIN_REQUIRE_2FA = True
    client.force_login(staff)

    asked = client.get("/admin/", follow=True)

    url = asked.redirect_chain[-1][0]
    assert url == "/accounts/2fa/reauthenticate/?next=%2Fadmin%2F"
    assert client.get("/admin/").status_code == 302
    response = client.post(url, {"code": current_code(totp_secret)})
    assert response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_required_2fa_lets_staff_who_passed_it_at_sign_in_through(
    client, staff, totp_secret, settings
):
    settings.ADMIN_REQUIRE_2FA = True
    sign_in(client)
    client.post("/accounts/2fa/authenticate/", {"code": current_code(totp_secret)})

    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/billing/account/").status_code == 200


def test_the_admin_login_never_redirects_off_site(client, staff):
    sign_in(client)

    response = client.get("/admin/login/?next=https://evil.example/")

    assert response["Location"] == "/admin/"
