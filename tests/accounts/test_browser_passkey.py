"""Passkey sign-up (confirmed by an email code) and passkey login, in Chromium."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from playwright.sync_api import expect

from accounts.models import SignIn, User
from billing.models import LedgerEntry

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AUTHENTICATOR = {
    "protocol": "ctap2",
    "transport": "internal",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
    "automaticPresenceSimulation": True,
}


def last_code() -> str:
    match = re.search(r"^\s*([A-Z0-9]{4}-[A-Z0-9]{4})\s*$", mail.outbox[-1].body, re.MULTILINE)
    assert match, mail.outbox[-1].body
    return match.group(1)


def test_a_passkey_sign_up_then_a_passkey_login(context, page, localhost_url):
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR})

    page.goto(f"{localhost_url}/accounts/signup/")
    page.get_by_role("link", name="Sign up using a passkey").click()
    page.get_by_label("Email").fill("passkey@example.com")
    page.get_by_role("button", name="Sign up").click()

    page.get_by_label("Code").fill(last_code())
    page.get_by_role("button", name="Confirm").click()

    page.get_by_label("Name").fill("Test laptop")
    page.get_by_role("button", name="Create").click()
    page.wait_for_url(f"{localhost_url}/")
    assert page.get_by_role("navigation", name="Main").locator("summary").is_visible()

    user = User.objects.get(email="passkey@example.com")
    assert LedgerEntry.objects.filter(account__user=user, kind="grant").count() == 1

    context.clear_cookies()
    page.goto(f"{localhost_url}/accounts/login/")
    page.get_by_role("button", name="Sign in with a passkey").click()
    page.wait_for_url(f"{localhost_url}/")
    page.get_by_role("navigation", name="Main").locator("summary").click()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Account").click()
    expect(page.locator(".passkeys strong")).to_have_text("Test laptop")
    assert page.title() == "Account · Switchboard"
    assert SignIn.objects.filter(user=user, method="Passkey").count() == 1
    assert LedgerEntry.objects.filter(account__user=user, kind="grant").count() == 1
