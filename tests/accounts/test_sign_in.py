"""Password reset and login by email code, sign-out, and email change, through allauth."""

from __future__ import annotations

import re

from django.core import mail

from accounts.models import SignIn


def code_in_last_mail() -> str:
    match = re.search(r"^\s*([A-Z0-9]{4}-[A-Z0-9]{4})\s*$", mail.outbox[-1].body, re.MULTILINE)
    assert match, mail.outbox[-1].body
    return match.group(1)


def test_a_password_reset_by_code_sets_a_new_password(client, owner):
    response = client.post("/accounts/password/reset/", {"email": "owner@example.com"})
    assert response["Location"] == "/accounts/password/reset/confirm/"
    response = client.post("/accounts/password/reset/confirm/", {"code": code_in_last_mail()})
    assert response["Location"] == "/accounts/password/reset/complete/"
    new_password = "a-brand-new-passphrase-42"
    response = client.post(
        "/accounts/password/reset/complete/",
        {"password1": new_password, "password2": new_password},
    )
    assert response.status_code == 302
    owner.refresh_from_db()
    assert owner.check_password(new_password)


def test_a_login_code_signs_in_and_is_recorded(client, owner):
    response = client.post("/accounts/login/code/", {"email": "owner@example.com"})
    assert response["Location"] == "/accounts/login/code/confirm/"
    response = client.post("/accounts/login/code/confirm/", {"code": code_in_last_mail()})
    assert response.status_code == 302
    assert client.get("/account/").status_code == 200
    assert SignIn.objects.get(user=owner).method == "Email code"


def test_sign_out_ends_the_session(owner_client):
    response = owner_client.post("/accounts/logout/")
    assert response.status_code == 302
    assert owner_client.get("/account/").status_code == 302


def test_an_e_mail_change_is_confirmed_by_code(owner_client, owner):
    response = owner_client.post("/accounts/email/", {"action_add": "", "email": "new@example.com"})
    assert response.status_code == 302
    owner_client.post("/accounts/confirm-email/", {"code": code_in_last_mail()})
    owner.refresh_from_db()
    assert owner.email == "new@example.com"


def test_wrong_passwords_are_rate_limited(client, owner):
    responses = [
        client.post("/accounts/login/", {"login": "owner@example.com", "password": "wrong"})
        for _ in range(6)
    ]
    assert "Too many failed login attempts" not in responses[0].content.decode()
    assert "Too many failed login attempts" in responses[-1].content.decode()
