"""The signed-in home in Chromium: the checklist ticks itself from real data, and the
header's menu folds behind an accessible button at phone width."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from allauth.account.models import EmailAddress
from playwright.sync_api import expect

from accounts.models import User

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-123-secret-dashboard"


@pytest.fixture
def member(db) -> User:
    user = User.objects.create_user("member@example.com", PASSWORD)
    EmailAddress.objects.create(user=user, email=user.email, primary=True, verified=True)
    return user


def sign_in(page: Any, base: str, user: User) -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page).to_have_title("Dashboard · Switchboard")


def test_the_checklist_ticks_off_a_key_then_a_first_call_then_goes_away(
    browser: Any, live_server_url: str, demo_catalog: None, member: User, settings: Any
) -> None:
    settings.DEMO_TOKEN_DELAY_MS = 0
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    sign_in(page, live_server_url, member)
    checklist = page.get_by_test_id("checklist")
    expect(checklist).to_contain_text("0 of 2 done")
    expect(page.get_by_test_id("header-balance")).to_contain_text("$1.00")

    checklist.get_by_role("link", name="Create a key").click()
    page.get_by_label("Name").fill("first")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_label("Secret key").input_value()
    page.goto(f"{live_server_url}/")
    expect(checklist).to_contain_text("1 of 2 done")
    expect(checklist.locator("li[data-done=true]")).to_contain_text("Create an API key")
    expect(checklist.get_by_role("link", name="Open the quickstart")).to_be_visible()

    client = openai.OpenAI(base_url=f"{live_server_url}/v1", api_key=secret, max_retries=0)
    client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "Hi"}])
    page.reload()

    expect(page.get_by_test_id("checklist")).to_have_count(0)
    expect(page.get_by_test_id("week-requests")).to_have_text("1")
    recent = page.get_by_role("table", name="Recent requests")
    expect(recent.locator("tbody tr")).to_have_count(1)
    recent.get_by_role("link").first.click()
    page.wait_for_url("**/billing/usage/req_*/")
    context.close()


def test_the_phone_menu_opens_and_closes_from_the_keyboard(
    browser: Any, live_server_url: str, member: User
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 800})
    page = context.new_page()
    sign_in(page, live_server_url, member)
    button = page.get_by_role("button", name="Menu")
    keys = page.get_by_role("navigation", name="Main").get_by_role("link", name="Keys")
    expect(button).to_have_attribute("aria-expanded", "false")
    expect(keys).to_be_hidden()

    button.focus()
    page.keyboard.press("Enter")

    expect(button).to_have_attribute("aria-expanded", "true")
    expect(keys).to_be_visible()
    expect(page.get_by_test_id("header-balance")).to_be_visible()
    page.keyboard.press("Tab")
    page.keyboard.press("Escape")
    expect(button).to_have_attribute("aria-expanded", "false")
    expect(keys).to_be_hidden()
    assert page.evaluate("document.activeElement.getAttribute('aria-controls')") == "site-menu"

    button.click()
    page.get_by_role("navigation", name="Main").locator("summary").click()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_contain_text("You have signed out.")
    assert not page.get_by_test_id("header-balance").count()
    context.close()


def test_at_desktop_width_there_is_no_menu_button(browser: Any, live_server_url: str) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(f"{live_server_url}/")

    expect(page.get_by_role("button", name="Menu")).to_be_hidden()
    expect(
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Pricing")
    ).to_be_visible()
    context.close()
