"""The styled 404 and 500 pages, each with a way back, and the favicon."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_an_unknown_page_is_a_styled_404_with_a_way_home(client):
    response = client.get("/no-such-page/")

    assert response.status_code == 404
    body = response.content.decode()
    assert "Page not found" in body
    assert "/no-such-page/" in body
    assert 'href="/"' in body
    assert "css/site.css" in body


def test_a_signed_in_404_leads_back_to_the_dashboard(client, customer):
    client.force_login(customer.user)

    assert "Back to your dashboard" in client.get("/no-such-page/").content.decode()


def test_a_server_error_is_a_styled_500_drawn_without_the_request(settings, monkeypatch):
    from console import views

    def broken(request):
        raise RuntimeError("boom")

    monkeypatch.setattr(views, "pricing", broken)
    settings.ROOT_URLCONF = "tests.console.broken_urls"
    response = Client(raise_request_exception=False).get("/broken/")

    assert response.status_code == 500
    body = response.content.decode()
    assert "Something went wrong on our side" in body
    assert "Back to Switchboard" in body
    assert "css/site.css" in body


def test_every_page_names_the_favicon_and_favicon_ico_leads_to_it(client):
    assert 'rel="icon" href="/static/favicon.svg"' in client.get("/").content.decode()

    response = client.get("/favicon.ico")

    assert response.status_code == 301
    assert response["Location"] == "/static/favicon.svg"
    assert client.get(response["Location"]).status_code == 200
