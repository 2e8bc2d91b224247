"""axe-core on every console page, signed out and signed in, at desktop and phone width:
no serious or critical violation.

axe-core 4.14.1 is vendored in tests/vendor/axe-core/ (it is only for tests). It goes in
through Playwright's init script, which the page's Content-Security-Policy does not
govern, so the pages are checked exactly as they are served.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from django.test import Client

from accounts.models import ApiKey
from billing.models import UsageRecord
from chat.models import Conversation
from tests.conftest import wait_for_htmx

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AXE = Path(__file__).resolve().parents[1] / "vendor" / "axe-core" / "axe.min.js"
WIDTHS = [1280, 390]
PUBLIC = [
    "/",
    "/pricing/",
    "/models/demo",
    "/docs/",
    "/docs/quickstart/",
    "/docs/clients/",
    "/docs/api/",
    "/docs/search/?q=stream",
    "/accounts/login/",
    "/accounts/signup/",
    "/accounts/password/reset/",
    "/no-such-page/",
]
SIGNED_IN = [
    "/",
    "/pricing/",
    "/models/demo",
    "/docs/quickstart/",
    "/account/",
    "/account/keys/",
    "/account/keys/?show=revoked",
    "/account/keys/{key}/edit/",
    "/account/delete/",
    "/accounts/email/",
    "/accounts/password/change/",
    "/accounts/2fa/",
    "/billing/",
    "/billing/usage/",
    "/billing/usage/req_axe/",
    "/billing/usage/settings/",
    "/billing/usage/?days=custom&since=2026-01-02&until=2026-01-01",
    "/chat/",
    "/chat/{conversation}/",
    "/documents/",
]
# Every rule axe runs by default (WCAG 2.0-2.2 A and AA, and best practices).
RUN_AXE = """async () => {
  const results = await axe.run(document, { resultTypes: ["violations"] });
  return results.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => {
      const where = v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", ");
      return `${v.impact} ${v.id}: ${v.help} at ${where}`;
    });
}"""


def violations(context: Any, url: str) -> list[str]:
    page = context.new_page()
    try:
        page.goto(url)
        wait_for_htmx(page)
        return [f"{url}: {found}" for found in page.evaluate(RUN_AXE)]
    finally:
        page.close()


def audited(browser: Any, width: int, cookies: list[dict[str, str]] | None = None) -> Any:
    context = browser.new_context(viewport={"width": width, "height": 900})
    context.add_init_script(path=str(AXE))
    if cookies:
        context.add_cookies(cookies)
    return context


@pytest.mark.parametrize("width", WIDTHS)
def test_the_public_pages_have_no_serious_violations(
    browser: Any, live_server_url: str, demo_catalog: None, width: int
) -> None:
    context = audited(browser, width)
    try:
        found = [v for path in PUBLIC for v in violations(context, live_server_url + path)]
    finally:
        context.close()
    assert found == [], "\n".join(found)


@pytest.mark.parametrize("width", WIDTHS)
def test_the_signed_in_pages_have_no_serious_violations(
    browser: Any, live_server_url: str, demo_catalog: None, customer: Any, width: int
) -> None:
    user = customer.user
    EmailAddress.objects.create(user=user, email=user.email, primary=True, verified=True)
    conversation = Conversation.objects.create(user=user, model="demo")
    key, _ = ApiKey.objects.mint(user=user, name="laptop", spend_cap_micro_usd=1_000_000)
    ApiKey.objects.mint(user=user, name="old")[0].revoke()
    UsageRecord.objects.create(
        request_id="req_axe", account=customer.account, api_key=key, model="demo", latency_ms=300
    )
    client = Client()
    client.force_login(user)
    session = {"name": "sessionid", "value": client.cookies["sessionid"].value}
    context = audited(browser, width, [{**session, "url": live_server_url}])
    try:
        found = [
            v
            for path in SIGNED_IN
            for v in violations(
                context, live_server_url + path.format(key=key.pk, conversation=conversation.pk)
            )
        ]
    finally:
        context.close()
    assert found == [], "\n".join(found)
