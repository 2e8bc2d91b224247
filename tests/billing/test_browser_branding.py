"""A reseller's branding in Chromium: balances and prices in its credit unit (ICO),
per-request prices on the pricing page, and the bonus tiers on the billing page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from gateway.models import Model
from tests.billing.test_browser import WIDTHS, fits_the_viewport, seed_catalog, signed_in_context
from tests.console.test_accessibility import AXE, RUN_AXE

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/work/shots/branding")


@pytest.fixture
def botstrapp(settings: Any) -> None:
    """Botstrapp's branding: ICO credit (1 ICO = $0.001) and per-message tiers."""
    settings.CREDIT_UNIT_NAME = "ICO"
    settings.CREDIT_UNIT_MICRO_USD = 1000
    seed_catalog()
    for model_id, tier in [("deepseek-chat", 9_000), ("gpt-4o-mini", 19_000)]:
        Model.objects.filter(id=model_id).update(request_price=tier)
    Model.objects.filter(id="claude-sonnet-4-5").update(request_price=49_000)


@pytest.mark.parametrize("device", list(WIDTHS))
def test_billing_shows_the_balance_in_ico_and_the_bonus_tiers(
    browser, localhost_url, fake_stripe, customer, default_packages, botstrapp, device
):
    width, height = WIDTHS[device]
    context = signed_in_context(browser, customer.user, localhost_url, width, height)
    context.add_init_script(path=str(AXE))
    page = context.new_page()
    SHOTS.mkdir(parents=True, exist_ok=True)

    page.goto(f"{localhost_url}/billing/")

    expect(page.get_by_test_id("balance")).to_have_text("10,000 ICO ($10.00)")
    tiers = page.get_by_role("table", name="Bonus tiers")
    expect(tiers.get_by_role("row")).to_have_count(4)
    expect(tiers.get_by_role("row", name="Ultra")).to_contain_text("+15% (15,000 ICO ($15.00))")
    assert fits_the_viewport(page)
    assert page.evaluate(RUN_AXE) == []
    page.screenshot(path=SHOTS / f"billing-{device}.png", full_page=True)
    page.locator("#buy-title").locator("xpath=..").screenshot(
        path=SHOTS / f"billing-packages-{device}.png"
    )
    context.close()


@pytest.mark.parametrize("device", list(WIDTHS))
def test_pricing_shows_token_and_request_prices_in_ico(
    browser, localhost_url, demo_catalog, botstrapp, device
):
    width, height = WIDTHS[device]
    context = browser.new_context(viewport={"width": width, "height": height})
    context.add_init_script(path=str(AXE))
    page = context.new_page()
    SHOTS.mkdir(parents=True, exist_ok=True)

    page.goto(f"{localhost_url}/pricing/")

    expect(page.locator("#credit-unit-note")).to_contain_text("1 ICO = $0.001")
    row = page.get_by_role("row", name="Claude Sonnet 4.5")
    expect(row.locator('[data-label="Per request"]')).to_have_text("49 ICO ($0.049)")
    expect(row.locator('[data-label="Input / 1M"]')).to_have_text("3,000 ICO ($3.00)")
    page.get_by_label("Sort by").select_option("request")
    expect(page.locator("#pricing-table tbody tr").first).to_contain_text("Switchboard Demo")
    expect(page.locator("#pricing-table tbody tr").nth(1)).to_contain_text("DeepSeek V3")
    assert fits_the_viewport(page)
    assert page.evaluate(RUN_AXE) == []
    page.screenshot(path=SHOTS / f"pricing-{device}.png", full_page=True)
    context.close()
