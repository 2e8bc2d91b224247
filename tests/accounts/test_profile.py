from __future__ import annotations

from allauth.mfa.models import Authenticator

from accounts.models import SignIn


def test_it_shows_the_balance_addresses_and_sign_ins_of_the_owner(owner_client, owner):
    SignIn.objects.create(user=owner, method="Password", ip_address="203.0.113.7")
    response = owner_client.get("/account/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "<title>Account · Switchboard</title>" in body
    assert "$1.00" in body
    assert "owner@example.com" in body
    assert "203.0.113.7" in body


def test_it_lists_the_owners_passkeys_by_name(owner_client, owner):
    Authenticator.objects.create(
        user=owner, type=Authenticator.Type.WEBAUTHN, data={"name": "Work laptop"}
    )
    body = owner_client.get("/account/").content.decode()
    assert "Work laptop" in body
    assert "Add a passkey" in body


def test_it_never_shows_another_users_data(owner_client, outsider):
    SignIn.objects.create(user=outsider, method="Password", ip_address="198.51.100.9")
    Authenticator.objects.create(
        user=outsider, type=Authenticator.Type.WEBAUTHN, data={"name": "Outsider phone"}
    )
    body = owner_client.get("/account/").content.decode()
    assert "outsider@example.com" not in body
    assert "198.51.100.9" not in body
    assert "Outsider phone" not in body


def test_it_sends_anonymous_visitors_to_the_login_page(client, db):
    response = client.get("/account/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/account/")


def test_it_hides_github_when_github_is_not_configured(owner_client, settings):
    settings.SOCIALACCOUNT_PROVIDERS = {"github": {}}
    body = owner_client.get("/account/").content.decode()
    assert "Connect GitHub" not in body
    assert "Sign-in with GitHub or Discord is not enabled" in body


def test_sign_ins_name_the_browser_and_system_in_plain_words():
    chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"
    iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Version/17.0 Safari/604.1"
    edge = "Mozilla/5.0 (Windows NT 10.0; Win64) Chrome/131.0 Safari/537.36 Edg/131.0"
    assert SignIn(user_agent=chrome).device == "Chrome on Linux"
    assert SignIn(user_agent=iphone).device == "Safari on iPhone"
    assert SignIn(user_agent=edge).device == "Edge on Windows"
    assert SignIn(user_agent="curl/8.0").device == "Unknown"


def test_it_offers_to_connect_github_when_github_is_configured(owner_client, settings):
    settings.SOCIALACCOUNT_PROVIDERS = {
        "github": {"APPS": [{"client_id": "abc", "secret": "def", "key": ""}]}
    }
    body = owner_client.get("/account/").content.decode()
    assert "Connect GitHub" in body
    assert 'action="/accounts/github/login/?process=connect' in body


def test_it_offers_to_connect_discord_when_discord_is_configured(owner_client, settings):
    settings.SOCIALACCOUNT_PROVIDERS = {
        "discord": {"APPS": [{"client_id": "abc", "secret": "def", "key": ""}]}
    }
    body = owner_client.get("/account/").content.decode()
    assert "Connect Discord" in body
    assert 'action="/accounts/discord/login/?process=connect' in body
    assert "Connect GitHub" not in body
