"""/account/keys/<id>/edit/: change a live key's settings, owner only; the key cache
notices at once."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from accounts.models import ApiKey

pytestmark = pytest.mark.django_db


@pytest.fixture
def key(owner):
    key, _ = ApiKey.objects.mint(user=owner, name="ci", rpm_limit=10, spend_cap_micro_usd=2_000_000)
    return key


def test_the_form_starts_from_the_keys_own_settings(owner_client, owner, demo_catalog):
    expires = datetime.combine(date(2031, 5, 2), datetime.min.time(), UTC)
    key, _ = ApiKey.objects.mint(
        user=owner, name="ci", allowed_models=["demo"], expires_at=expires, tpm_limit=900
    )

    form = owner_client.get(f"/account/keys/{key.pk}/edit/").context["form"]

    assert form.initial["name"] == "ci"
    assert form.initial["allowed_models"] == ["demo"]
    assert form.initial["expires_on"] == date(2031, 5, 1)
    assert form.initial["tpm_limit"] == 900


def test_it_saves_every_setting_and_goes_back_to_the_list(owner_client, key, demo_catalog):
    tomorrow = date.today() + timedelta(days=1)
    response = owner_client.post(
        f"/account/keys/{key.pk}/edit/",
        {
            "name": "renamed",
            "expires_on": tomorrow.isoformat(),
            "allowed_models": ["demo"],
            "rpm_limit": "5",
            "tpm_limit": "",
            "spend_cap_usd": "0.75",
            "spend_cap_period": "day",
        },
        follow=True,
    )

    assert response.redirect_chain == [("/account/keys/", 302)]
    assert "The key “renamed” was saved." in response.content.decode()
    key.refresh_from_db()
    assert (key.name, key.allowed_models, key.rpm_limit, key.tpm_limit) == (
        "renamed",
        ["demo"],
        5,
        None,
    )
    assert (key.spend_cap_micro_usd, key.spend_cap_period) == (750_000, "day")
    assert key.expires_at == datetime.combine(
        tomorrow + timedelta(days=1), datetime.min.time(), UTC
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": ""}, "This field is required."),
        ({"name": "x", "rpm_limit": "0"}, "greater than or equal to 1"),
        ({"name": "x", "spend_cap_usd": "-1"}, "greater than or equal to 0"),
        ({"name": "x", "allowed_models": ["nope"]}, "Select a valid choice"),
        ({"name": "x", "expires_on": "2001-01-01"}, "Pick today or a later date."),
    ],
)
def test_a_bad_value_is_refused_with_the_reason_and_changes_nothing(
    owner_client, key, demo_catalog, data, message
):
    response = owner_client.post(f"/account/keys/{key.pk}/edit/", data)

    assert response.status_code == 400
    assert message in response.content.decode()
    key.refresh_from_db()
    assert (key.name, key.rpm_limit) == ("ci", 10)


def test_another_users_key_cannot_be_edited(owner_client, outsider):
    theirs, _ = ApiKey.objects.mint(user=outsider, name="theirs")

    assert owner_client.get(f"/account/keys/{theirs.pk}/edit/").status_code == 404
    assert owner_client.post(f"/account/keys/{theirs.pk}/edit/", {"name": "x"}).status_code == 404
    theirs.refresh_from_db()
    assert theirs.name == "theirs"


def test_a_revoked_key_cannot_be_edited(owner_client, key):
    key.revoke()

    assert owner_client.get(f"/account/keys/{key.pk}/edit/").status_code == 404


def test_revoked_keys_are_hidden_until_asked_for(owner_client, owner, key):
    old, _ = ApiKey.objects.mint(user=owner, name="old-one")
    old.revoke()

    listed = owner_client.get("/account/keys/").content.decode()
    shown = owner_client.get("/account/keys/?show=revoked").content.decode()

    assert "old-one" not in listed
    assert "Show revoked keys (1)" in listed
    assert "old-one" in shown and "Hide revoked keys" in shown


def test_each_key_links_to_its_usage_and_its_edit_page(owner_client, key):
    body = owner_client.get("/account/keys/").content.decode()

    assert f'href="/billing/usage/?key={key.pk}"' in body
    assert f'href="/account/keys/{key.pk}/edit/"' in body


@pytest.mark.django_db(transaction=True)
def test_the_key_cache_notices_an_edit_at_once(customer, demo_catalog, settings, client):
    from gateway.models import Model, Provider, Route

    other = Model.objects.create(id="other", input_price=1, output_price=1)
    Route.objects.create(
        model=other, provider=Provider.objects.get(name="demo"), upstream_model="x"
    )
    settings.KEY_CACHE_SECONDS = 3600
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {customer.secret}"}

    def listed() -> list[str]:
        payload = client.get("/v1/models", **bearer).json()
        assert "data" in payload, payload
        return [m["id"] for m in payload["data"]]

    assert listed() == ["demo", "other"]

    client.force_login(customer.user)
    response = client.post(
        f"/account/keys/{customer.api_key.pk}/edit/",
        {"name": "narrow", "allowed_models": ["demo"], "spend_cap_period": "month"},
    )

    assert response.status_code == 302
    assert listed() == ["demo"]
