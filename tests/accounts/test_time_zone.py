"""The user's time zone: a profile setting, active on every console page they open."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.utils import timezone

from billing.models import UsageRecord

pytestmark = pytest.mark.django_db


def test_a_new_user_is_in_utc(customer):
    assert customer.user.time_zone == "UTC"


def test_the_profile_page_offers_the_setting(client, customer):
    client.force_login(customer.user)

    response = client.get("/account/")

    assert b'name="time_zone"' in response.content
    assert b'<option value="Asia/Tokyo">' in response.content


def test_a_user_sets_their_time_zone(client, customer):
    client.force_login(customer.user)

    response = client.post("/account/time-zone/", {"time_zone": "Asia/Tokyo"})

    assert response.status_code == 302
    customer.user.refresh_from_db()
    assert customer.user.time_zone == "Asia/Tokyo"


def test_htmx_gets_the_form_back_saying_it_saved(client, customer):
    client.force_login(customer.user)

    response = client.post(
        "/account/time-zone/", {"time_zone": "Europe/Paris"}, headers={"HX-Request": "true"}
    )

    assert response.templates[0].name == "accounts/_time_zone.html"
    assert b"Saved: times are shown in Europe/Paris" in response.content


@pytest.mark.parametrize("value", ["Mars/Olympus_Mons", "", "UTC\x00", "a" * 100])
def test_a_time_zone_that_does_not_exist_is_refused(client, customer, value):
    client.force_login(customer.user)

    response = client.post(
        "/account/time-zone/", {"time_zone": value}, headers={"HX-Request": "true"}
    )

    assert response.status_code == 200
    assert response.context["time_zone_form"].errors["time_zone"]
    customer.user.refresh_from_db()
    assert customer.user.time_zone == "UTC"


def test_setting_it_needs_a_post_and_a_sign_in(client, customer):
    assert client.post("/account/time-zone/", {"time_zone": "Asia/Tokyo"}).status_code == 302
    client.force_login(customer.user)
    assert client.get("/account/time-zone/").status_code == 405


def test_pages_show_times_in_the_users_zone(client, customer):
    UsageRecord.objects.create(
        request_id="req_tz",
        account=customer.account,
        api_key=customer.api_key,
        model="gpt-test",
        created_at=datetime(2026, 6, 10, 15, 30, tzinfo=UTC),
    )
    customer.user.time_zone = "Asia/Tokyo"
    customer.user.save()
    client.force_login(customer.user)

    response = client.get("/billing/usage/req_tz/")

    assert b"2026-06-11 00:30:00" in response.content
    assert timezone.get_current_timezone_name() == "UTC"  # not left active after the request
