"""API_KEY_PREFIX: new keys start with the operator's prefix, keys minted under an
earlier one keep working, masks and snippets show the right one, and a system check
refuses a prefix no key could start with."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import run_checks

from accounts.models import ApiKey

# gateway.auth loads keys on a worker thread, which must see the test's rows.
pytestmark = pytest.mark.django_db(transaction=True)

BRANDS = ["btoo_sk_live_", "sk-beans-", "bst_"]


def models_status(client: Any, secret: str) -> int:
    return client.get("/v1/models", headers={"Authorization": f"Bearer {secret}"}).status_code


@pytest.mark.parametrize("brand", BRANDS)
def test_new_keys_start_with_the_prefix_and_work(client, settings, customer, brand):
    settings.API_KEY_PREFIX = brand

    key, secret = ApiKey.objects.mint(user=customer.user, name="branded")

    assert secret.startswith(brand)
    assert len(secret) == len(brand) + 12 + 43
    assert key.brand_prefix == brand
    assert key.masked == f"{brand}…{secret[-4:]}"
    assert models_status(client, secret) == 200


def test_keys_minted_under_earlier_prefixes_keep_working(client, settings, customer):
    old_key, old_secret = customer.api_key, customer.secret
    settings.API_KEY_PREFIX = "btoo_sk_live_"
    _, btoo_secret = ApiKey.objects.mint(user=customer.user, name="bentoo")
    settings.API_KEY_PREFIX = "bst_"
    _, bst_secret = ApiKey.objects.mint(user=customer.user, name="botstrapp")

    assert old_secret.startswith("sk-sb-")
    for secret in (old_secret, btoo_secret, bst_secret):
        assert models_status(client, secret) == 200
    assert old_key.masked.startswith("sk-sb-…")


def test_a_key_given_another_prefix_is_refused(client, settings, customer):
    settings.API_KEY_PREFIX = "bst_"
    rebranded = "bst_" + customer.secret.removeprefix("sk-sb-")

    response = client.get("/v1/models", headers={"Authorization": f"Bearer {rebranded}"})

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_the_missing_key_error_names_the_prefix(client, settings, db):
    settings.API_KEY_PREFIX = "sk-beans-"

    response = client.get("/v1/models")

    assert response.status_code == 401
    assert "Authorization: Bearer sk-beans-…" in response.json()["error"]["message"]


def test_the_keys_page_masks_each_key_with_its_own_prefix(client, settings, customer):
    settings.API_KEY_PREFIX = "bst_"
    _, secret = ApiKey.objects.mint(user=customer.user, name="botstrapp")
    client.force_login(customer.user)

    body = client.get("/account/keys/").content.decode()

    assert f"<code>sk-sb-…{customer.secret[-4:]}</code>" in body
    assert f"<code>bst_…{secret[-4:]}</code>" in body


def test_the_account_api_mints_and_masks_with_the_prefix(client, settings, customer):
    _, manager = ApiKey.objects.mint(user=customer.user, name="ops", can_manage=True)
    settings.API_KEY_PREFIX = "btoo_sk_live_"

    response = client.post(
        "/api/v1/keys",
        data={"name": "ci"},
        content_type="application/json",
        headers={"Authorization": f"Bearer {manager}"},
    )

    assert response.status_code == 201
    data = response.json()
    assert data["key"].startswith("btoo_sk_live_")
    assert data["masked"] == f"btoo_sk_live_…{data['key'][-4:]}"
    assert models_status(client, data["key"]) == 200


@pytest.mark.parametrize("path", ["/docs/quickstart/", "/docs/api/", "/docs/clients/"])
def test_the_docs_show_the_prefix(client, settings, db, path):
    settings.API_KEY_PREFIX = "btoo_sk_live_"

    body = client.get(path).content.decode()

    assert "btoo_sk_live_…" in body
    assert "sk-sb-" not in body


@pytest.mark.parametrize(
    "prefix", ["", "9sk-", "sk sb-", "sk/sb-", "sk-sb-\n", "x" * 25, "sk-é-", "<b>"]
)
def test_a_bad_prefix_is_refused_by_a_system_check(settings, prefix):
    settings.API_KEY_PREFIX = prefix

    assert "console.E020" in [issue.id for issue in run_checks()]


@pytest.mark.parametrize("prefix", ["sk-sb-", *BRANDS, "k", "x" * 24])
def test_a_good_prefix_passes(settings, prefix):
    settings.API_KEY_PREFIX = prefix

    assert "console.E020" not in [issue.id for issue in run_checks()]
