from __future__ import annotations

from accounts.models import ApiKey


def test_it_lists_the_owners_keys_masked(owner_client, owner):
    key, secret = ApiKey.objects.mint(user=owner, name="laptop", rpm_limit=60)
    response = owner_client.get("/account/keys/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "<title>API keys · Switchboard</title>" in body
    assert "laptop" in body
    assert key.masked in body
    assert secret not in body
    assert "60 req/min" in body


def test_it_shows_the_spend_of_the_current_period(owner_client, owner):
    from billing.ledger import account_for
    from billing.models import UsageRecord

    key, _ = ApiKey.objects.mint(user=owner, name="metered", spend_cap_micro_usd=5_000_000)
    UsageRecord.objects.create(
        request_id="req-1",
        account=account_for(owner),
        api_key=key,
        model="demo",
        cost_micro_usd=1_250_000,
    )
    body = owner_client.get("/account/keys/").content.decode()
    assert "$1.25" in body
    assert "of $5.00 per month" in body


def test_it_offers_the_catalogs_models_in_the_allowlist(owner_client, demo_catalog):
    body = owner_client.get("/account/keys/").content.decode()
    assert 'name="allowed_models" value="demo"' in body


def test_it_never_lists_another_users_keys(owner_client, outsider):
    key, _ = ApiKey.objects.mint(user=outsider, name="outsider-key")
    body = owner_client.get("/account/keys/").content.decode()
    assert "outsider-key" not in body
    assert key.masked not in body


def test_it_hides_the_web_chat_key(owner_client, owner):
    ApiKey.objects.mint(user=owner, name="web-chat-key", kind=ApiKey.Kind.WEB)
    assert "web-chat-key" not in owner_client.get("/account/keys/").content.decode()


def test_it_sends_anonymous_visitors_to_the_login_page(client, db):
    response = client.get("/account/keys/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_it_says_what_an_empty_limit_means(owner_client, settings):
    assert owner_client.get("/account/keys/").content.decode().count("Empty: no limit.") == 2

    settings.DEFAULT_KEY_RPM = 600
    settings.DEFAULT_KEY_TPM = 0
    body = owner_client.get("/account/keys/").content.decode()

    assert "Empty: the default of 600 per minute." in body
    assert body.count("Empty: no limit.") == 1
