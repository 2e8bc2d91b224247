"""Billing fixtures: Stripe configured against the fake API, webhook posting, packages."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.billing.fake_stripe import SECRET_KEY, WEBHOOK_SECRET, FakeStripe, signed


@pytest.fixture
def fake_stripe(settings: Any) -> Iterator[FakeStripe]:
    fake = FakeStripe().start()
    settings.STRIPE_SECRET_KEY = SECRET_KEY
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_API_BASE = fake.url
    yield fake
    fake.stop()


@pytest.fixture
def stripe_off(settings: Any) -> None:
    settings.STRIPE_SECRET_KEY = ""
    settings.STRIPE_WEBHOOK_SECRET = ""


@pytest.fixture
def default_packages(db) -> None:
    """The packages the data migration seeds (transactional tests flush them, so re-seed)."""
    from django.apps import apps

    importlib.import_module("billing.migrations.0003_default_credit_packages").seed_packages(
        apps, None
    )


@pytest.fixture
def starter(default_packages) -> Any:
    from billing.models import CreditPackage

    return CreditPackage.objects.get(slug="starter")


@pytest.fixture
def plus(default_packages) -> Any:
    from billing.models import CreditPackage

    return CreditPackage.objects.get(slug="plus")


@pytest.fixture
def post_webhook(client, fake_stripe) -> Callable[..., Any]:
    """POST a signed event to the webhook, as Stripe delivers it."""

    def post(payload: dict[str, Any], secret: str = WEBHOOK_SECRET) -> Any:
        body, signature = signed(payload, secret)
        return client.post(
            "/billing/stripe/webhook",
            data=body,
            content_type="application/json",
            HTTP_STRIPE_SIGNATURE=signature,
        )

    return post


@pytest.fixture
def customer_client(client, customer) -> Any:
    client.force_login(customer.user)
    return client


@pytest.fixture
def demo_priced(demo_catalog, warm_catalog) -> None:
    """The demo model ($1 in, $2 out per million tokens), in the catalog snapshot."""
    warm_catalog()
