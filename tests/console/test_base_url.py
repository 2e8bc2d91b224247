"""One public base URL (console/site.py) for every page, code sample and email: the
request's own scheme and host, unless the operator set SITE_URL."""

from __future__ import annotations

import html

import pytest
from django.core import mail

from accounts.models import ApiKey

pytestmark = pytest.mark.django_db

HOST = "gw.test:8010"
PAGES = ["/", "/docs/", "/docs/quickstart/", "/docs/clients/", "/docs/api/"]


@pytest.fixture
def served_elsewhere(settings) -> None:
    settings.SITE_URL = ""
    settings.ALLOWED_HOSTS = ["gw.test", "testserver"]


@pytest.mark.parametrize("path", PAGES)
def test_a_page_shows_the_host_it_was_served_from(client, served_elsewhere, demo_catalog, path):
    body = html.unescape(client.get(path, HTTP_HOST=HOST).content.decode())

    assert f"http://{HOST}/v1" in body
    assert "localhost:8000" not in body


@pytest.mark.parametrize("path", PAGES)
def test_an_explicit_site_url_wins_over_the_request(client, settings, demo_catalog, path):
    settings.SITE_URL = "https://api.example.com"
    settings.ALLOWED_HOSTS = ["gw.test"]

    body = html.unescape(client.get(path, HTTP_HOST=HOST).content.decode())

    assert "https://api.example.com/v1" in body
    assert HOST not in body


def test_the_new_key_page_uses_the_same_base_url(client, served_elsewhere, customer):
    client.force_login(customer.user)
    created = client.post("/account/keys/new/", {"name": "elsewhere"}, HTTP_HOST=HOST)
    body = html.unescape(client.get(created["Location"], HTTP_HOST=HOST).content.decode())

    assert f'base_url="http://{HOST}/v1"' in body
    assert ApiKey.objects.filter(user=customer.user, name="elsewhere").exists()


def test_the_sign_up_email_names_the_host_it_was_asked_from(client, served_elsewhere):
    response = client.post(
        "/accounts/signup/",
        {
            "email": "new@example.com",
            "password1": "a-long-pass-123",
            "password2": "a-long-pass-123",
        },
        HTTP_HOST=HOST,
    )

    assert response.status_code == 302
    (message,) = mail.outbox
    assert HOST in message.body
    assert "localhost:8000" not in message.body
