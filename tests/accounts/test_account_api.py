"""The account API: GET /api/v1/me, GET/POST /api/v1/keys, DELETE /api/v1/keys/<id>."""

from __future__ import annotations

import json

import httpx
import pytest

from accounts.models import ApiKey

# gateway.auth loads keys on a worker thread, which must see the test's rows.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def manager_secret(owner) -> str:
    _, secret = ApiKey.objects.mint(user=owner, name="ops", can_manage=True)
    return secret


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_me_returns_the_profile_and_balance(client, owner, manager_secret):
    response = client.get("/api/v1/me", headers=bearer(manager_secret))
    assert response.status_code == 200
    data = response.json()
    assert data["email"] == "owner@example.com"
    assert data["balance"]["micro_usd"] == 1_000_000
    assert data["balance"]["display"] == "$1.00"


def test_it_refuses_a_request_without_a_key(client, db):
    response = client.get("/api/v1/me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_it_refuses_a_key_without_the_management_scope(client, owner):
    _, secret = ApiKey.objects.mint(user=owner, name="plain")
    response = client.get("/api/v1/keys", headers=bearer(secret))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "insufficient_scope"


def test_it_refuses_a_revoked_management_key(client, owner):
    key, secret = ApiKey.objects.mint(user=owner, name="ops", can_manage=True)
    key.revoke()
    response = client.get("/api/v1/me", headers=bearer(secret))
    assert response.status_code == 401


def test_it_lists_only_the_callers_keys(client, owner, outsider, manager_secret):
    ApiKey.objects.mint(user=owner, name="laptop")
    ApiKey.objects.mint(user=outsider, name="theirs")
    response = client.get("/api/v1/keys", headers=bearer(manager_secret))
    assert response.status_code == 200
    names = sorted(key["name"] for key in response.json()["data"])
    assert names == ["laptop", "ops"]
    assert all("hashed" not in key and "key" not in key for key in response.json()["data"])


def test_it_creates_a_key_and_returns_the_secret_once(client, owner, manager_secret, demo_catalog):
    body = {"name": "deploy", "allowed_models": ["demo"], "rpm_limit": 10, "spend_cap_usd": "3"}
    response = client.post(
        "/api/v1/keys",
        json.dumps(body),
        content_type="application/json",
        headers=bearer(manager_secret),
    )
    assert response.status_code == 201
    data = response.json()
    key = ApiKey.objects.get(pk=data["id"])
    assert key.user == owner
    assert key.matches(data["key"])
    assert data["allowed_models"] == ["demo"]
    assert data["spend_cap_micro_usd"] == 3_000_000
    assert data["masked"] == key.masked


def test_it_explains_an_invalid_key_request(client, owner, manager_secret):
    response = client.post(
        "/api/v1/keys",
        json.dumps({"rpm_limit": 0}),
        content_type="application/json",
        headers=bearer(manager_secret),
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "name"
    assert error["type"] == "invalid_request_error"


def test_it_refuses_a_body_that_is_not_json(client, owner, manager_secret):
    response = client.post(
        "/api/v1/keys", "{nope", content_type="application/json", headers=bearer(manager_secret)
    )
    assert response.status_code == 400


def test_it_revokes_the_callers_key(client, owner, manager_secret):
    key, _ = ApiKey.objects.mint(user=owner, name="old")
    response = client.delete(f"/api/v1/keys/{key.pk}", headers=bearer(manager_secret))
    assert response.status_code == 200
    assert response.json()["revoked_at"] is not None
    key.refresh_from_db()
    assert key.is_revoked


def test_it_answers_404_for_another_users_key(client, outsider, manager_secret):
    key, _ = ApiKey.objects.mint(user=outsider, name="theirs")
    response = client.delete(f"/api/v1/keys/{key.pk}", headers=bearer(manager_secret))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "key_not_found"
    key.refresh_from_db()
    assert not key.is_revoked


def test_it_refuses_the_wrong_methods(client, manager_secret):
    assert client.post("/api/v1/me", headers=bearer(manager_secret)).status_code == 405
    assert client.delete("/api/v1/keys", headers=bearer(manager_secret)).status_code == 405
    assert client.get("/api/v1/keys/1", headers=bearer(manager_secret)).status_code == 405


def test_it_answers_through_the_asgi_server(live_server_url, owner, manager_secret):
    response = httpx.get(f"{live_server_url}/api/v1/me", headers=bearer(manager_secret))
    assert response.status_code == 200
    assert response.json()["email"] == "owner@example.com"


def test_the_hidden_web_chat_key_is_neither_listed_nor_revocable(client, owner, manager_secret):
    web, _ = ApiKey.objects.mint(user=owner, name="web chat", kind=ApiKey.Kind.WEB)

    listed = client.get("/api/v1/keys", headers=bearer(manager_secret)).json()["data"]
    deleted = client.delete(f"/api/v1/keys/{web.pk}", headers=bearer(manager_secret))

    assert web.pk not in {key["id"] for key in listed}
    assert deleted.status_code == 404
    web.refresh_from_db()
    assert web.revoked_at is None
