"""Every console page in headless Chromium under the Content-Security-Policy.

Each page must load with its stylesheet applied and htmx running, and without one
policy violation in the console (tests/conftest.py's `browser` collects them; the
autouse `_no_csp_violations` fails the test). Screenshots go to /tmp/shots-console.
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

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots-console")
PUBLIC = ["/", "/pricing/", "/docs/quickstart/", "/accounts/login/", "/accounts/signup/"]
SIGNED_IN = [
    "/account/",
    "/account/keys/",
    "/account/delete/",
    "/accounts/email/",
    "/accounts/password/change/",
    "/accounts/2fa/",
    "/accounts/2fa/totp/activate/",
    "/accounts/2fa/webauthn/",
    "/billing/",
    "/billing/usage/",
    "/billing/usage/req_browser_pages/",
    "/chat/",
    "/chat/{conversation}/",
    "/admin/",
    "/admin/billing/account/",
    "/admin/accounts/user/{user}/change/",
]


def open_page(context: Any, url: str) -> Any:
    page = context.new_page()
    response = page.goto(url)
    assert response is not None and response.status == 200, url
    page.wait_for_load_state("networkidle")
    # site.css is applied (a blocked stylesheet would leave the default white margin).
    assert page.evaluate("getComputedStyle(document.body).margin") == "0px" or "/admin/" in url
    return page


@pytest.mark.parametrize("path", PUBLIC)
def test_a_public_page_runs_within_the_policy(
    browser: Any, live_server_url: str, demo_catalog: None, path: str
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = open_page(context, live_server_url + path)
        assert page.evaluate("typeof window.htmx") == "object"
    finally:
        context.close()


def test_every_signed_in_page_runs_within_the_policy(
    browser: Any, live_server_url: str, demo_catalog: None, customer: Any
) -> None:
    user = customer.user
    user.is_staff = user.is_superuser = True
    user.save()
    EmailAddress.objects.create(user=user, email=user.email, primary=True, verified=True)
    # A pending change of address: allauth's page then shows its hidden re-send form.
    EmailAddress.objects.create(user=user, email="new-address@example.com", verified=False)
    conversation = Conversation.objects.create(user=user, model="demo")
    ApiKey.objects.mint(user=user, name="laptop", can_manage=True)
    UsageRecord.objects.create(
        request_id="req_browser_pages", account=customer.account, model="demo"
    )
    client = Client()
    client.force_login(user)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_cookies(
        [
            {
                "name": "sessionid",
                "value": client.cookies["sessionid"].value,
                "url": live_server_url,
            }
        ]
    )
    SHOTS.mkdir(exist_ok=True)
    try:
        for path in SIGNED_IN:
            url = live_server_url + path.format(conversation=conversation.pk, user=user.pk)
            page = open_page(context, url)
            name = path.strip("/").replace("/", "-").format(conversation="c", user="u") or "home"
            page.screenshot(path=SHOTS / f"{name}.png", full_page=True)
            page.close()
    finally:
        context.close()
