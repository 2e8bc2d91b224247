"""The Billing and Pricing pages in headless Chromium, against the live ASGI server."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.test import Client
from django.utils import timezone
from playwright.sync_api import expect

from billing.models import LedgerEntry, Purchase
from gateway.models import Model, Provider, Route
from tests.billing.fake_stripe import event, signed

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots-billing")
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}


def signed_in_context(browser: Any, user: Any, base_url: str, width: int, height: int) -> Any:
    """A browser context carrying a session cookie for `user` (no trip through allauth)."""
    client = Client()
    client.force_login(user)
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(10_000)
    context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": base_url}]
    )
    return context


def fits_the_viewport(page: Any) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_buying_a_package_credits_the_account_once_the_webhook_arrives(
    browser, localhost_url, fake_stripe, customer, default_packages
):
    context = signed_in_context(browser, customer.user, localhost_url, 1280, 900)
    page = context.new_page()
    page.goto(f"{localhost_url}/billing/")
    expect(page.get_by_test_id("balance")).to_have_text("$10.00")

    page.get_by_role("button", name="Buy Starter").click()
    page.wait_for_url(f"{fake_stripe.url}/pay/**")
    expect(page.get_by_role("heading", name="Fake Stripe Checkout")).to_be_visible()
    purchase = Purchase.objects.get()
    assert purchase.status == Purchase.Status.PENDING

    page.get_by_role("link", name="Pay").click()
    page.wait_for_url(f"{localhost_url}/billing/checkout/success/**")
    expect(page.get_by_text("Waiting for Stripe to confirm your payment")).to_be_visible()
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=SHOTS / "success-waiting-desktop.png", full_page=True)

    body, signature = signed(
        event("checkout.session.completed", fake_stripe.paid(purchase.stripe_session_id))
    )
    delivered = httpx.post(
        f"{localhost_url}/billing/stripe/webhook",
        content=body,
        headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
    )
    assert delivered.status_code == 200

    expect(page.get_by_test_id("credited")).to_have_text("$5.00 was added to your account.")
    expect(page.get_by_test_id("new-balance")).to_have_text("$15.00")
    page.screenshot(path=SHOTS / "success-credited-desktop.png", full_page=True)
    page.get_by_role("link", name="Back to billing").click()
    expect(page.get_by_test_id("balance")).to_have_text("$15.00")
    expect(page.get_by_role("cell", name="Starter package via Stripe ($5.00 paid)")).to_be_visible()
    context.close()


def test_redeeming_a_code_updates_the_balance_in_place(browser, localhost_url, customer):
    from billing.models import RedemptionCode

    RedemptionCode.objects.create(code="HELLO-WORLD", amount_micro_usd=3_000_000)
    context = signed_in_context(browser, customer.user, localhost_url, 390, 844)
    page = context.new_page()
    page.goto(f"{localhost_url}/billing/")

    page.get_by_label("Redemption code").fill("hello-world")
    page.get_by_role("button", name="Redeem").click()

    expect(page.get_by_text("Added $3.00 to your balance.")).to_be_visible()
    expect(page.get_by_test_id("balance")).to_have_text("$13.00")
    context.close()


def test_the_unlimited_switch_saves_in_place_and_keeps_focus(browser, localhost_url, customer):
    context = signed_in_context(browser, customer.user, localhost_url, 1280, 900)
    page = context.new_page()
    page.goto(f"{localhost_url}/billing/")

    page.get_by_role("switch", name="Lift the rate limits on all my keys").check()

    expect(page.get_by_text("Your keys are not rate limited.")).to_be_visible()
    expect(page.get_by_role("switch")).to_be_focused()
    customer.account.refresh_from_db()
    assert customer.account.unlimited
    context.close()


def seed_spend(account: Any) -> None:
    now = timezone.now()
    for days_ago, amount in [(0, 420_000), (1, 1_250_000), (2, 300_000), (5, 2_100_000)]:
        for n in range(3):
            LedgerEntry.objects.create(
                account=account,
                kind=LedgerEntry.Kind.USAGE,
                amount_micro_usd=-(amount // 3),
                idempotency_key=f"shot:{days_ago}:{n}",
                memo="demo",
                created_at=now - timedelta(days=days_ago, minutes=n),
            )


def seed_catalog() -> None:
    alpha = Provider.objects.create(name="alpha", kind="openai", base_url="http://127.0.0.1:9")
    beta = Provider.objects.create(name="beta", kind="openai", base_url="http://127.0.0.1:9")
    for model_id, title, prices, context, providers in [
        ("gpt-4o-mini", "GPT-4o mini", (150_000, 600_000), 128_000, [alpha, beta]),
        ("claude-sonnet-4-5", "Claude Sonnet 4.5", (3_000_000, 15_000_000), 200_000, [beta]),
        ("deepseek-chat", "DeepSeek V3", (270_000, 1_100_000), 64_000, [alpha]),
    ]:
        model = Model.objects.create(
            id=model_id,
            title=title,
            input_price=prices[0],
            output_price=prices[1],
            context_length=context,
        )
        for provider in providers:
            Route.objects.create(model=model, provider=provider, upstream_model=model_id)


@pytest.mark.parametrize("device", list(WIDTHS))
def test_billing_and_pricing_fit_desktop_and_phone_widths(
    browser, localhost_url, fake_stripe, customer, default_packages, demo_catalog, device
):
    seed_spend(customer.account)
    seed_catalog()
    width, height = WIDTHS[device]
    context = signed_in_context(browser, customer.user, localhost_url, width, height)
    page = context.new_page()
    SHOTS.mkdir(exist_ok=True)

    page.goto(f"{localhost_url}/billing/")
    expect(page.locator("svg.spend-chart rect.bar")).to_have_count(30)
    assert fits_the_viewport(page)
    page.screenshot(path=SHOTS / f"billing-{device}.png", full_page=True)
    page.locator(".packages").screenshot(path=SHOTS / f"billing-packages-{device}.png")
    page.locator("svg.spend-chart").screenshot(path=SHOTS / f"billing-chart-{device}.png")

    page.goto(f"{localhost_url}/pricing/")
    expect(page.get_by_role("status").filter(has_text="4 models")).to_be_visible()
    page.get_by_label("Search models").fill("claude")
    expect(page.get_by_role("status").filter(has_text="1 model matching")).to_be_visible()
    page.get_by_label("Search models").fill("")
    page.get_by_label("Sort by").select_option("input")
    expect(page.locator("#pricing-table tbody tr").first).to_contain_text("GPT-4o mini")
    assert fits_the_viewport(page)
    page.screenshot(path=SHOTS / f"pricing-{device}.png", full_page=True)
    context.close()
