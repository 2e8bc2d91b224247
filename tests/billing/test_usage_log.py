"""The request log on /billing/usage/: filters, keyset pages, time zones, htmx."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from billing import usage
from billing.models import UsageRecord
from billing.usage import cursor_of, log_page


@pytest.fixture
def record(customer):
    def make(request_id, owner=None, **fields):
        owner = owner or customer
        defaults = {"model": "gpt-test", "provider": "primary", "cost_micro_usd": 1_000}
        return UsageRecord.objects.create(
            request_id=request_id,
            account=owner.account,
            api_key=owner.api_key,
            **{**defaults, **fields},
        )

    return make


def ids(response):
    return [r.request_id for r in response.context["page"].rows]


def test_the_log_shows_refused_calls_with_their_status_and_code(client, customer, record):
    record("req_ok")
    record(
        "req_refused",
        status="refused",
        http_status=402,
        error_code="insufficient_credits",
        model="gpt-test",
    )
    client.force_login(customer.user)

    response = client.get("/billing/usage/")

    assert ids(response) == ["req_refused", "req_ok"]
    assert b"402 insufficient_credits" in response.content


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status": "refused"}, ["req_refused"]),
        ({"source": "web"}, ["req_web"]),
        ({"source": "messages", "model": "claude-test"}, ["req_claude"]),
        ({"q": "req_claude"}, ["req_claude"]),
        ({"q": " req_claude "}, ["req_claude"]),
        ({"q": "req_old"}, ["req_old"]),
        ({"q": "req_theirs"}, []),
        ({"q": "no such id; DROP TABLE"}, []),
    ],
)
def test_filters_and_search_narrow_the_log(
    client, customer, make_customer, record, query, expected
):
    record("req_ok")
    record("req_refused", status="refused", http_status=429)
    record("req_web", source="web")
    record("req_claude", source="messages", model="claude-test")
    record("req_old", created_at=timezone.now() - timedelta(days=200))
    record("req_theirs", owner=make_customer())
    client.force_login(customer.user)

    response = client.get("/billing/usage/", query)

    assert response.status_code == 200
    assert ids(response) == expected


def test_a_completion_id_finds_its_request(client, customer, record):
    record("req_0123456789abcdef01234567")
    client.force_login(customer.user)

    response = client.get("/billing/usage/", {"q": "chatcmpl-0123456789abcdef01234567"})

    assert ids(response) == ["req_0123456789abcdef01234567"]


@pytest.mark.parametrize(
    "query",
    [
        {"days": "abc"},
        {"days": "custom", "since": "garbage"},
        {"key": "not-a-number"},
        {"after": "12-x"},
        {"before": "99999999999999999999-1"},
        {"after": "999999999999999999-1"},
        {"status": "nonsense", "source": "nonsense"},
        {"q": "x" * 500},
        {"days": "custom", "since": "2026-01-01", "until": "2025-01-01"},
        {"days": "custom", "since": "2000-01-01", "until": "2026-01-01"},
    ],
)
def test_bad_filters_are_answered_not_crashed_on(client, customer, record, query):
    record("req_ok")
    client.force_login(customer.user)

    response = client.get("/billing/usage/", query)

    assert response.status_code == 200


def test_an_end_before_the_start_is_shown_as_an_error(client, customer):
    client.force_login(customer.user)

    response = client.get(
        "/billing/usage/", {"days": "custom", "since": "2026-03-02", "until": "2026-03-01"}
    )

    assert "The end date is before the start date." in response.content.decode()


def test_a_user_at_utc_plus_9_sees_days_split_at_their_midnight(client, customer, record):
    record("req_late_nov_30", created_at=datetime(2026, 11, 30, 14, 30, tzinfo=UTC))  # 23:30 JST
    record("req_early_dec_1", created_at=datetime(2026, 11, 30, 15, 30, tzinfo=UTC))  # 00:30 JST
    client.force_login(customer.user)
    day = {"days": "custom", "since": "2026-12-01", "until": "2026-12-01"}

    with timezone.override("Asia/Tokyo"):
        in_tokyo = client.get("/billing/usage/", day)
    in_utc = client.get("/billing/usage/", {**day, "since": "2026-11-30", "until": "2026-11-30"})

    assert ids(in_tokyo) == ["req_early_dec_1"]
    assert "Asia/Tokyo" in in_tokyo.content.decode()
    assert b"Dec 1, 00:30:00" in in_tokyo.content
    assert ids(in_utc) == ["req_early_dec_1", "req_late_nov_30"]


def test_today_starts_at_the_users_midnight(customer, record):
    with timezone.override("Asia/Tokyo"):
        form = usage.UsageFilterForm(
            {"days": "1"}, user=customer.user, account_id=customer.account.pk
        )
        period = form.period()
        midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)

    assert period.start == midnight
    assert period.end - period.start == timedelta(days=1)


@pytest.fixture
def five(record):
    """Five records a second apart, newest last; the log shows them newest first."""
    start = timezone.now() - timedelta(minutes=5)
    return [record(f"req_{n}", created_at=start + timedelta(seconds=n)) for n in range(5)]


def test_keyset_pages_walk_the_log_and_back(client, customer, five, monkeypatch):
    monkeypatch.setattr(usage, "PAGE_SIZE", 2)
    client.force_login(customer.user)

    first = client.get("/billing/usage/")
    assert ids(first) == ["req_4", "req_3"]
    assert first.context["page"].newer is None
    second = client.get("/billing/usage/", {"after": first.context["page"].older})
    assert ids(second) == ["req_2", "req_1"]
    last = client.get("/billing/usage/", {"after": second.context["page"].older})
    assert ids(last) == ["req_0"]
    assert last.context["page"].older is None
    back = client.get("/billing/usage/", {"before": last.context["page"].newer})
    assert ids(back) == ["req_2", "req_1"]
    top = client.get("/billing/usage/", {"before": back.context["page"].newer})
    assert ids(top) == ["req_4", "req_3"]
    assert top.context["page"].newer is None


def test_a_request_logged_between_pages_neither_repeats_nor_skips_a_row(
    client, customer, five, record, monkeypatch
):
    monkeypatch.setattr(usage, "PAGE_SIZE", 2)
    client.force_login(customer.user)
    first = client.get("/billing/usage/")

    record("req_new")
    second = client.get("/billing/usage/", {"after": first.context["page"].older})

    assert ids(second) == ["req_2", "req_1"]
    assert ids(client.get("/billing/usage/")) == ["req_new", "req_4"]


def test_rows_of_the_same_instant_are_ordered_by_id(customer, record):
    at = timezone.now()
    rows = [record(f"req_same_{n}", created_at=at) for n in range(3)]
    records = UsageRecord.objects.for_account(customer.account.pk)

    first = log_page(records, size=2)
    second = log_page(records, after=first.older, size=2)

    assert [r.pk for r in first.rows] == [rows[2].pk, rows[1].pk]
    assert [r.pk for r in second.rows] == [rows[0].pk]
    assert first.older == cursor_of(rows[1])


def test_an_htmx_page_change_renders_only_the_log_and_links_keep_the_filters(
    client, customer, five, monkeypatch
):
    monkeypatch.setattr(usage, "PAGE_SIZE", 2)
    client.force_login(customer.user)

    response = client.get(
        "/billing/usage/",
        {"model": "gpt-test"},
        headers={"HX-Request": "true", "HX-Target": "usage-log"},
    )

    assert response.templates[0].name == "billing/_usage_log.html"
    html = response.content.decode()
    assert f'hx-get="?model=gpt-test&amp;after={response.context["page"].older}"' in html
    assert 'hx-push-url="true"' in html


def test_the_log_never_counts_or_offsets(customer, five):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    records = UsageRecord.objects.for_account(customer.account.pk)
    with CaptureQueriesContext(connection) as queries:
        log_page(records, after=cursor_of(five[3]), size=2)

    (query,) = queries.captured_queries
    assert "OFFSET" not in query["sql"].upper()
    assert "COUNT(" not in query["sql"].upper()


def test_the_model_filter_lists_the_accounts_models_only(customer, make_customer, record):
    record("req_a", model="b-model")
    record("req_b", model="a-model")
    record("req_c", model="b-model")
    record("req_d", model="secret-model", owner=make_customer())

    assert UsageRecord.objects.models_used(customer.account.pk) == ["a-model", "b-model"]


def test_staff_see_their_own_log_only(client, customer, make_customer, record):
    staff = make_customer()
    staff.user.is_staff = True
    staff.user.save()
    record("req_customer")
    record("req_staff", owner=staff)
    client.force_login(staff.user)

    assert ids(client.get("/billing/usage/")) == ["req_staff"]


def test_an_htmx_filter_change_pushes_a_short_shareable_url(client, customer, record):
    record("req_ok")
    client.force_login(customer.user)
    query = {"days": "7", "since": "2026-01-01", "until": "", "key": "", "status": "refused"}

    response = client.get("/billing/usage/", query, headers={"HX-Request": "true"})

    assert response["HX-Push-Url"] == "/billing/usage/?days=7&status=refused"
    assert 'href="/billing/usage.csv?days=7&amp;status=refused"' in response.content.decode()


def test_a_page_change_pushes_its_cursor(client, customer, five, monkeypatch):
    monkeypatch.setattr(usage, "PAGE_SIZE", 2)
    client.force_login(customer.user)
    cursor = cursor_of(five[3])

    response = client.get(
        "/billing/usage/",
        {"after": cursor, "model": ""},
        headers={"HX-Request": "true", "HX-Target": "usage-log"},
    )

    assert response["HX-Push-Url"] == f"/billing/usage/?after={cursor}"
