"""Email sign-up with the verification code from the outbox, in Chromium."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from accounts.models import User

from .conftest import PASSWORD
from .test_browser_passkey import last_code

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_e_mail_sign_up_with_the_code_from_the_outbox(page, live_server_url):
    page.goto(f"{live_server_url}/")
    page.get_by_role("link", name="Sign up").first.click()
    page.get_by_label("Email").fill("reader@example.com")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password (again)").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()

    expect(page).to_have_title("Enter email verification code · Switchboard")
    page.get_by_label("Code").fill(last_code())
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_url(f"{live_server_url}/")

    page.get_by_role("navigation", name="Main").locator("summary").click()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Account").click()
    expect(page.locator("#balance")).to_have_text("$1.00")
    assert User.objects.get(email="reader@example.com").emailaddress_set.get().verified


def test_a_wrong_code_is_refused_and_announced(page, live_server_url):
    page.goto(f"{live_server_url}/accounts/signup/")
    page.get_by_label("Email").fill("typo@example.com")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password (again)").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    page.get_by_label("Code").fill("AAAA-AAAA")
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("alert")).to_contain_text("Incorrect code")
    expect(page.get_by_label("Code")).to_be_focused()
