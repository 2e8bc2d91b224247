"""A key created in the Keys page works with the openai SDK until it is revoked there."""

from __future__ import annotations

import openai
import pytest
from playwright.sync_api import expect

from accounts.models import ApiKey

from .conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def ask(base_url: str, secret: str) -> str:
    client = openai.OpenAI(base_url=base_url, api_key=secret, max_retries=0, timeout=10)
    reply = client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": "Hello!"}]
    )
    return reply.choices[0].message.content or ""


def test_a_key_from_the_page_works_with_the_sdk_until_revoked_in_the_page(
    context, page, live_server_url, owner, demo_catalog, settings
):
    settings.DEMO_TOKEN_DELAY_MS = 0
    page.goto(f"{live_server_url}/accounts/login/")
    page.get_by_label("Email").fill(owner.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Keys").click()

    page.get_by_label("Name").fill("sdk test")
    page.get_by_label("demo", exact=False).first.check()
    page.get_by_role("button", name="Create key").click()
    expect(page).to_have_title("Key created · Switchboard")
    secret = page.get_by_label("Secret key").input_value()
    base_url = page.locator("#base-url").inner_text()
    assert base_url == f"{live_server_url}/v1"
    assert ApiKey.objects.get(user=owner).allowed_models == ["demo"]

    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.get_by_role("button", name="Copy the key").click()
    expect(page.get_by_role("status").filter(has_text="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == secret

    assert ask(base_url, secret)

    page.get_by_role("link", name="Done: back to your keys").click()
    row = page.locator("tr", has_text="sdk test")
    expect(row.locator("[data-label='Last used']")).not_to_contain_text("never")
    page.evaluate("window.notReloaded = true")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revoke sdk test").click()
    expect(page.locator("tr.revoked")).to_contain_text("Revoked")
    assert page.evaluate("window.notReloaded") is True

    with pytest.raises(openai.AuthenticationError, match="revoked"):
        ask(base_url, secret)


def test_reloading_the_new_key_page_mints_no_second_key_and_hides_the_secret(
    page, live_server_url, owner
):
    page.goto(f"{live_server_url}/accounts/login/")
    page.get_by_label("Email").fill(owner.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.goto(f"{live_server_url}/account/keys/")
    page.get_by_label("Name").fill("reload me")
    page.get_by_role("button", name="Create key").click()
    expect(page).to_have_title("Key created · Switchboard")
    secret = page.get_by_label("Secret key").input_value()

    page.reload()

    expect(page).to_have_title("API keys · Switchboard")
    expect(page.get_by_text("was shown once")).to_be_visible()
    assert secret not in page.content()
    assert ApiKey.objects.filter(user=owner).count() == 1
    page.go_back()
    assert ApiKey.objects.filter(user=owner).count() == 1


def test_a_key_edited_in_the_page_is_held_to_its_new_settings_at_once(
    page, live_server_url, owner, demo_catalog, settings
):
    from gateway.models import Model, Provider, Route

    settings.DEMO_TOKEN_DELAY_MS = 0
    settings.KEY_CACHE_SECONDS = 3600
    other = Model.objects.create(id="other", input_price=1, output_price=1)
    Route.objects.create(
        model=other, provider=Provider.objects.get(name="demo"), upstream_model="x"
    )
    key, secret = ApiKey.objects.mint(user=owner, name="wide")
    client = openai.OpenAI(base_url=f"{live_server_url}/v1", api_key=secret, max_retries=0)
    assert [m.id for m in client.models.list()] == ["demo", "other"]

    page.goto(f"{live_server_url}/accounts/login/")
    page.get_by_label("Email").fill(owner.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.goto(f"{live_server_url}/account/keys/")
    page.get_by_role("link", name="Edit wide").click()
    expect(page.get_by_label("Name")).to_have_value("wide")
    page.get_by_label("Name").fill("narrow")
    page.get_by_label("demo", exact=False).first.check()
    page.get_by_label("Requests per minute").fill("7")
    page.get_by_role("button", name="Save changes").click()

    expect(page.get_by_role("status")).to_contain_text("The key “narrow” was saved.")
    expect(page.locator(f"#key-{key.pk}")).to_contain_text("7 req/min")
    assert [m.id for m in client.models.list()] == ["demo"]
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="other", messages=[{"role": "user", "content": "x"}])
