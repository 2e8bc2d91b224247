"""The usage dashboard: figures from the rollups, days in the user's time zone."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from billing.dashboard import percentile, span
from billing.ledger import reserve_credits, settle
from billing.models import LATENCY_BOUNDS_MS

TOKYO = zoneinfo.ZoneInfo("Asia/Tokyo")
DAY = date(2026, 6, 10)


def call(customer: Any, request_id: str, at: datetime, cost: int = 1_000, **fields: Any) -> None:
    reservation = reserve_credits(
        account_id=customer.account.pk,
        amount=100_000,
        request_id=request_id,
        api_key=customer.api_key,
    )
    usage = {
        "model": "gpt-test",
        "prompt_tokens": 100,
        "completion_tokens": 10,
        "latency_ms": 800,
        "status": "ok",
        "created_at": at,
        **fields,
    }
    settle(reservation=reservation, cost=cost, usage=usage)


@pytest.fixture
def around_tokyo_midnight(customer) -> Any:
    """One call at 23:30 and one at 00:30 in Tokyo (14:30 and 15:30 UTC, the same UTC day)."""
    call(customer, "req_before", datetime(2026, 6, 10, 14, 30, tzinfo=UTC))
    call(customer, "req_after", datetime(2026, 6, 10, 15, 30, tzinfo=UTC), cost=3_000)
    return customer


def per_day(response: Any) -> dict[date, int]:
    return {
        slot: tally.requests
        for slot, tally in response.context["dashboard"].slots
        if tally.requests
    }


CUSTOM = {"days": "custom", "since": "2026-06-09", "until": "2026-06-12"}


def test_a_user_in_tokyo_sees_days_split_at_their_midnight(client, around_tokyo_midnight):
    user = around_tokyo_midnight.user
    user.time_zone = "Asia/Tokyo"
    user.save()
    client.force_login(user)

    response = client.get("/billing/usage/", CUSTOM)

    assert per_day(response) == {date(2026, 6, 10): 1, date(2026, 6, 11): 1}
    spend = {slot: t.cost_micro_usd for slot, t in response.context["dashboard"].slots}
    assert spend[date(2026, 6, 11)] == 3_000
    assert b"days in Asia/Tokyo" in response.content


def test_a_user_in_utc_sees_both_calls_on_one_day(client, around_tokyo_midnight):
    client.force_login(around_tokyo_midnight.user)

    response = client.get("/billing/usage/", CUSTOM)

    assert per_day(response) == {date(2026, 6, 10): 2}


def test_one_day_is_charted_per_local_hour(client, around_tokyo_midnight):
    user = around_tokyo_midnight.user
    user.time_zone = "Asia/Tokyo"
    user.save()
    client.force_login(user)

    response = client.get(
        "/billing/usage/", {"days": "custom", "since": "2026-06-11", "until": "2026-06-11"}
    )

    slots = response.context["dashboard"].slots
    assert len(slots) == 24
    assert [(slot.hour, t.requests) for slot, t in slots if t.requests] == [(0, 1)]
    assert response.context["chart_data"]["labels"][0] == "00:00"


def test_the_figures_are_the_owners_only(client, customer, make_customer):
    stranger = make_customer()
    now = datetime.now(UTC)
    call(customer, "req_mine", now)
    call(stranger, "req_theirs", now, model="secret-model", cost=9_999)
    client.force_login(customer.user)

    response = client.get("/billing/usage/", {"days": "1"})

    dashboard = response.context["dashboard"]
    assert (dashboard.total.requests, dashboard.total.cost_micro_usd) == (1, 1_000)
    assert b"secret-model" not in response.content


def test_staff_see_their_own_usage_here_not_everyones(client, customer, make_customer):
    staff = make_customer()
    staff.user.is_staff = True
    staff.user.save()
    call(customer, "req_customer", datetime.now(UTC))
    client.force_login(staff.user)

    response = client.get("/billing/usage/", {"days": "1"})

    assert response.context["dashboard"].total.requests == 0


def test_another_users_key_as_a_filter_shows_nothing(client, customer, make_customer):
    stranger = make_customer()
    call(stranger, "req_theirs", datetime.now(UTC))
    client.force_login(customer.user)

    response = client.get("/billing/usage/", {"days": "1", "key": stranger.api_key.pk})

    assert response.context["dashboard"].total.requests == 0


def test_the_dashboard_breaks_down_by_model_key_and_protocol(client, customer):
    now = datetime.now(UTC)
    call(customer, "req_1", now, source="messages", latency_ms=300, ttft_ms=120)
    call(customer, "req_2", now, model="claude-test", cost=5_000, status="error")
    call(customer, "req_3", now, model="claude-test", cost=5_000, source="web")
    client.force_login(customer.user)

    response = client.get("/billing/usage/", {"days": "7"})

    dashboard = response.context["dashboard"]
    assert [(b.label, b.tally.requests) for b in dashboard.by_model] == [
        ("claude-test", 2),
        ("gpt-test", 1),
    ]
    assert [b.label for b in dashboard.by_key] == ["test"]
    assert {b.label: b.tally.requests for b in dashboard.by_source} == {
        "Chat Completions API": 1,
        "Anthropic Messages API": 1,
        "Web chat": 1,
    }
    assert dashboard.total.error_rate == pytest.approx(1 / 3)
    assert dashboard.total.ttft_p50 is not None
    data = response.context["chart_data"]
    assert [s["label"] for s in data["spend"]] == ["claude-test", "gpt-test"]
    assert len(data["labels"]) == 7


def test_a_model_filter_narrows_the_dashboard(client, customer):
    now = datetime.now(UTC)
    call(customer, "req_1", now)
    call(customer, "req_2", now, model="claude-test")
    client.force_login(customer.user)

    response = client.get("/billing/usage/", {"days": "1", "model": "claude-test"})

    assert response.context["dashboard"].total.requests == 1


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ({"days": "custom", "since": "2026-06-12", "until": "2026-06-10"}, "until", "before"),
        ({"days": "custom", "since": "2024-01-01", "until": "2026-06-10"}, "since", "at most"),
        ({"days": "custom", "since": "not-a-date"}, "since", "valid date"),
        ({"days": "12"}, "days", "valid choice"),
    ],
)
def test_a_bad_range_is_explained_and_the_default_shown(client, customer, query, field, message):
    client.force_login(customer.user)

    response = client.get("/billing/usage/", query)

    assert response.status_code == 200
    assert message in " ".join(response.context["form"].errors[field])
    assert response.context["dashboard"].span.days == 30


def test_anonymous_visitors_are_sent_to_sign_in(client):
    response = client.get("/billing/usage/")

    assert response.status_code == 302


def test_a_half_hour_zone_s_day_starts_at_the_first_whole_utc_hour():
    kolkata = zoneinfo.ZoneInfo("Asia/Kolkata")

    the_span = span(DAY, DAY, kolkata)

    # Midnight in Kolkata is 18:30 UTC the day before; the day's rollups start at 19:00.
    assert the_span.start == datetime(2026, 6, 9, 19, tzinfo=UTC)
    assert the_span.end == datetime(2026, 6, 10, 19, tzinfo=UTC)
    assert not the_span.offset_is_whole_hours
    assert span(DAY, DAY, TOKYO).offset_is_whole_hours


def test_a_day_across_a_dst_change_has_its_real_length():
    paris = zoneinfo.ZoneInfo("Europe/Paris")

    the_span = span(date(2026, 3, 29), date(2026, 3, 29), paris)

    assert the_span.end - the_span.start == timedelta(hours=23)


@pytest.mark.parametrize(
    ("counts", "q", "expected"),
    [
        ([0] * 13, 0.5, None),
        ([4] + [0] * 12, 0.5, 50.0),  # halfway through 0-100 ms
        ([0, 10] + [0] * 11, 0.95, 242.5),  # 95% of the way from 100 to 250 ms
        ([0] * 12 + [3], 0.5, float(LATENCY_BOUNDS_MS[-1])),  # the open bucket: its floor
        ([1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2], 0.5, 250.0),
    ],
)
def test_percentiles_come_from_the_histogram(counts, q, expected):
    assert percentile(counts, q) == expected


def test_htmx_can_ask_for_the_dashboard_alone(client, customer):
    call(customer, "req_1", datetime.now(UTC))
    client.force_login(customer.user)

    response = client.get(
        "/billing/usage/", {"days": "7"}, headers={"HX-Request": "true", "HX-Target": "dashboard"}
    )

    assert response.templates[0].name == "billing/_dashboard.html"
    assert b'id="usage-chart-data"' in response.content
    assert b"log-title" not in response.content  # the log is not rendered
