"""The request log and a request's page in headless Chromium, at 1280 and 390 px."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from billing import usage
from billing.models import RequestContent, UsageRecord
from tests.billing.test_browser import WIDTHS, fits_the_viewport, signed_in_context

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/work/shots/logs") if Path("/work/shots").is_dir() else Path("/tmp/shots-logs")
ROUTES = [
    {
        "provider": "openai-primary",
        "upstream_model": "gpt-4o-2024-11-20",
        "start_ms": 2,
        "duration_ms": 5012,
        "ok": False,
        "error": "openai-primary answered HTTP 503: upstream overloaded, try again later",
    },
    {
        "provider": "azure-mirror-westeurope",
        "upstream_model": "gpt-4o",
        "start_ms": 5015,
        "duration_ms": 830,
        "ok": True,
        "error": "",
    },
]


@pytest.fixture
def log(customer):
    now = timezone.now()
    kinds = [
        {"status": "ok", "finish_reason": "stop"},
        {"status": "refused", "http_status": 429, "error_code": "rate_limit_exceeded"},
        {"status": "ok", "finish_reason": "tool_calls", "source": "messages"},
        {"status": "error", "error": "upstream_unavailable"},
        {"status": "ok", "finish_reason": "length", "source": "web"},
        {"status": "refused", "http_status": 402, "error_code": "insufficient_credits"},
        {"status": "cancelled", "finish_reason": ""},
    ]
    rows = []
    for n in range(12):
        kind = kinds[n % len(kinds)]
        rows.append(
            UsageRecord.objects.create(
                request_id=f"req_{n:024x}",
                account=customer.account,
                api_key=customer.api_key,
                model="claude-sonnet-4-5-20250929-with-a-long-name" if n % 3 else "gpt-4o",
                provider="" if kind["status"] == "refused" else "openai-primary",
                prompt_tokens=0 if kind["status"] == "refused" else 12_345 + n,
                completion_tokens=0 if kind["status"] == "refused" else 678,
                cost_micro_usd=0 if kind["status"] == "refused" else 41_234,
                reserved_micro_usd=0 if kind["status"] == "refused" else 90_000,
                latency_ms=1_234,
                ttft_ms=None if kind["status"] == "refused" else 321,
                unit_prices={"input": 2_500_000, "output": 10_000_000, "cache_read": 1_250_000},
                cached_tokens=4_000,
                route_log=ROUTES,
                created_at=now - timedelta(minutes=n),
                **kind,
            )
        )
    return rows


@pytest.mark.parametrize("width", ["desktop", "phone"])
def test_the_request_log_fits_and_filters_keep_the_url(
    browser, localhost_url, customer, log, width, monkeypatch
):
    monkeypatch.setattr(usage, "PAGE_SIZE", 5)
    context = signed_in_context(browser, customer.user, localhost_url, *WIDTHS[width])
    page = context.new_page()
    page.goto(f"{localhost_url}/billing/usage/")
    expect(page.locator("#log-title")).to_be_visible()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / f"log-{width}.png", full_page=True)
    page.locator("#usage-log").screenshot(path=SHOTS / f"log-rows-{width}.png")
    assert fits_the_viewport(page)

    page.get_by_label("Status").select_option("refused")
    expect(page).to_have_url(f"{localhost_url}/billing/usage/?days=30&status=refused")
    expect(page.locator(".usage-log tbody tr")).to_have_count(3)
    expect(page.get_by_text("429 rate_limit_exceeded").first).to_be_visible()

    page.get_by_label("Status").select_option("")
    page.get_by_role("link", name="Older →").click()
    expect(page).to_have_url(re.compile(r"/billing/usage/\?days=30&after=\d+-\d+$"))
    expect(page.locator(".usage-log tbody tr")).to_have_count(5)
    page.reload()
    expect(page.locator(".usage-log tbody tr")).to_have_count(5)
    expect(page.get_by_role("link", name="← Newer")).to_be_visible()

    page.get_by_label("Period", exact=True).select_option("custom")
    expect(page.get_by_label("From", exact=True)).to_be_visible()
    page.screenshot(path=SHOTS / f"log-custom-{width}.png", full_page=True)
    assert fits_the_viewport(page)
    context.close()


@pytest.mark.parametrize("width", ["desktop", "phone"])
def test_a_requests_page_fits_with_its_attempts_costs_and_messages(
    browser, localhost_url, customer, log, width
):
    record = log[0]
    RequestContent.objects.create(
        usage=record,
        account=customer.account,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Explain " + "x" * 300 + " <b>not bold</b>"},
        ],
        response="A long answer line without spaces: " + "y" * 200,
    )
    context = signed_in_context(browser, customer.user, localhost_url, *WIDTHS[width])
    page = context.new_page()
    page.goto(f"{localhost_url}/billing/usage/{record.request_id}/")
    expect(page.get_by_role("heading", name="Routes tried")).to_be_visible()
    expect(page.get_by_text("fell back to the next route")).to_be_visible()
    expect(page.get_by_text("<b>not bold</b>", exact=False)).to_be_visible()
    page.screenshot(path=SHOTS / f"detail-{width}.png", full_page=True)
    assert fits_the_viewport(page)
    context.close()


def test_the_usage_settings_page_saves_and_fits_a_phone(browser, localhost_url, customer):
    context = signed_in_context(browser, customer.user, localhost_url, *WIDTHS["phone"])
    page = context.new_page()
    page.goto(f"{localhost_url}/billing/usage/settings/")
    page.get_by_label("Keep the messages and answer of each request").check()
    page.get_by_label("E-mail me when my balance falls below (USD)").fill("0")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_role("alert")).to_contain_text("greater than or equal to 0.01")
    page.screenshot(path=SHOTS / "settings-error-phone.png", full_page=True)
    assert fits_the_viewport(page)

    page.get_by_label("E-mail me when my balance falls below (USD)").fill("2.50")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("Usage settings saved.")).to_be_visible()
    page.screenshot(path=SHOTS / "settings-phone.png", full_page=True)
    customer.account.refresh_from_db()
    assert customer.account.store_content is True
    assert customer.account.alert_balance_below_micro_usd == 2_500_000
    context.close()
