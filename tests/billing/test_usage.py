"""The usage dashboard: /billing/usage/, its request detail and its CSV export."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.utils import timezone

from billing.models import UsageRecord

pytestmark = pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume asynchronous")


@pytest.fixture
def records(customer, make_customer):
    def record(owner, request_id, **fields):
        defaults = {
            "model": "gpt-test",
            "provider": "primary",
            "prompt_tokens": 100,
            "completion_tokens": 50,
            "cost_micro_usd": 1_500,
            "latency_ms": 200,
            "ttft_ms": 40,
        }
        return UsageRecord.objects.create(
            request_id=request_id,
            account=owner.account,
            api_key=owner.api_key,
            **{**defaults, **fields},
        )

    stranger = make_customer()
    record(customer, "req_mine_1")
    record(customer, "req_mine_2", model="claude-test", cost_micro_usd=2_500, status="cancelled")
    record(customer, "req_old", created_at=timezone.now() - timedelta(days=60))
    record(stranger, "req_theirs", model="secret-model")
    return stranger


def test_the_owner_sees_totals_per_model_and_the_log(client, customer, records):
    client.force_login(customer.user)

    response = client.get("/billing/usage/")

    assert response.status_code == 200
    summary = response.context["summary"]
    assert summary["requests"] == 2
    assert summary["spent_micro_usd"] == 4_000
    assert summary["errors"] == 1
    assert [row["model"] for row in response.context["models"]] == ["claude-test", "gpt-test"]
    ids = {r.request_id for r in response.context["page"].rows}
    assert ids == {"req_mine_1", "req_mine_2"}
    assert sum(day.spent_micro_usd for day in response.context["chart"].days) == 4_000
    assert b"secret-model" not in response.content


def test_a_longer_period_includes_older_requests(client, customer, records):
    client.force_login(customer.user)

    response = client.get("/billing/usage/", {"days": 90})

    assert response.context["summary"]["requests"] == 3


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"model": "claude-test"}, {"req_mine_2"}),
        ({"status": "ok"}, {"req_mine_1"}),
        ({"status": "cancelled", "model": "gpt-test"}, set()),
    ],
)
def test_filters_narrow_the_log(client, customer, records, query, expected):
    client.force_login(customer.user)

    response = client.get("/billing/usage/", query)

    assert {r.request_id for r in response.context["page"].rows} == expected


def test_a_filter_for_another_users_key_shows_nothing_of_theirs(client, customer, records):
    client.force_login(customer.user)

    response = client.get("/billing/usage/", {"key": records.api_key.pk})

    assert response.status_code == 200
    assert "req_theirs" not in {r.request_id for r in response.context["page"].rows}


def test_an_htmx_page_change_renders_only_the_log(client, customer, records):
    client.force_login(customer.user)

    response = client.get(
        "/billing/usage/", headers={"HX-Request": "true", "HX-Target": "usage-log"}
    )

    assert response.templates[0].name == "billing/_usage_log.html"


def test_the_detail_page_shows_one_request_of_the_owner(client, customer, records):
    client.force_login(customer.user)

    response = client.get("/billing/usage/req_mine_2/")

    assert response.status_code == 200
    assert response.context["record"].model == "claude-test"


def test_another_users_request_is_not_found(client, customer, records):
    client.force_login(customer.user)

    assert client.get("/billing/usage/req_theirs/").status_code == 404


def test_the_csv_has_the_filtered_rows(client, customer, records):
    client.force_login(customer.user)

    response = client.get("/billing/usage.csv", {"model": "gpt-test"})

    rows = list(csv.DictReader(io.StringIO(b"".join(response).decode())))
    assert response["Content-Type"] == "text/csv"
    assert [row["request_id"] for row in rows] == ["req_mine_1"]
    assert rows[0]["cost_micro_usd"] == "1500"


@pytest.mark.parametrize(
    "path", ["/billing/usage/", "/billing/usage/req_mine_1/", "/billing/usage.csv"]
)
def test_anonymous_visitors_are_sent_to_sign_in(client, records, path):
    response = client.get(path)

    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]
