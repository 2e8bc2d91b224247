"""Email sign-up with a code, the sign-up grant, and the sign-in history."""

from __future__ import annotations

import re

from django.core import mail

from accounts.adapter import describe_sign_in
from accounts.models import SIGN_INS_KEPT, SignIn, User
from billing.models import LedgerEntry

from .conftest import PASSWORD


def code_from_outbox() -> str:
    message = mail.outbox[-1]
    assert message.subject.startswith("[Switchboard] ")
    assert "Hello from Switchboard!" in message.body
    match = re.search(r"^\s*([A-Z0-9]{4}-[A-Z0-9]{4})\s*$", message.body, re.MULTILINE)
    assert match, message.body
    return match.group(1)


def test_an_e_mail_sign_up_is_confirmed_by_the_code_and_granted_once(client, db):
    response = client.post(
        "/accounts/signup/",
        {"email": "new@example.com", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 302
    assert response["Location"] == "/accounts/confirm-email/"
    response = client.post("/accounts/confirm-email/", {"code": code_from_outbox()})
    assert response.status_code == 302
    user = User.objects.get(email="new@example.com")
    assert client.get("/account/").status_code == 200
    grants = LedgerEntry.objects.filter(account__user=user, kind="grant")
    assert [g.amount_micro_usd for g in grants] == [1_000_000]
    assert user.account.balance_micro_usd == 1_000_000


def test_the_sign_up_grant_follows_the_setting(client, db, settings):
    settings.SIGNUP_GRANT_MICRO_USD = 2_500_000
    user = User.objects.create_user("rich@example.com", PASSWORD)
    assert user.account.balance_micro_usd == 2_500_000


def test_a_password_sign_in_is_recorded_in_the_history(client, owner):
    response = client.post(
        "/accounts/login/",
        {"login": "owner@example.com", "password": PASSWORD},
        headers={"User-Agent": "TestBrowser/1.0"},
    )
    assert response.status_code == 302
    sign_in = SignIn.objects.get(user=owner)
    assert sign_in.method == "Password"
    assert sign_in.ip_address == "127.0.0.1"
    assert sign_in.user_agent == "TestBrowser/1.0"


def test_a_failed_sign_in_is_not_recorded(client, owner):
    client.post("/accounts/login/", {"login": "owner@example.com", "password": "wrong"})
    assert not SignIn.objects.exists()


def test_sign_in_methods_read_naturally():
    assert describe_sign_in([]) == "Sign-up"
    assert describe_sign_in([{"method": "code"}]) == "Email code"
    assert describe_sign_in([{"method": "socialaccount", "provider": "github"}]) == "GitHub"
    assert (
        describe_sign_in([{"method": "mfa", "type": "webauthn", "passwordless": True}]) == "Passkey"
    )
    assert (
        describe_sign_in([{"method": "password"}, {"method": "mfa", "type": "totp"}])
        == "Password + authenticator app"
    )


def test_the_history_keeps_only_the_newest_sign_ins(owner, outsider):
    SignIn.objects.record(user=outsider, method="Password", ip_address=None, user_agent="")
    for n in range(SIGN_INS_KEPT + 3):
        SignIn.objects.record(user=owner, method=f"try {n}", ip_address=None, user_agent="")
    kept = SignIn.objects.for_user(owner)
    assert kept.count() == SIGN_INS_KEPT
    assert kept.first().method == f"try {SIGN_INS_KEPT + 2}"
    assert SignIn.objects.for_user(outsider).count() == 1
