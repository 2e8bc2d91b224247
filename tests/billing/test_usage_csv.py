"""The request log as CSV: every row of the filter, streamed in keyset batches."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing import views
from billing.models import UsageRecord

# The sync test client reads the async stream by collecting it, and says so.
pytestmark = pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume asynchronous")


@pytest.fixture
def seven(customer, make_customer):
    start = timezone.now() - timedelta(hours=1)
    rows = [
        UsageRecord.objects.create(
            request_id=f"req_{n}",
            account=customer.account,
            api_key=customer.api_key,
            model="gpt-test" if n % 2 else "claude-test",
            provider="primary",
            status="refused" if n == 6 else "ok",
            http_status=429 if n == 6 else None,
            error_code="rate_limit_exceeded" if n == 6 else "",
            finish_reason="" if n == 6 else "stop",
            prompt_tokens=10 * n,
            completion_tokens=n,
            cost_micro_usd=100 * n,
            latency_ms=200,
            ttft_ms=None if n == 6 else 40,
            created_at=start + timedelta(minutes=n),
        )
        for n in range(7)
    ]
    stranger = make_customer()
    UsageRecord.objects.create(request_id="req_theirs", account=stranger.account, model="x")
    return rows


def read(response):
    return list(csv.DictReader(io.StringIO(b"".join(response).decode())))


def test_the_csv_has_every_matching_row_newest_first_with_all_columns(client, customer, seven):
    client.force_login(customer.user)

    response = client.get("/billing/usage.csv")

    rows = read(response)
    assert response["Content-Type"] == "text/csv"
    assert [r["request_id"] for r in rows] == [f"req_{n}" for n in range(6, -1, -1)]
    assert list(rows[0]) == views.CSV_COLUMNS
    refused = rows[0]
    assert (refused["status"], refused["http_status"], refused["error_code"]) == (
        "refused",
        "429",
        "rate_limit_exceeded",
    )
    assert refused["ttft_ms"] == ""
    assert rows[1]["cost_micro_usd"] == "500"
    assert rows[1]["finish_reason"] == "stop"
    assert rows[1]["key"] == "test"


def test_the_csv_follows_the_filters(client, customer, seven):
    client.force_login(customer.user)

    rows = read(client.get("/billing/usage.csv", {"model": "gpt-test", "status": "ok"}))

    assert [r["request_id"] for r in rows] == ["req_5", "req_3", "req_1"]


def test_the_csv_is_read_in_keyset_batches(client, customer, seven, monkeypatch):
    monkeypatch.setattr(views, "CSV_BATCH_SIZE", 3)
    client.force_login(customer.user)

    with CaptureQueriesContext(connection) as queries:
        rows = read(client.get("/billing/usage.csv"))

    assert len(rows) == 7
    reads = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith("SELECT") and '"billing_usagerecord"."request_id"' in q["sql"]
    ]
    # 7 rows, 3 a batch (each asks for one more to know if another follows).
    assert len(reads) == 3
    assert all("LIMIT 4" in sql for sql in reads)
    assert not any("OFFSET" in sql for sql in reads)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_the_csv_streams_as_an_async_iterator_under_asgi(async_client, customer, seven):
    """Django collects a sync iterator into one list under ASGI; an async one streams."""
    await async_client.aforce_login(customer.user)

    response = await async_client.get("/billing/usage.csv")

    assert response.streaming and response.is_async
    body = b"".join([part async for part in response.streaming_content])
    assert body.count(b"\r\n") == 8


def test_times_are_in_the_users_time_zone(client, customer):
    UsageRecord.objects.create(
        request_id="req_tz",
        account=customer.account,
        model="m",
        created_at=datetime(2026, 11, 30, 15, 30, tzinfo=UTC),
    )
    client.force_login(customer.user)

    with timezone.override("Asia/Tokyo"):
        response = client.get(
            "/billing/usage.csv", {"days": "custom", "since": "2026-12-01", "until": "2026-12-01"}
        )
        rows = read(response)

    assert rows[0]["time"] == "2026-12-01T00:30:00+09:00"
    assert 'filename="usage-2026-12-01-to-2026-12-01.csv"' in response["Content-Disposition"]


def test_another_users_rows_never_appear(client, make_customer, seven):
    stranger = make_customer()
    client.force_login(stranger.user)

    assert read(client.get("/billing/usage.csv")) == []
