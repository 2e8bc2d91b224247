from __future__ import annotations

from accounts.models import ApiKey


def test_it_revokes_the_owners_key_and_returns_the_row_for_htmx(owner_client, owner):
    key, _ = ApiKey.objects.mint(user=owner, name="old laptop")
    response = owner_client.post(f"/account/keys/{key.pk}/revoke/", headers={"HX-Request": "true"})
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith(f'<tr id="key-{key.pk}" class="revoked">')
    assert "Revoked" in body
    key.refresh_from_db()
    assert key.is_revoked


def test_it_redirects_to_the_keys_page_without_htmx(owner_client, owner):
    key, _ = ApiKey.objects.mint(user=owner, name="old laptop")
    response = owner_client.post(f"/account/keys/{key.pk}/revoke/")
    assert response.status_code == 302
    assert response["Location"] == "/account/keys/"
    key.refresh_from_db()
    assert key.is_revoked


def test_it_answers_404_for_another_users_key(owner_client, outsider):
    key, _ = ApiKey.objects.mint(user=outsider, name="theirs")
    response = owner_client.post(f"/account/keys/{key.pk}/revoke/", headers={"HX-Request": "true"})
    assert response.status_code == 404
    key.refresh_from_db()
    assert not key.is_revoked


def test_it_sends_anonymous_visitors_to_the_login_page(client, owner):
    key, _ = ApiKey.objects.mint(user=owner, name="mine")
    response = client.post(f"/account/keys/{key.pk}/revoke/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    key.refresh_from_db()
    assert not key.is_revoked


def test_it_only_accepts_post(owner_client, owner):
    key, _ = ApiKey.objects.mint(user=owner, name="mine")
    assert owner_client.get(f"/account/keys/{key.pk}/revoke/").status_code == 405
