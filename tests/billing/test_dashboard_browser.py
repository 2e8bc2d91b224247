"""The usage dashboard and the operator page in headless Chromium, with synthetic data.

Screenshots at 1280 and 390 px go to /work/shots/usagedata/ (SHOTS_DIR overrides), to be
looked at; the test itself checks what a person would: the charts are drawn, a range
change redraws them through htmx, the phone layout does not scroll sideways, and no
page breaks the Content-Security-Policy (tests/conftest.py's browser fixture).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from playwright.sync_api import expect

from accounts.models import User
from billing.models import UsageRecord

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path(os.environ.get("SHOTS_DIR", "/work/shots/usagedata"))
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}


@pytest.fixture
def busy_user() -> User:
    """The busiest of three synthetic accounts (3,000 calls over 30 days), in Tokyo."""
    call_command("makeusage", "3000", "--accounts", "3", "--days", "30", verbosity=0)
    top = UsageRecord.objects.values_list("account__user", flat=True).order_by("account")[0]
    user = User.objects.get(pk=top)
    user.time_zone = "Asia/Tokyo"
    user.save(update_fields=["time_zone"])
    return user


def signed_in(browser: Any, user: Any, base_url: str, width: int, height: int) -> Any:
    client = Client()
    client.force_login(user)
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(15_000)
    context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": base_url}]
    )
    return context


def until(page: Any, expression: str, seconds: float = 15) -> None:
    """Wait (bounded) for a JavaScript expression to be true. Not wait_for_function: it
    compiles its predicate with eval, which the pages' CSP refuses."""
    deadline = time.monotonic() + seconds
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {seconds} s: {expression}")
        page.wait_for_timeout(100)


def drawn_charts(page: Any) -> int:
    return page.evaluate(
        "[...document.querySelectorAll('canvas[data-chart]')]"
        ".filter(c => window.Chart.getChart(c)).length"
    )


@pytest.mark.parametrize("size", WIDTHS)
def test_the_usage_dashboard_draws_its_charts_and_fits_the_screen(
    browser, live_server_url, busy_user, size
):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = signed_in(browser, busy_user, live_server_url, *WIDTHS[size]).new_page()

    page.goto(f"{live_server_url}/billing/usage/")

    expect(page.get_by_role("heading", name="Spend per day, by model")).to_be_visible()
    until(page, "window.Chart !== undefined")
    assert drawn_charts(page) == 3
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert "days in Asia/Tokyo" in page.locator(".period-note").inner_text()

    page.get_by_label("Period", exact=True).select_option("7")
    expect(page).to_have_url(re.compile(r"/billing/usage/\?days=7\b"))
    until(
        page,
        "[...document.querySelectorAll('canvas[data-chart]')]"
        ".every(c => window.Chart.getChart(c)"
        " && window.Chart.getChart(c).data.labels.length === 7)",
    )
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    # Screenshots last: Playwright's own styling of the page for them is no page's doing.
    page.screenshot(path=SHOTS / f"usage-7-days-{size}.png", full_page=True)
    page.goto(f"{live_server_url}/billing/usage/")
    until(page, "window.Chart !== undefined")
    page.screenshot(path=SHOTS / f"usage-{size}.png", full_page=True)
    page.locator("#dashboard").screenshot(path=SHOTS / f"usage-dashboard-{size}.png")


def test_the_spend_table_behind_the_chart_has_the_chart_s_days(browser, live_server_url, busy_user):
    page = signed_in(browser, busy_user, live_server_url, 1280, 900).new_page()
    page.goto(f"{live_server_url}/billing/usage/?days=7")

    page.get_by_text("Spend as a table").click()

    rows = page.locator("#spend-chart-title ~ details tbody tr")
    expect(rows.first).to_be_visible()
    assert 1 <= rows.count() <= 7


@pytest.mark.parametrize("size", WIDTHS)
def test_the_operator_page_draws_its_charts_and_fits_the_screen(
    browser, live_server_url, busy_user, size
):
    SHOTS.mkdir(parents=True, exist_ok=True)
    operator = User.objects.create_user("operator@example.com", "pw-123-secret", is_staff=True)
    page = signed_in(browser, operator, live_server_url, *WIDTHS[size]).new_page()

    page.goto(f"{live_server_url}/ops/")

    expect(page.get_by_role("heading", name="Revenue, spend and margin per day")).to_be_visible()
    until(page, "window.Chart !== undefined")
    until(page, "document.querySelectorAll('canvas[data-chart]').length === 2")
    assert drawn_charts(page) == 2
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.get_by_role("button", name="Check the books now").click()
    expect(page.locator("#books")).to_contain_text("Balanced")
    page.screenshot(path=SHOTS / f"ops-{size}.png", full_page=True)
