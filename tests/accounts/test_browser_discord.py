"""Discord sign-in beside GitHub, through a fake Discord on 127.0.0.1, in Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from allauth.socialaccount.providers.discord.views import DiscordOAuth2Adapter
from playwright.sync_api import expect

from accounts.models import SignIn, User
from billing.models import LedgerEntry

from .fake_discord import CLIENT_ID, CLIENT_SECRET, FakeDiscord
from .fake_github import CLIENT_ID as GITHUB_CLIENT_ID
from .fake_github import CLIENT_SECRET as GITHUB_CLIENT_SECRET

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/work/shots/branding")


@pytest.fixture
def discord(settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDiscord]:
    fake = FakeDiscord().start()
    settings.SOCIALACCOUNT_PROVIDERS = {
        "github": {
            "APPS": [{"client_id": GITHUB_CLIENT_ID, "secret": GITHUB_CLIENT_SECRET, "key": ""}]
        },
        "discord": {"APPS": [{"client_id": CLIENT_ID, "secret": CLIENT_SECRET, "key": ""}]},
    }
    # allauth's discord adapter names discord.com in class attributes: point them here.
    monkeypatch.setattr(DiscordOAuth2Adapter, "authorize_url", f"{fake.url}/api/oauth2/authorize")
    monkeypatch.setattr(DiscordOAuth2Adapter, "access_token_url", f"{fake.url}/api/oauth2/token")
    monkeypatch.setattr(DiscordOAuth2Adapter, "profile_url", f"{fake.url}/api/users/@me")
    yield fake
    fake.stop()


def sign_in_with_discord(page, base_url: str) -> None:
    page.goto(f"{base_url}/accounts/login/")
    expect(page.get_by_role("link", name="Continue with GitHub")).to_be_visible()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / "login-github-and-discord.png", full_page=True)
    page.get_by_role("link", name="Continue with Discord").click()
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"{base_url}/")


def test_discord_sign_in_creates_the_account_with_one_grant(
    context, page, live_server_url, discord
):
    sign_in_with_discord(page, live_server_url)
    user = User.objects.get(email="nelly@example.com")
    assert LedgerEntry.objects.filter(account__user=user, kind="grant").count() == 1
    assert discord.scopes and set(discord.scopes[0].split()) == {"email", "identify"}

    page.goto(f"{live_server_url}/account/")
    expect(page.locator("#balance")).to_have_text("$1.00")
    expect(page.locator("#sign-in-discord")).to_contain_text("Connected as Nelly")
    expect(page.get_by_role("button", name="Connect GitHub")).to_be_visible()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#social-title").locator("xpath=..").screenshot(path=SHOTS / "profile-social.png")

    context.clear_cookies()
    sign_in_with_discord(page, live_server_url)
    assert User.objects.filter(email="nelly@example.com").count() == 1
    assert LedgerEntry.objects.filter(account__user=user, kind="grant").count() == 1
    assert SignIn.objects.filter(user=user, method="Discord").count() == 2


def test_an_unverified_discord_email_must_be_proved_before_it_reaches_an_account(
    context, page, live_server_url, discord, make_customer
):
    owner = make_customer().user
    discord.user.email = owner.email
    discord.user.verified = False

    page.goto(f"{live_server_url}/accounts/login/")
    page.get_by_role("link", name="Continue with Discord").click()
    page.get_by_role("button", name="Continue").click()

    page.wait_for_url(f"{live_server_url}/accounts/confirm-email/")
    expect(page.get_by_text(f"We've sent a code to {owner.email}.")).to_be_visible()
    # Until the code from the owner's mailbox is entered, every page asks for it.
    page.goto(f"{live_server_url}/account/")
    page.wait_for_url(f"{live_server_url}/accounts/confirm-email/")
    expect(page.locator("#balance")).to_have_count(0)
    assert not SignIn.objects.filter(user=owner).exists()
    assert not owner.socialaccount_set.exists()
