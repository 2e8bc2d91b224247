"""The account API: GET /api/v1/me, GET/POST /api/v1/keys, DELETE /api/v1/keys/<id>."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

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


@pytest.fixture
def two_models(demo_catalog) -> None:
    from gateway import state
    from gateway.models import Model

    Model.objects.create(id="other", title="Other", input_price=1, output_price=1)
    state.reset_process_state()


@pytest.fixture
def bounded_secret(owner, two_models) -> str:
    """A management key that may call only `demo`, with every limit and cap set."""
    _, secret = ApiKey.objects.mint(
        user=owner,
        name="bounded",
        can_manage=True,
        allowed_models=["demo"],
        rpm_limit=10,
        tpm_limit=1_000,
        spend_cap_micro_usd=5_000_000,
        spend_cap_period="week",
        max_cost_per_request_micro_usd=100_000,
        expires_at=timezone.now() + timedelta(days=10, hours=1),
    )
    return secret


def create_key(client, secret: str, **body: object):
    return client.post(
        "/api/v1/keys",
        json.dumps({"name": "child", **body}),
        content_type="application/json",
        headers=bearer(secret),
    )


def refused_for_exceeding(response, param: str) -> str:
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "key_exceeds_creator"
    assert error["type"] == "permission_error"
    assert error["param"] == param
    assert error["message"].startswith(f"{param}: ")
    return error["message"]


def test_a_minted_key_inherits_every_bound_left_out(client, owner, bounded_secret):
    creator = ApiKey.objects.get(name="bounded")

    response = create_key(client, bounded_secret)

    assert response.status_code == 201
    child = ApiKey.objects.get(pk=response.json()["id"])
    assert child.allowed_models == ["demo"]
    assert (child.rpm_limit, child.tpm_limit) == (10, 1_000)
    assert (child.spend_cap_micro_usd, child.spend_cap_period) == (5_000_000, "week")
    assert child.max_cost_per_request_micro_usd == 100_000
    assert child.expires_at == creator.expires_at


def test_a_minted_key_may_be_narrower(client, owner, bounded_secret):
    response = create_key(
        client,
        bounded_secret,
        allowed_models=["demo"],
        rpm_limit=5,
        tpm_limit=500,
        spend_cap_usd="2",
        spend_cap_period="total",
        expires_on=(timezone.now() + timedelta(days=3)).date().isoformat(),
    )

    assert response.status_code == 201
    child = ApiKey.objects.get(pk=response.json()["id"])
    assert (child.rpm_limit, child.tpm_limit, child.spend_cap_micro_usd) == (5, 500, 2_000_000)
    assert child.spend_cap_period == "total"


@pytest.mark.parametrize("models", [["demo", "other"], ["other"], []])
def test_a_minted_key_may_call_no_model_its_creator_may_not(client, owner, bounded_secret, models):
    message = refused_for_exceeding(
        create_key(client, bounded_secret, allowed_models=models), "allowed_models"
    )

    assert "demo" in message
    assert not ApiKey.objects.filter(name="child").exists()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"rpm_limit": 11}, "rpm_limit"),
        ({"rpm_limit": None}, "rpm_limit"),
        ({"tpm_limit": 1_001}, "tpm_limit"),
        ({"spend_cap_usd": "5.01"}, "spend_cap_usd"),
        ({"spend_cap_usd": None}, "spend_cap_usd"),
        ({"spend_cap_usd": "1", "spend_cap_period": "day"}, "spend_cap_period"),
        ({"spend_cap_period": "day"}, "spend_cap_period"),
    ],
)
def test_a_minted_key_has_no_higher_limit_or_cap(client, owner, bounded_secret, body, param):
    message = refused_for_exceeding(create_key(client, bounded_secret, **body), param)

    assert {"rpm_limit": "10", "tpm_limit": "1000", "spend_cap_usd": "$5"}.get(
        param, "per week"
    ) in message

    assert not ApiKey.objects.filter(name="child").exists()


def test_a_minted_key_expires_no_later_than_its_creator(client, owner, bounded_secret):
    creator = ApiKey.objects.get(name="bounded")
    later = (creator.expires_at + timedelta(days=1)).date().isoformat()

    message = refused_for_exceeding(
        create_key(client, bounded_secret, expires_on=later), "expires_on"
    )
    never = create_key(client, bounded_secret, expires_on=None)
    same_day = create_key(client, bounded_secret, expires_on=creator.expires_at.date().isoformat())

    assert creator.expires_at.date().isoformat() in message
    refused_for_exceeding(never, "expires_on")
    assert same_day.status_code == 201
    assert ApiKey.objects.get(pk=same_day.json()["id"]).expires_at == creator.expires_at


def test_a_minted_management_key_is_bounded_by_itself_in_turn(client, owner, bounded_secret):
    made = create_key(client, bounded_secret, can_manage=True, rpm_limit=5)
    assert made.status_code == 201
    grandchild_secret = made.json()["key"]

    wider = create_key(client, grandchild_secret, rpm_limit=6)
    narrower = create_key(client, grandchild_secret, rpm_limit=4)

    refused_for_exceeding(wider, "rpm_limit")
    assert narrower.status_code == 201
    grandchild = ApiKey.objects.get(pk=narrower.json()["id"])
    assert grandchild.allowed_models == ["demo"]
    assert grandchild.spend_cap_micro_usd == 5_000_000


def test_a_key_without_bounds_mints_any_key(client, owner, manager_secret, two_models):
    response = create_key(
        client, manager_secret, allowed_models=["other"], rpm_limit=1_000_000, spend_cap_usd="99"
    )

    assert response.status_code == 201
    assert response.json()["allowed_models"] == ["other"]
