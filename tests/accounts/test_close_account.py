from __future__ import annotations

from allauth.account.models import EmailAddress

from accounts.models import ApiKey
from billing.models import LedgerEntry


def test_it_asks_for_confirmation(owner_client):
    response = owner_client.get("/account/delete/")
    assert response.status_code == 200
    assert "<title>Delete account · Switchboard</title>" in response.content.decode()


def test_it_refuses_a_wrong_confirmation(owner_client, owner):
    response = owner_client.post("/account/delete/", {"confirm": "someone@example.com"})
    assert response.status_code == 400
    assert "That is not the email address of this account." in response.content.decode()
    owner.refresh_from_db()
    assert owner.is_active


def test_it_revokes_keys_signs_out_and_keeps_the_ledger(owner_client, owner):
    key, _ = ApiKey.objects.mint(user=owner, name="k")
    response = owner_client.post("/account/delete/", {"confirm": "Owner@Example.com"})
    assert response.status_code == 302
    assert response["Location"] == "/"
    owner.refresh_from_db()
    key.refresh_from_db()
    assert key.is_revoked
    assert not owner.is_active
    assert not owner.has_usable_password()
    assert owner.email != "owner@example.com"
    assert not EmailAddress.objects.filter(email="owner@example.com").exists()
    assert LedgerEntry.objects.filter(account__user=owner, kind="grant").count() == 1
    assert owner_client.get("/account/").status_code == 302


def test_the_freed_address_can_sign_up_again(owner_client, owner):
    from accounts.models import User

    owner_client.post("/account/delete/", {"confirm": "owner@example.com"})
    assert User.objects.create_user("owner@example.com", "pw-123-secret").pk != owner.pk


def test_it_sends_anonymous_visitors_to_the_login_page(client, db):
    response = client.post("/account/delete/", {"confirm": "x@example.com"})
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
