"""Fixtures for the accounts tests: an owner, an outsider, and browser helpers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

PASSWORD = "correct-horse-battery-staple"


def make_user(email: str) -> Any:
    from allauth.account.models import EmailAddress

    from accounts.models import User

    user = User.objects.create_user(email, PASSWORD)
    EmailAddress.objects.create(user=user, email=email, primary=True, verified=True)
    return user


@pytest.fixture
def owner(db) -> Any:
    return make_user("owner@example.com")


@pytest.fixture
def outsider(db) -> Any:
    return make_user("outsider@example.com")


@pytest.fixture
def owner_client(client, owner) -> Any:
    client.force_login(owner)
    return client


@pytest.fixture
def context(browser) -> Iterator[Any]:
    """A fresh browser context (cookies, storage) per test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    yield context
    context.close()


@pytest.fixture
def page(context) -> Any:
    return context.new_page()
