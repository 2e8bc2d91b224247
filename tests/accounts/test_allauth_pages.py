"""allauth's pages wear the console's layout; GitHub appears only when configured."""

from __future__ import annotations

import pytest
from allauth.account import app_settings as account_settings

GITHUB_APP = {"APPS": [{"client_id": "abc", "secret": "def", "key": ""}]}

PAGES = [
    "/accounts/login/",
    "/accounts/signup/",
    "/accounts/signup/passkey/",
    "/accounts/password/reset/",
    "/accounts/login/code/",
]


@pytest.mark.parametrize("url", PAGES)
def test_entrance_pages_use_the_console_layout(client, db, url):
    response = client.get(url)
    assert response.status_code == 200
    body = response.content.decode()
    assert '<a class="brand" href="/">Switchboard</a>' in body
    assert "· Switchboard</title>" in body
    assert "Back to Switchboard" in body
    assert 'class="card entrance-card"' in body


def test_form_fields_have_visible_labels(client, db):
    body = client.get("/accounts/signup/").content.decode()
    assert '<label for="id_email">' in body
    assert '<label for="id_password1">' in body


def test_errors_are_announced_and_tied_to_their_field(client, db):
    response = client.post("/accounts/login/", {"login": "nobody@example.com", "password": "x"})
    body = response.content.decode()
    assert 'class="error-summary" role="alert"' in body


@pytest.mark.parametrize(
    "url", ["/accounts/email/", "/accounts/password/change/", "/accounts/2fa/"]
)
def test_manage_pages_use_the_console_layout_with_a_way_back(owner_client, url):
    response = owner_client.get(url)
    assert response.status_code == 200
    body = response.content.decode()
    assert '<a href="/account/">← Account</a>' in body
    assert "· Switchboard</title>" in body


def test_the_github_button_is_hidden_when_github_is_not_configured(client, db, settings):
    settings.SOCIALACCOUNT_PROVIDERS = {"github": {}}
    assert "Continue with GitHub" not in client.get("/accounts/login/").content.decode()


def test_the_github_button_shows_when_github_is_configured(client, db, settings):
    settings.SOCIALACCOUNT_PROVIDERS = {"github": GITHUB_APP}
    body = client.get("/accounts/login/").content.decode()
    assert "Continue with GitHub" in body
    assert "/accounts/github/login/" in body


def test_passkey_sign_in_and_sign_up_are_offered(client, db):
    assert "Sign in with a passkey" in client.get("/accounts/login/").content.decode()
    assert "Sign up using a passkey" in client.get("/accounts/signup/").content.decode()


def test_rate_limits_cover_sign_up_login_and_codes():
    limits = account_settings.RATE_LIMITS
    for action in ("signup", "login", "login_failed", "confirm_email", "request_login_code"):
        assert limits[action], action


DISCORD_APP = {"APPS": [{"client_id": "abc", "secret": "def", "key": ""}]}


def test_the_discord_button_is_hidden_when_discord_is_not_configured(client, db, settings):
    settings.SOCIALACCOUNT_PROVIDERS = {"github": GITHUB_APP, "discord": {}}
    body = client.get("/accounts/login/").content.decode()
    assert "Continue with GitHub" in body
    assert "Continue with Discord" not in body


def test_the_discord_button_shows_beside_github_when_configured(client, db, settings):
    settings.SOCIALACCOUNT_PROVIDERS = {"github": GITHUB_APP, "discord": DISCORD_APP}
    body = client.get("/accounts/login/").content.decode()
    assert "Continue with GitHub" in body and "Continue with Discord" in body
    assert "/accounts/discord/login/" in body
