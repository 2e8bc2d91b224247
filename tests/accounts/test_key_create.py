from __future__ import annotations

import html
from datetime import UTC, date, datetime, timedelta

from accounts.models import ApiKey


def test_it_creates_a_key_and_shows_the_secret_once_with_snippets(
    owner_client, owner, demo_catalog
):
    tomorrow = date.today() + timedelta(days=1)
    response = owner_client.post(
        "/account/keys/new/",
        {
            "name": "ci runner",
            "expires_on": tomorrow.isoformat(),
            "allowed_models": ["demo"],
            "rpm_limit": "30",
            "tpm_limit": "5000",
            "spend_cap_usd": "2.50",
            "spend_cap_period": "week",
        },
    )
    key = ApiKey.objects.get(user=owner)
    assert response.status_code == 302
    assert response["Location"] == f"/account/keys/{key.pk}/created/"
    response = owner_client.get(response["Location"])
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert key.name == "ci runner"
    assert key.allowed_models == ["demo"]
    assert (key.rpm_limit, key.tpm_limit) == (30, 5000)
    assert key.spend_cap_micro_usd == 2_500_000
    assert key.spend_cap_period == "week"
    assert key.expires_at == datetime.combine(
        tomorrow + timedelta(days=1), datetime.min.time(), UTC
    )
    assert not key.can_manage
    secret = response.context["secret"]
    assert key.matches(secret)
    body = html.unescape(response.content.decode())
    # The field and the export line: the samples read the key from the environment.
    assert body.count(secret) == 2
    assert f"export SWITCHBOARD_API_KEY={secret}" in body
    assert "http://testserver/v1/chat/completions" in body
    assert 'base_url="http://testserver/v1"' in body
    assert 'api_key=os.environ["SWITCHBOARD_API_KEY"]' in body
    assert 'baseURL: "http://testserver/v1"' in body
    assert "apiKey: process.env.SWITCHBOARD_API_KEY" in body
    assert "stream=True" in body
    assert secret not in owner_client.get("/account/keys/").content.decode()


def test_the_secret_is_shown_once_and_a_reload_mints_no_second_key(owner_client, owner):
    created = owner_client.post("/account/keys/new/", {"name": "once"})
    first = owner_client.get(created["Location"])
    secret = first.context["secret"]

    again = owner_client.get(created["Location"], follow=True)

    assert again.redirect_chain == [("/account/keys/", 302)]
    body = again.content.decode()
    assert secret not in body
    assert "was shown once" in body
    assert ApiKey.objects.filter(user=owner).count() == 1


def test_another_users_new_key_page_is_not_found(owner_client, outsider):
    theirs, _ = ApiKey.objects.mint(user=outsider, name="theirs")
    assert owner_client.get(f"/account/keys/{theirs.pk}/created/").status_code == 404


def test_it_creates_a_key_with_only_a_name(owner_client, owner):
    response = owner_client.post("/account/keys/new/", {"name": "plain"})
    assert response.status_code == 302
    key = ApiKey.objects.get(user=owner)
    assert key.allowed_models == []
    assert key.expires_at is None
    assert key.spend_cap_micro_usd is None


def test_it_grants_the_management_scope_when_asked(owner_client, owner):
    owner_client.post("/account/keys/new/", {"name": "ops", "can_manage": "on"})
    assert ApiKey.objects.get(user=owner).can_manage


def test_it_refuses_an_expiry_in_the_past_and_explains_why(owner_client, owner):
    yesterday = date.today() - timedelta(days=1)
    response = owner_client.post(
        "/account/keys/new/", {"name": "old", "expires_on": yesterday.isoformat()}
    )
    assert response.status_code == 400
    body = response.content.decode()
    assert 'role="alert"' in body
    assert "Pick today or a later date." in body
    assert 'aria-invalid="true"' in body
    assert not ApiKey.objects.filter(user=owner).exists()


def test_it_refuses_a_model_outside_the_catalog(owner_client, owner, demo_catalog):
    response = owner_client.post("/account/keys/new/", {"name": "x", "allowed_models": ["nope"]})
    assert response.status_code == 400
    assert not ApiKey.objects.filter(user=owner).exists()


def test_it_refuses_a_negative_spend_cap(owner_client, owner):
    response = owner_client.post("/account/keys/new/", {"name": "x", "spend_cap_usd": "-1"})
    assert response.status_code == 400
    assert not ApiKey.objects.filter(user=owner).exists()


def test_it_only_creates_keys_for_the_signed_in_user(owner_client, owner, outsider):
    owner_client.post("/account/keys/new/", {"name": "mine", "user": outsider.pk})
    assert ApiKey.objects.get(name="mine").user == owner
    assert not ApiKey.objects.filter(user=outsider).exists()


def test_it_sends_anonymous_visitors_to_the_login_page(client, db):
    response = client.post("/account/keys/new/", {"name": "x"})
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert not ApiKey.objects.exists()


def test_it_only_accepts_post(owner_client):
    assert owner_client.get("/account/keys/new/").status_code == 405
