"""GitHub sign-in through a fake GitHub on 127.0.0.1, in Chromium."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from allauth.socialaccount.providers.github.views import GitHubOAuth2Adapter
from playwright.sync_api import expect

from accounts.models import SignIn, User
from billing.models import LedgerEntry

from .fake_github import CLIENT_ID, CLIENT_SECRET, FakeGitHub

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def github(settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGitHub]:
    fake = FakeGitHub().start()
    settings.SOCIALACCOUNT_PROVIDERS = {
        "github": {
            "APPS": [{"client_id": CLIENT_ID, "secret": CLIENT_SECRET, "key": ""}],
            "GITHUB_URL": fake.url,
            "SCOPE": ["read:user", "user:email"],
        }
    }
    # allauth reads GITHUB_URL when its views module is imported, so point the
    # already-imported adapter at the fake as well.
    monkeypatch.setattr(GitHubOAuth2Adapter, "authorize_url", f"{fake.url}/login/oauth/authorize")
    monkeypatch.setattr(
        GitHubOAuth2Adapter, "access_token_url", f"{fake.url}/login/oauth/access_token"
    )
    monkeypatch.setattr(GitHubOAuth2Adapter, "profile_url", f"{fake.url}/api/v3/user")
    monkeypatch.setattr(GitHubOAuth2Adapter, "emails_url", f"{fake.url}/api/v3/user/emails")
    yield fake
    fake.stop()


def sign_in_with_github(page, base_url: str) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.get_by_role("link", name="Continue with GitHub").click()
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"{base_url}/")


def test_github_sign_in_creates_the_account_with_one_grant(context, page, live_server_url, github):
    sign_in_with_github(page, live_server_url)
    user = User.objects.get(email="octocat@example.com")
    assert LedgerEntry.objects.filter(account__user=user, kind="grant").count() == 1

    page.get_by_role("navigation", name="Main").locator("summary").click()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Account").click()
    expect(page.locator("#balance")).to_have_text("$1.00")
    expect(page.get_by_text("Connected as octocat")).to_be_visible()

    context.clear_cookies()
    sign_in_with_github(page, live_server_url)
    assert User.objects.filter(email="octocat@example.com").count() == 1
    assert LedgerEntry.objects.filter(account__user=user, kind="grant").count() == 1
    assert SignIn.objects.filter(user=user, method="GitHub").count() == 2
